"""Documents with mentions and relations (PubTator, BioC, ChemProt all read into these), and parsed sentences.

Character offsets are document-level, as in PubTator and BioC: ``text = title + " " + abstract`` (the
BioCreative V CDR convention: the abstract starts one character after the title).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mention:
    """An entity mention: ``text == document.text[start:end]``; ``ids`` are its normalised concept ids
    (MeSH, NCBI Gene, ...; PubTator writes several as ``id1|id2``); ``key`` is a per-document mention id
    where the format has one (ChemProt ``T1``, BioC annotation id)."""

    start: int
    end: int
    text: str
    type: str
    ids: tuple[str, ...] = ()
    key: str | None = None


@dataclass(frozen=True)
class Relation:
    """A relation between two concepts (``arg1``/``arg2`` are concept ids, or mention keys for ChemProt)."""

    type: str
    arg1: str
    arg2: str


@dataclass
class Document:
    """A title + abstract with its mentions and (document-level) relations."""

    id: str
    title: str
    abstract: str = ""
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.title + " " + self.abstract if self.abstract else self.title


@dataclass
class ParsedSentence:
    """One sentence: tokens, their ``[start, end)`` document offsets, 1-based heads (0 = root), labels."""

    tokens: list[str]
    offsets: list[tuple[int, int]]
    heads: list[int]
    deprels: list[str]
    pos: list[str]

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "offsets": [list(o) for o in self.offsets], "heads": self.heads,
                "deprels": self.deprels, "pos": self.pos}  # fmt: skip

    @classmethod
    def from_json(cls, rec: dict) -> ParsedSentence:
        return cls(list(rec["tokens"]), [(int(a), int(b)) for a, b in rec["offsets"]],
                   [int(h) for h in rec["heads"]], list(rec["deprels"]), list(rec["pos"]))  # fmt: skip
