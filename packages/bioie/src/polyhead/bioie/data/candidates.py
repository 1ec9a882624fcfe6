"""Documents + sentence parses -> relation candidates (one TACRED-style example per mention pair).

Candidates are mention pairs inside one sentence (subject type x object type, e.g. Chemical x Disease).
A mention is mapped to the tokens its character span overlaps, so spans survive any tokenisation. The
label of a pair comes from the document's relations: a ChemProt-style relation between mention keys, or a
CDR-style relation between concept ids (any of the mention's ids), as the CDR task labels mention pairs.
Pairs whose relation is expressed only across sentences get no candidate: document-level recall is
bounded by that (:func:`cross_sentence_relations` counts them).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from polyhead.bioie.data.document import Document, Mention, ParsedSentence, Relation
from polyhead.bioie.data.tacred import NO_RELATION, RelationExample

TYPE_ALIASES = {"chemical": "Chemical", "drug": "Chemical", "disease": "Disease", "gene": "Gene",
                "gene-y": "Gene", "gene-n": "Gene", "protein": "Gene", "geneorgeneproduct": "Gene"}  # fmt: skip
NER_OF = {"Chemical": "CHEMICAL", "Disease": "DISEASE", "Gene": "GENE"}


def normalise_type(t: str) -> str:
    """Map the corpora's entity types onto Chemical / Disease / Gene (others are kept as given)."""
    return TYPE_ALIASES.get(t.lower(), t)


def _token_span(m: Mention, starts: np.ndarray, ends: np.ndarray) -> tuple[int, int] | None:
    inside = np.nonzero((starts < m.end) & (ends > m.start))[0]
    return (int(inside[0]), int(inside[-1])) if len(inside) else None


def document_examples(
    doc: Document,
    sentences: list[ParsedSentence],
    *,
    pair_types: Iterable[tuple[str, str]] = (("Chemical", "Disease"), ("Chemical", "Gene")),
) -> list[RelationExample]:
    """All within-sentence candidates of a document, labelled from its relations."""
    pairs = set(pair_types)
    by_key = {(r.arg1, r.arg2): r.type for r in doc.relations}
    out = []
    for k, s in enumerate(sentences):
        if not s.tokens:
            continue
        starts = np.array([a for a, _ in s.offsets])
        ends = np.array([b for _, b in s.offsets])
        lo, hi = int(starts[0]), int(ends[-1])
        spans = []
        for m in doc.mentions:
            if m.start >= lo and m.end <= hi:
                span = _token_span(m, starts, ends)
                if span is not None:
                    spans.append((span, m, normalise_type(m.type)))
        ner = ["O"] * len(s.tokens)
        for (a, b), _, t in spans:
            ner[a : b + 1] = [NER_OF.get(t, t.upper())] * (b - a + 1)
        for (sa, sb), sm, st in spans:
            for (oa, ob), om, ot in spans:
                if (st, ot) not in pairs or (sa, sb) == (oa, ob):
                    continue
                label = by_key.get((sm.key, om.key)) if sm.key and om.key else None
                if label is None:
                    label = next(
                        (by_key[(i, j)] for i in sm.ids for j in om.ids if (i, j) in by_key), NO_RELATION
                    )
                out.append(
                    RelationExample(
                        id=f"{doc.id}-s{k}-{sm.start}-{om.start}", tokens=list(s.tokens), subj_start=sa,
                        subj_end=sb, obj_start=oa, obj_end=ob, subj_type=st, obj_type=ot, heads=list(s.heads),
                        deprels=list(s.deprels), pos=list(s.pos), ner=list(ner), relation=label, docid=doc.id,
                        subj_id="|".join(sm.ids) or sm.key, obj_id="|".join(om.ids) or om.key,
                        char_offsets=list(s.offsets),
                    )
                )  # fmt: skip
    return out


def cross_sentence_relations(doc: Document, examples: list[RelationExample]) -> list[Relation]:
    """The document's relations that no within-sentence candidate carries (unreachable for the models)."""
    seen = {(e.relation, i, j) for e in examples for i in (e.subj_id or "").split("|")
            for j in (e.obj_id or "").split("|")}  # fmt: skip
    return [r for r in doc.relations if (r.type, r.arg1, r.arg2) not in seen]
