"""PubTator (BioCreative V CDR) reading and writing through the ``bioc`` package, with validation.

The format (Wei et al., BioCreative V CDR task, 2015): per document a title line ``PMID|t|text``, an
abstract line ``PMID|a|text``, mention lines ``PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id`` (offsets into
``title + " " + abstract``; ``id`` may be ``D001|D002`` for composite mentions or ``-1`` when unnormalised)
and relation lines ``PMID<TAB>CID<TAB>chemical id<TAB>disease id``; documents are separated by blank lines.
Parsing is ``bioc.pubtator``'s; this module adds the checks it leaves out (offsets that do not match the
text, mentions outside it, truncated documents, unknown relation types or concepts), each reported with the
file and line, and the writer for predicted relations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from bioc import pubtator

from polyhead.bioie.data.document import Document, Mention, ParsedSentence, Relation
from polyhead.bioie.data.problems import DataError, Problems


def _blocks(lines: list[str]) -> list[tuple[int, list[tuple[int, str]]]]:
    """Blank-line separated blocks as ``(first line number, [(line number, line)])``."""
    out, cur = [], []
    for n, line in enumerate(lines, 1):
        if line.strip():
            cur.append((n, line.rstrip("\r\n")))
        elif cur:
            out.append((cur[0][0], cur))
            cur = []
    if cur:
        out.append((cur[0][0], cur))
    return out


def read_pubtator(
    path: str | Path,
    *,
    relation_types: Iterable[str] | None = None,
    problems: Problems | None = None,
) -> list[Document]:
    """Read a PubTator file into :class:`Document` objects.

    Args:
        path: the file.
        relation_types: allowed relation types (e.g. ``{"CID"}``); None accepts any.
        problems: collector (default: strict, one :class:`DataError` listing every problem).
    """
    path = Path(path)
    problems = problems if problems is not None else Problems()
    allowed = set(relation_types) if relation_types is not None else None
    docs = []
    for first, block in _blocks(path.read_text(encoding="utf-8").splitlines()):
        where = f"{path}:{first}"
        bad = False
        ann_lines, rel_lines = [], []
        for n, line in block:
            if "|t|" in line.split("\t", 1)[0] or "|a|" in line.split("\t", 1)[0]:
                continue
            fields = line.split("\t")
            if len(fields) >= 6:
                ann_lines.append(n)
                if not (fields[1].isdigit() and fields[2].isdigit()):
                    problems.add(
                        f"{path}:{n}", "bad_offsets", f"offsets {fields[1]!r}, {fields[2]!r} are not integers"
                    )
                    bad = True
            elif len(fields) in (4, 5) and not fields[1].isdigit():
                rel_lines.append(n)
            else:
                problems.add(
                    f"{path}:{n}", "truncated",
                    f"expected a title/abstract line, a mention line (6 tab-separated fields) or a relation "
                    f"line (4 fields), got {len(fields)} field(s); truncated document?",
                )  # fmt: skip
                bad = True
        if bad:
            continue
        try:
            parsed = list(pubtator.iterparse_s([line for _, line in block]))
        except ValueError as err:
            problems.add(where, "bad_record", str(err))
            continue
        if len(parsed) != 1 or parsed[0].title is None:
            problems.add(where, "truncated", "document has no title line (PMID|t|...); truncated document?")
            continue
        p = parsed[0]
        doc = Document(str(p.pmid), p.title, p.abstract or "")
        text = doc.text
        ok = True
        for n, ann in zip(ann_lines, p.annotations):
            loc = f"{path}:{n} (document {p.pmid})"
            if ann.pmid != p.pmid:
                problems.add(loc, "bad_record", f"mention line has PMID {ann.pmid}, the document is {p.pmid}")
                ok = False
            elif not (0 <= ann.start < ann.end <= len(text)):
                problems.add(loc, "outside_text",
                             f"mention [{ann.start}, {ann.end}) is outside the text (0..{len(text)})")  # fmt: skip
                ok = False
            elif text[ann.start : ann.end] != ann.text:
                problems.add(loc, "bad_offsets",
                             f"offsets [{ann.start}, {ann.end}) cover {text[ann.start : ann.end]!r}, "
                             f"the mention says {ann.text!r}")  # fmt: skip
                ok = False
            else:
                ids = tuple(i for i in str(ann.id).split("|") if i and i != "-1")
                doc.mentions.append(Mention(ann.start, ann.end, ann.text, ann.type, ids))
        known = {i for m in doc.mentions for i in m.ids}
        for n, rel in zip(rel_lines, p.relations):
            loc = f"{path}:{n} (document {p.pmid})"
            if allowed is not None and rel.type not in allowed:
                problems.add(
                    loc, "unknown_relation", f"relation type {rel.type!r} is not one of {sorted(allowed)}"
                )
                ok = False
            elif ok and (rel.id1 not in known or rel.id2 not in known):
                missing = [i for i in (rel.id1, rel.id2) if i not in known]
                problems.add(
                    loc, "unknown_concept", f"relation refers to concept(s) {missing} no mention has"
                )
                ok = False
            else:
                doc.relations.append(Relation(rel.type, rel.id1, rel.id2))
        if ok:
            docs.append(doc)
    problems.raise_or_count(str(path))
    return docs


def to_pubtator(doc: Document) -> pubtator.PubTator:
    p = pubtator.PubTator(doc.id, doc.title, doc.abstract)
    for m in doc.mentions:
        p.add_annotation(
            pubtator.PubTatorAnn(doc.id, m.start, m.end, m.text, m.type, "|".join(m.ids) or "-1")
        )
    return p


def format_document(doc: Document, relations: Iterable[Relation] | None = None) -> str:
    """One PubTator document block (bioc's encoder for the text and mentions; relation lines with 4 fields,
    as the CDR evaluation reads them)."""
    rels = doc.relations if relations is None else relations
    # bioc writes a trailing tab after a mention's id (its empty "others" column); CDR files have none
    head = "".join(line.rstrip("\t") + "\n" for line in pubtator.dumps([to_pubtator(doc)]).splitlines())
    return head + "".join(f"{doc.id}\t{r.type}\t{r.arg1}\t{r.arg2}\n" for r in rels)


def write_pubtator(docs: Iterable[Document], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(format_document(d) for d in docs) + "\n", encoding="utf-8")
    return path


def write_parses(parses: dict[str, list[ParsedSentence]], path: str | Path) -> Path:
    """Sentence parses per document id (tokens, document offsets, heads, deprels, POS) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: [s.to_json() for s in v] for k, v in parses.items()}) + "\n")
    return path


def read_parses(path: str | Path, docs: Iterable[Document]) -> dict[str, list[ParsedSentence]]:
    """Read a parses JSON and check every token's offsets against its document's text."""
    path = Path(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    out, problems = {}, Problems()
    for doc in docs:
        if doc.id not in raw:
            problems.add(f"{path} (document {doc.id})", "missing_parse", "no parse for this document")
            continue
        sents = [ParsedSentence.from_json(r) for r in raw[doc.id]]
        text = doc.text
        for k, s in enumerate(sents):
            wrong = [(t, a, b) for t, (a, b) in zip(s.tokens, s.offsets) if text[a:b] != t]
            if wrong:
                problems.add(f"{path} (document {doc.id}, sentence {k})", "bad_offsets",
                             f"token {wrong[0][0]!r} at [{wrong[0][1]}, {wrong[0][2]}) does not match the text")  # fmt: skip
        out[doc.id] = sents
    if problems.messages:
        raise DataError("; ".join(problems.messages[:10]))
    return out
