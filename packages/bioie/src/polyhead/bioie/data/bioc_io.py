"""BioC XML and BioC JSON (Comeau et al., "BioC: a minimalist approach to interoperability for biomedical text
processing", Database 2013) read and written through the ``bioc`` package's ``biocxml`` / ``biocjson``.

The BioCreative V CDR release ships BioC next to PubTator: one passage for the title and one for the
abstract (offsets are document-level, the abstract starting one character after the title), annotations
with a ``type`` infon and the concept id in ``MESH`` (or ``identifier``), and relations whose infons are
``relation`` (e.g. ``CID``) plus one infon per argument type (``Chemical``, ``Disease``). Relations with
nodes (``refid`` to annotation ids) are read as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import bioc
from bioc import biocjson, biocxml

from polyhead.bioie.data.document import Document, Mention, Relation
from polyhead.bioie.data.problems import DataError, Problems

_ID_KEYS = ("MESH", "identifier", "Identifier", "NCBI Gene", "id")
_NOT_ARGS = {"relation", "type", "score"}


def _read_collection(path: Path, fmt: str) -> bioc.BioCCollection:
    try:
        with open(path, encoding="utf-8") as f:
            return biocxml.load(f) if fmt == "xml" else biocjson.load(f)
    except Exception as err:  # bioc raises lxml / json errors of several kinds; all mean a broken file
        raise DataError(
            f"{path}: not a readable BioC {fmt.upper()} file ({type(err).__name__}: {err}); truncated?"
        ) from None


def read_bioc(
    path: str | Path,
    *,
    fmt: Literal["xml", "json"] | None = None,
    relation_types: Iterable[str] | None = None,
    problems: Problems | None = None,
) -> list[Document]:
    """Read a BioC XML/JSON collection into :class:`Document` objects (format from the suffix by default)."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "xml")
    problems = problems if problems is not None else Problems()
    allowed = set(relation_types) if relation_types is not None else None
    coll = _read_collection(path, fmt)
    docs = []
    for bdoc in coll.documents:
        where = f"{path} (document {bdoc.id})"
        passages = sorted(bdoc.passages, key=lambda p: p.offset)
        if not passages:
            problems.add(where, "truncated", "document has no passages")
            continue
        end = max(p.offset + len(p.text or "") for p in passages)
        chars = [" "] * end
        for p in passages:
            chars[p.offset : p.offset + len(p.text or "")] = list(p.text or "")
        text = "".join(chars)
        title = passages[0].text or ""
        doc = Document(str(bdoc.id), title, text[len(title) + 1 :])
        ok = True
        by_ann: dict[str, Mention] = {}
        for p in passages:
            for ann in p.annotations:
                loc = ann.total_span if ann.locations else None
                if loc is None:
                    problems.add(f"{where} annotation {ann.id}", "bad_offsets", "annotation has no location")
                    ok = False
                    continue
                start, stop = loc.offset, loc.end
                if not (0 <= start < stop <= len(doc.text)):
                    problems.add(f"{where} annotation {ann.id}", "outside_text",
                                 f"location [{start}, {stop}) is outside the text (0..{len(doc.text)})")  # fmt: skip
                    ok = False
                    continue
                if len(ann.locations) == 1 and doc.text[start:stop] != ann.text:
                    problems.add(f"{where} annotation {ann.id}", "bad_offsets",
                                 f"location [{start}, {stop}) covers {doc.text[start:stop]!r}, the annotation says "
                                 f"{ann.text!r}")  # fmt: skip
                    ok = False
                    continue
                raw = next((ann.infons[k] for k in _ID_KEYS if ann.infons.get(k)), "")
                ids = tuple(i for i in str(raw).split("|") if i and i != "-1")
                m = Mention(
                    start, stop, ann.text or doc.text[start:stop], ann.infons.get("type", "?"), ids, ann.id
                )
                doc.mentions.append(m)
                by_ann[ann.id] = m
        known = {i for m in doc.mentions for i in m.ids}
        rels = list(bdoc.relations) + [r for p in passages for r in p.relations]
        for r in rels:
            rtype = r.infons.get("relation") or r.infons.get("type") or "?"
            rwhere = f"{where} relation {r.id}"
            if allowed is not None and rtype not in allowed:
                problems.add(
                    rwhere, "unknown_relation", f"relation type {rtype!r} is not one of {sorted(allowed)}"
                )
                ok = False
                continue
            if r.nodes:
                refs = [n.refid for n in r.nodes[:2]]
                if any(x not in by_ann for x in refs):
                    problems.add(
                        rwhere, "unknown_concept", f"nodes refer to annotations {refs} that do not exist"
                    )
                    ok = False
                    continue
                args = [by_ann[x].ids[0] if by_ann[x].ids else x for x in refs]
            else:
                args = [v for k, v in r.infons.items() if k not in _NOT_ARGS][:2]
                if len(args) < 2 or any(a not in known for a in args):
                    problems.add(
                        rwhere, "unknown_concept", f"arguments {args} are not concept ids of this document"
                    )
                    ok = False
                    continue
            doc.relations.append(Relation(rtype, args[0], args[1]))
        if ok:
            docs.append(doc)
    problems.raise_or_count(str(path))
    return docs


def to_bioc(
    docs: Iterable[Document], relations: dict[str, list[Relation]] | None = None
) -> bioc.BioCCollection:
    """Documents -> a BioC collection (title and abstract passages, annotations, CDR-style relations)."""
    coll = bioc.BioCCollection()
    coll.source, coll.key = "polyhead-bioie", "polyhead-bioie.key"
    for doc in docs:
        bdoc = bioc.BioCDocument()
        bdoc.id = doc.id
        for offset, text, kind in ((0, doc.title, "title"), (len(doc.title) + 1, doc.abstract, "abstract")):
            if kind == "abstract" and not text:
                continue
            p = bioc.BioCPassage()
            p.offset, p.text = offset, text
            p.infons["type"] = kind
            bdoc.add_passage(p)
        types_of: dict[str, str] = {}
        for k, m in enumerate(doc.mentions):
            ann = bioc.BioCAnnotation()
            ann.id, ann.text = str(k), m.text
            ann.infons["type"] = m.type
            ann.infons["identifier"] = "|".join(m.ids) or "-1"
            ann.add_location(bioc.BioCLocation(m.start, m.end - m.start))
            target = (
                bdoc.passages[0] if m.start < len(doc.title) or len(bdoc.passages) == 1 else bdoc.passages[1]
            )
            target.add_annotation(ann)
            for i in m.ids:
                types_of.setdefault(i, m.type)
        rels = doc.relations if relations is None else relations.get(doc.id, [])
        for k, r in enumerate(rels):
            rel = bioc.BioCRelation()
            rel.id = f"R{k}"
            rel.infons["relation"] = r.type
            t1, t2 = types_of.get(r.arg1, "arg1"), types_of.get(r.arg2, "arg2")
            rel.infons[t1 if t1 != t2 else "arg1"] = r.arg1
            rel.infons[t2 if t1 != t2 else "arg2"] = r.arg2
            bdoc.add_relation(rel)
        coll.add_document(bdoc)
    return coll


def write_bioc(
    docs: Iterable[Document], path: str | Path, *, fmt: Literal["xml", "json"] | None = None
) -> Path:
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "xml")
    path.parent.mkdir(parents=True, exist_ok=True)
    coll = to_bioc(docs)
    with open(path, "w", encoding="utf-8") as f:
        if fmt == "xml":
            biocxml.dump(coll, f)
        else:
            biocjson.dump(coll, f, indent=1)
    return path
