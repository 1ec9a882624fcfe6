"""Documents + sentence parses -> relation candidates (one TACRED-style example per mention pair).

Candidates are mention pairs (subject type x object type, e.g. Chemical x Disease) inside one sentence and,
with ``window = w >= 1``, across sentences ``i != j`` with ``|i - j| <= w``. A mention is mapped to the
tokens its character span overlaps, so spans survive any tokenisation. The label of a pair comes from the
document's relations: a ChemProt-style relation between mention keys, or a CDR-style relation between
concept ids (any of the mention's ids), as the CDR task labels mention pairs.

A cross-sentence pair is one example over the merged sentences ``min(i, j)..max(i, j)``: tokens, offsets,
POS and NER concatenated, heads re-indexed, and each later sentence's root attached to the previous
sentence's root with the deprel ``nextsent``. This is how Peng et al. 2017 ("Cross-Sentence N-ary Relation
Extraction with Graph LSTMs", TACL, arXiv:1708.03743) and AGGCN's cross-sentence n-ary setting (Guo et al.
2019, arXiv:1906.07510) link adjacent sentences; unlike Peng et al. we add no coreference or discourse edges
(the parses carry none). The merged graph stays one tree, so path-centric pruning (Zhang et al. 2018)
works unchanged. Other mentions of the subject's or object's concept id inside the example are tagged
``SAME_AS_SUBJ`` / ``SAME_AS_OBJ`` in the NER channel (within sentences too), so a model can tell a
relation stated about the same concept elsewhere in the window from one about a different entity. A concept pair that has a within-sentence candidate still gets its cross-sentence
candidates: de-duplication happens where the CDR evaluation does it, when mention-pair predictions are
aggregated by concept id (:func:`polyhead.bioie.metrics.aggregate_by_concept`, max score).

Relations no candidate carries (their mentions are further apart than the window) stay in the
document-level gold set and count against recall there; :func:`cross_sentence_relations` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from polyhead.bioie.data.document import Document, Mention, ParsedSentence, Relation
from polyhead.bioie.data.tacred import NO_RELATION, RelationExample

TYPE_ALIASES = {"chemical": "Chemical", "drug": "Chemical", "disease": "Disease", "gene": "Gene",
                "gene-y": "Gene", "gene-n": "Gene", "protein": "Gene", "geneorgeneproduct": "Gene"}  # fmt: skip
NER_OF = {"Chemical": "CHEMICAL", "Disease": "DISEASE", "Gene": "GENE"}
NEXT_SENTENCE = "nextsent"  # deprel of the edge from a sentence's root to the previous sentence's root
SAME_AS_SUBJ, SAME_AS_OBJ = (
    "SAME_AS_SUBJ",
    "SAME_AS_OBJ",
)  # NER tags of other mentions of an argument's concept


def normalise_type(t: str) -> str:
    """Map the corpora's entity types onto Chemical / Disease / Gene (others are kept as given)."""
    return TYPE_ALIASES.get(t.lower(), t)


def is_cross_sentence(e: RelationExample) -> bool:
    """Whether an example spans several sentences (its tree has a ``nextsent`` edge); survives TACRED JSON."""
    return NEXT_SENTENCE in e.deprels


@dataclass
class _Placed:
    """A sentence's mentions mapped onto its tokens (``spans`` 0-based inclusive) and its NER tags."""

    index: int
    sentence: ParsedSentence
    spans: list[tuple[int, int]]
    mentions: list[Mention]
    types: list[str]
    ner: list[str]


