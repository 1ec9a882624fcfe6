"""The TACRED / AGGCN JSON interchange format: one relation candidate per record, with its dependency parse.

Format of Zhang et al., "Position-aware Attention and Supervised Data Improve Slot Filling" (TACRED, EMNLP
2017), as AGGCN (Guo et al. 2019, arXiv:1906.07510) and C-GCN (Zhang et al. 2018, arXiv:1809.10185) read it:
a JSON list of records with ``id``, ``relation``, ``token``, ``subj_start``/``subj_end`` and
``obj_start``/``obj_end`` (0-based, inclusive), ``subj_type``/``obj_type``, ``stanford_pos``,
``stanford_ner``, ``stanford_head`` (1-based, 0 = root) and ``stanford_deprel``. polyhead adds optional keys
that survive a round trip: ``docid``, ``subj_id``/``obj_id`` (normalised identifiers such as MeSH ids, for
document-level evaluation) and ``char_offsets`` (each token's ``[start, end)`` in the document text).

:func:`validate_example` checks what a GCN needs to be correct: equal lengths, heads within the sentence,
exactly a forest rooted at 0 (no cycle), spans inside the sentence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyhead.bioie.data.problems import DataError, Problems

NO_RELATION = "no_relation"
_REQUIRED = (
    "relation", "token", "subj_start", "subj_end", "obj_start", "obj_end", "subj_type", "obj_type",
    "stanford_head", "stanford_deprel",
)  # fmt: skip


@dataclass
class RelationExample:
    """One relation candidate: a sentence (or sentence window), its parse and the subject/object spans.

    Spans are 0-based and inclusive (TACRED's convention); heads are 1-based with 0 for the root.
    """

    id: str
    tokens: list[str]
    subj_start: int
    subj_end: int
    obj_start: int
    obj_end: int
    subj_type: str
    obj_type: str
    heads: list[int]
    deprels: list[str]
    pos: list[str] = field(default_factory=list)
    ner: list[str] = field(default_factory=list)
    relation: str = NO_RELATION
    docid: str | None = None
    subj_id: str | None = None
    obj_id: str | None = None
    char_offsets: list[tuple[int, int]] | None = None

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if not self.pos:
            self.pos = ["X"] * n
        if not self.ner:
            self.ner = ["O"] * n

    def to_json(self) -> dict:
        rec = {
            "id": self.id,
            "relation": self.relation,
            "token": list(self.tokens),
            "subj_start": self.subj_start,
            "subj_end": self.subj_end,
            "obj_start": self.obj_start,
            "obj_end": self.obj_end,
            "subj_type": self.subj_type,
            "obj_type": self.obj_type,
            "stanford_pos": list(self.pos),
            "stanford_ner": list(self.ner),
            "stanford_head": list(self.heads),
            "stanford_deprel": list(self.deprels),
        }
        for key in ("docid", "subj_id", "obj_id"):
            if getattr(self, key) is not None:
                rec[key] = getattr(self, key)
        if self.char_offsets is not None:
            rec["char_offsets"] = [list(o) for o in self.char_offsets]
        return rec

    @classmethod
    def from_json(cls, rec: dict) -> RelationExample:
        offsets = rec.get("char_offsets")
        return cls(
            id=str(rec.get("id", "")),
            tokens=list(rec["token"]),
            subj_start=int(rec["subj_start"]),
            subj_end=int(rec["subj_end"]),
            obj_start=int(rec["obj_start"]),
            obj_end=int(rec["obj_end"]),
            subj_type=str(rec["subj_type"]),
            obj_type=str(rec["obj_type"]),
            heads=[int(h) for h in rec["stanford_head"]],
            deprels=list(rec["stanford_deprel"]),
            pos=list(rec.get("stanford_pos") or []),
            ner=list(rec.get("stanford_ner") or []),
            relation=str(rec["relation"]),
            docid=rec.get("docid"),
            subj_id=rec.get("subj_id"),
            obj_id=rec.get("obj_id"),
            char_offsets=[(int(a), int(b)) for a, b in offsets] if offsets is not None else None,
        )


def heads_have_cycle(heads: Sequence[int]) -> bool:
    """True when following 1-based heads from some token never reaches the root (0).

    Pointer doubling: after ceil(log2 n) + 1 squarings of the parent map every token that reaches the root
    points at it (the root is a fixed point), so a token still pointing elsewhere sits on a cycle.
    """
    n = len(heads)
    if n == 0:
        return False
    parent = np.asarray(heads, dtype=np.int64)  # parent[i] of token i + 1; 0 = root
    table = np.concatenate([[0], parent])  # table[k] = parent of node k (node 0 = root, its own parent)
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        table = table[table]
    return bool((table[1:] != 0).any())


def validate_example(ex: RelationExample, relations: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """``[(reason, message)]`` for everything wrong with ``ex`` (empty when it is valid)."""
    out: list[tuple[str, str]] = []
    n = len(ex.tokens)
    if n == 0:
        return [("empty", "no tokens")]
    for name, seq in (("stanford_head", ex.heads), ("stanford_deprel", ex.deprels),
                      ("stanford_pos", ex.pos), ("stanford_ner", ex.ner)):  # fmt: skip
        if len(seq) != n:
            out.append(("length_mismatch", f"{name} has {len(seq)} entries for {n} tokens"))
    if ex.char_offsets is not None and len(ex.char_offsets) != n:
        out.append(("length_mismatch", f"char_offsets has {len(ex.char_offsets)} entries for {n} tokens"))
    for side in ("subj", "obj"):
        a, b = getattr(ex, f"{side}_start"), getattr(ex, f"{side}_end")
        if not (0 <= a <= b < n):
            out.append(
                ("bad_span", f"{side} span [{a}, {b}] is not inside the {n} tokens (0-based, inclusive)")
            )
    bad = [h for h in ex.heads if not (0 <= h <= n)]
    if bad:
        out.append(("bad_head", f"head(s) {bad[:5]} outside 0..{n} (1-based, 0 = root)"))
    elif len(ex.heads) == n:
        if 0 not in ex.heads:
            out.append(("cycle", "no token has head 0 (root): the heads form a cycle"))
        elif heads_have_cycle(ex.heads):
            out.append(("cycle", "the heads contain a cycle (some token never reaches the root)"))
        selfloop = [i + 1 for i, h in enumerate(ex.heads) if h == i + 1]
        if selfloop:
            out.append(("cycle", f"token(s) {selfloop[:5]} are their own head"))
    if relations is not None and ex.relation not in set(relations):
        out.append(("unknown_relation", f"relation {ex.relation!r} is not one of {sorted(set(relations))}"))
    return out


def read_tacred(
    path: str | Path,
    *,
    relations: Iterable[str] | None = None,
    problems: Problems | None = None,
) -> list[RelationExample]:
    """Read a TACRED/AGGCN JSON file (a list of records; also accepts JSON lines).

    Args:
        path: the file.
        relations: the allowed relation labels (None: any).
        problems: collector; by default a strict one (raise a :class:`DataError` listing every problem).

    Returns:
        The valid examples (all of them unless ``problems.skip_bad``).
    """
    path = Path(path)
    problems = problems if problems is not None else Problems()
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        records = [(f"record {i}", r) for i, r in enumerate(data)] if isinstance(data, list) else None
        if records is None:
            raise DataError(f"{path}: expected a JSON list of TACRED records, got {type(data).__name__}")
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise DataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg}); truncated file?") from None
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append((f"line {lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                problems.add(f"{path}:{lineno}", "bad_json", f"invalid JSON ({e.msg})")
    out = []
    for where, rec in records:
        rid = rec.get("id", "?") if isinstance(rec, dict) else "?"
        loc = f"{path}: {where} (id {rid})"
        if not isinstance(rec, dict):
            problems.add(loc, "bad_record", "expected a JSON object")
            continue
        missing = [k for k in _REQUIRED if k not in rec]
        if missing:
            problems.add(loc, "missing_field", f"missing field(s) {missing}")
            continue
        try:
            ex = RelationExample.from_json(rec)
        except (TypeError, ValueError) as err:
            problems.add(loc, "bad_record", f"wrong field type: {err}")
            continue
        issues = validate_example(ex, relations)
        for reason, msg in issues:
            problems.add(loc, reason, msg)
        if not issues:
            out.append(ex)
    problems.raise_or_count(str(path))
    return out


def write_tacred(examples: Iterable[RelationExample], path: str | Path) -> Path:
    """Write examples as a TACRED/AGGCN JSON list."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([e.to_json() for e in examples]) + "\n", encoding="utf-8")
    return path
