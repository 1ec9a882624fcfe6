"""ChemProt (BioCreative VI CHEMPROT, Krallinger et al. 2017) TSVs: abstracts, entities, relations.

- ``*_abstracts.tsv``: ``PMID<TAB>title<TAB>abstract``
- ``*_entities.tsv``: ``PMID<TAB>T1<TAB>CHEMICAL|GENE-Y|GENE-N<TAB>start<TAB>end<TAB>text`` (offsets into
  ``title + " " + abstract``)
- ``*_relations.tsv``: ``PMID<TAB>CPR:4<TAB>Y<TAB>INHIBITOR<TAB>Arg1:T1<TAB>Arg2:T2`` (the full release:
  ``Y`` marks the five evaluated groups CPR:3,4,5,6,9) or the 4-column gold standard
  ``PMID<TAB>CPR:4<TAB>Arg1:T1<TAB>Arg2:T2``.

Relations are between mention keys (``T1``), so labels are per mention pair, not per concept.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from polyhead.bioie.data.document import Document, Mention, Relation
from polyhead.bioie.data.problems import Problems

EVALUATED_GROUPS = ("CPR:3", "CPR:4", "CPR:5", "CPR:6", "CPR:9")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    return [(n, line.rstrip("\r\n").split("\t")) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()]  # fmt: skip


def read_chemprot(
    abstracts: str | Path,
    entities: str | Path,
    relations: str | Path | None = None,
    *,
    relation_types: Iterable[str] | None = EVALUATED_GROUPS,
    problems: Problems | None = None,
) -> list[Document]:
    """Read the ChemProt TSVs (relations optional, for unlabeled prediction)."""
    problems = problems if problems is not None else Problems()
    allowed = set(relation_types) if relation_types is not None else None
    docs: dict[str, Document] = {}
    abstracts, entities = Path(abstracts), Path(entities)
    for n, f in _rows(abstracts):
        if len(f) != 3:
            problems.add(
                f"{abstracts}:{n}",
                "truncated",
                f"expected 3 tab-separated fields (PMID, title, abstract), got {len(f)}",
            )
            continue
        docs[f[0]] = Document(f[0], f[1], f[2])
    bad_docs: set[str] = set()
    for n, f in _rows(entities):
        where = f"{entities}:{n}"
        if len(f) != 6:
            problems.add(
                where, "truncated", f"expected 6 fields (PMID, id, type, start, end, text), got {len(f)}"
            )
            continue
        pmid, key, etype, a, b, text = f
        doc = docs.get(pmid)
        if doc is None:
            problems.add(where, "unknown_document", f"PMID {pmid} is not in {abstracts.name}")
            continue
        if not (a.isdigit() and b.isdigit()):
            problems.add(where, "bad_offsets", f"offsets {a!r}, {b!r} are not integers")
            bad_docs.add(pmid)
            continue
        start, end = int(a), int(b)
        if not (0 <= start < end <= len(doc.text)):
            problems.add(
                where,
                "outside_text",
                f"[{start}, {end}) is outside document {pmid}'s text (0..{len(doc.text)})",
            )
            bad_docs.add(pmid)
        elif doc.text[start:end] != text:
            problems.add(
                where,
                "bad_offsets",
                f"[{start}, {end}) covers {doc.text[start:end]!r}, the entity says {text!r}",
            )
            bad_docs.add(pmid)
        else:
            doc.mentions.append(Mention(start, end, text, etype, (), key))
    if relations is not None:
        relations = Path(relations)
        for n, f in _rows(relations):
            where = f"{relations}:{n}"
            if len(f) == 6:
                pmid, group, evaluated, _, a1, a2 = f
                if evaluated.strip() != "Y":
                    continue
            elif len(f) == 4:
                pmid, group, a1, a2 = f
            else:
                problems.add(
                    where, "truncated", f"expected 6 (full release) or 4 (gold standard) fields, got {len(f)}"
                )
                continue
            doc = docs.get(pmid)
            if doc is None:
                problems.add(where, "unknown_document", f"PMID {pmid} is not in {abstracts.name}")
                continue
            if allowed is not None and group not in allowed:
                problems.add(
                    where, "unknown_relation", f"relation group {group!r} is not one of {sorted(allowed)}"
                )
                bad_docs.add(pmid)
                continue
            keys = {m.key for m in doc.mentions}
            k1, k2 = a1.split(":", 1)[-1], a2.split(":", 1)[-1]
            if k1 not in keys or k2 not in keys:
                problems.add(
                    where, "unknown_concept", f"arguments {a1}, {a2} are not entities of document {pmid}"
                )
                bad_docs.add(pmid)
                continue
            doc.relations.append(Relation(group, k1, k2))
    problems.raise_or_count(f"ChemProt files {abstracts.name}, {entities.name}")
    return [d for pmid, d in docs.items() if pmid not in bad_docs]


def write_chemprot(docs: Iterable[Document], prefix: str | Path) -> tuple[Path, Path, Path]:
    """Write ``<prefix>_abstracts.tsv``, ``_entities.tsv`` and ``_relations.tsv`` (gold-standard columns)."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    docs = list(docs)
    paths = (Path(f"{prefix}_abstracts.tsv"), Path(f"{prefix}_entities.tsv"), Path(f"{prefix}_relations.tsv"))
    paths[0].write_text("".join(f"{d.id}\t{d.title}\t{d.abstract}\n" for d in docs), encoding="utf-8")
    ent_lines, rel_lines = [], []
    for d in docs:
        keys: dict[str, str] = {}
        for k, m in enumerate(d.mentions):
            key = m.key or f"T{k + 1}"
            keys.setdefault(m.ids[0] if m.ids else key, key)
            ent_lines.append(f"{d.id}\t{key}\t{m.type}\t{m.start}\t{m.end}\t{m.text}\n")
        for r in d.relations:
            rel_lines.append(
                f"{d.id}\t{r.type}\tArg1:{keys.get(r.arg1, r.arg1)}\tArg2:{keys.get(r.arg2, r.arg2)}\n"
            )
    paths[1].write_text("".join(ent_lines), encoding="utf-8")
    paths[2].write_text("".join(rel_lines), encoding="utf-8")
    return paths