def _place_mentions(doc: Document, sentences: list[ParsedSentence]) -> list[_Placed]:
    """Each non-empty sentence with the mentions inside it (vectorised over mentions per sentence).

    A mention belongs to the sentence whose character range contains it; one that straddles two sentences
    or covers no token is left out (as a within-sentence reader must)."""
    ms = doc.mentions
    m_start = np.array([m.start for m in ms], dtype=np.int64)
    m_end = np.array([m.end for m in ms], dtype=np.int64)
    out = []
    for k, s in enumerate(sentences):
        if not s.tokens:
            continue
        starts = np.array([a for a, _ in s.offsets], dtype=np.int64)
        ends = np.array([b for _, b in s.offsets], dtype=np.int64)
        inside = np.nonzero((m_start >= starts[0]) & (m_end <= ends[-1]))[0]
        # first token ending after the mention starts, last token starting before it ends (overlap);
        # ends are sorted because tokens do not overlap
        first = np.searchsorted(ends, m_start[inside], side="right")
        last = np.searchsorted(starts, m_end[inside], side="left") - 1
        ok = first <= last
        placed = _Placed(k, s, [], [], [], ["O"] * len(s.tokens))
        for i, a, b in zip(inside[ok].tolist(), first[ok].tolist(), last[ok].tolist()):
            t = normalise_type(ms[i].type)
            placed.spans.append((a, b))
            placed.mentions.append(ms[i])
            placed.types.append(t)
            placed.ner[a : b + 1] = [NER_OF.get(t, t.upper())] * (b - a + 1)
        out.append(placed)
    return out


def _merge(parts: list[_Placed]) -> tuple[list[str], list[int], list[str], list[str], list[str], list]:
    """Concatenate consecutive sentences into one tree: heads shifted by each sentence's token offset, and
    every root of a later sentence attached to the previous sentence's (first) root with ``nextsent``."""
    tokens: list[str] = []
    heads: list[int] = []
    deprels: list[str] = []
    pos: list[str] = []
    ner: list[str] = []
    offsets: list[tuple[int, int]] = []
    prev_root = 0  # 1-based index of the previous sentence's root in the merged sequence
    for p in parts:
        s, base = p.sentence, len(tokens)
        h = np.asarray(s.heads, dtype=np.int64)
        is_root = h == 0
        merged = np.where(is_root, prev_root, h + base)
        rels = list(s.deprels)
        if prev_root:
            for r in np.nonzero(is_root)[0].tolist():
                rels[r] = NEXT_SENTENCE
        roots = np.nonzero(is_root)[0]
        tokens += s.tokens
        heads += merged.tolist()
        deprels += rels
        pos += s.pos
        ner += p.ner
        offsets += s.offsets
        prev_root = base + int(roots[0]) + 1 if len(roots) else prev_root
    return tokens, heads, deprels, pos, ner, offsets


def _window_mentions(parts: list[_Placed]) -> list[tuple[int, int, frozenset[str]]]:
    """The mentions of a (merged) window as ``(start, end, concept ids)`` in the window's token indices."""
    out, base = [], 0
    for p in parts:
        out += [(a + base, b + base, frozenset(m.ids)) for (a, b), m in zip(p.spans, p.mentions) if m.ids]
        base += len(p.sentence.tokens)
    return out


def _mark_same_concept(
    ner: list[str], others: list[tuple[int, int, frozenset[str]]], sm: Mention, om: Mention,
    starts: tuple[int, int],
) -> list[str]:  # fmt: skip
    """A copy of ``ner`` in which the window's other mentions of the subject's (object's) concept are tagged
    ``SAME_AS_SUBJ`` (``SAME_AS_OBJ``): the only entity-identity signal a model gets, since the parses carry no
    coreference. Without it a pair ``(C1, D)`` next to a sentence ``C2 induced D`` looks like ``(C2, D)``."""
    out = list(ner)
    s_ids, o_ids = set(sm.ids), set(om.ids)
    for a, b, ids in others:
        if a in starts:  # the subject and object themselves
            continue
        tag = SAME_AS_SUBJ if ids & s_ids else SAME_AS_OBJ if ids & o_ids else None
        if tag is not None:
            out[a : b + 1] = [tag] * (b - a + 1)
    return out


def document_examples(
    doc: Document,
    sentences: list[ParsedSentence],
    *,
    pair_types: Iterable[tuple[str, str]] = (("Chemical", "Disease"), ("Chemical", "Gene")),
    window: int = 0,
    within_sentence: bool = True,
) -> list[RelationExample]:
    """The candidates of a document, labelled from its relations.

    Args:
        window: also pair mentions in sentences ``i != j`` with ``|i - j| <= window`` (0: within sentences
            only). Sentence distance counts the parse's sentences, the title being sentence 0.
        within_sentence: include the within-sentence candidates (``False``: only the cross-sentence ones,
            e.g. to add them to exactly labelled within-sentence examples).
    """
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    pairs = set(pair_types)
    by_key = {(r.arg1, r.arg2): r.type for r in doc.relations}

    def label_of(sm: Mention, om: Mention) -> str:
        label = by_key.get((sm.key, om.key)) if sm.key and om.key else None
        if label is None:
            label = next((by_key[(i, j)] for i in sm.ids for j in om.ids if (i, j) in by_key), NO_RELATION)
        return label

    placed = _place_mentions(doc, sentences)
    merged: dict[tuple[int, int], tuple] = {}  # (lo, hi) positions -> merged window, built once per window
    out = []
    for a_pos, pa in enumerate(placed):
        # pa holds the subjects, pb the objects; positions lo..hi of ``placed`` make the merged window
        for b_pos in range(max(0, a_pos - window), len(placed)):
            pb = placed[b_pos]
            if pb.index - pa.index > window:
                break
            cross = pb.index != pa.index
            if pa.index - pb.index > window or (not cross and not within_sentence):
                continue
            if not any((st, ot) in pairs for st in pa.types for ot in pb.types):
                continue
            if cross:
                lo, hi = min(a_pos, b_pos), max(a_pos, b_pos)
                if (lo, hi) not in merged:
                    merged[lo, hi] = _merge(placed[lo : hi + 1])
                tokens, heads, deprels, pos, ner, offsets = merged[lo, hi]
                sizes = np.cumsum([0] + [len(p.sentence.tokens) for p in placed[lo:hi]])
                ds, do = int(sizes[a_pos - lo]), int(sizes[b_pos - lo])
                sid = f"s{placed[lo].index}-s{placed[hi].index}"
            else:
                s = pa.sentence
                tokens, heads, deprels, pos, ner, offsets = (
                    s.tokens,
                    s.heads,
                    s.deprels,
                    s.pos,
                    pa.ner,
                    s.offsets,
                )
                ds = do = 0
                sid = f"s{pa.index}"
            window_parts = placed[min(a_pos, b_pos) : max(a_pos, b_pos) + 1]
            others = _window_mentions(window_parts)
            for (sa, sb), sm, st in zip(pa.spans, pa.mentions, pa.types):
                for (oa, ob), om, ot in zip(pb.spans, pb.mentions, pb.types):
                    if (st, ot) not in pairs or (not cross and (sa, sb) == (oa, ob)):
                        continue
                    out.append(
                        RelationExample(
                            id=f"{doc.id}-{sid}-{sm.start}-{om.start}", tokens=list(tokens), subj_start=sa + ds,
                            subj_end=sb + ds, obj_start=oa + do, obj_end=ob + do, subj_type=st, obj_type=ot,
                            heads=list(heads), deprels=list(deprels), pos=list(pos),
                            ner=_mark_same_concept(ner, others, sm, om, (sa + ds, oa + do)),
                            relation=label_of(sm, om), docid=doc.id, subj_id="|".join(sm.ids) or sm.key,
                            obj_id="|".join(om.ids) or om.key, char_offsets=list(offsets),
                        )
                    )  # fmt: skip
    return out


def cross_sentence_relations(doc: Document, examples: list[RelationExample]) -> list[Relation]:
    """The document's relations that no candidate carries (unreachable for the models): with ``window = 0``
    the cross-sentence ones, with a window those whose mentions are further apart."""
    seen = {(e.relation, i, j) for e in examples for i in (e.subj_id or "").split("|")
            for j in (e.obj_id or "").split("|")}  # fmt: skip
    return [r for r in doc.relations if (r.type, r.arg1, r.arg2) not in seen]
