"""Gloss vocabulary for CTC: index 0 is the blank, 1 the unknown gloss, then glosses by frequency."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

BLANK, UNK = "<blank>", "<unk>"


class GlossVocabulary:
    def __init__(self, glosses: list[str]) -> None:
        self.itos = [BLANK, UNK, *glosses]
        self.stoi = {g: i for i, g in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_count: int = 1) -> GlossVocabulary:
        counts = Counter(g for seq in sequences for g in seq)
        return cls(sorted((g for g, c in counts.items() if c >= min_count), key=lambda g: (-counts[g], g)))

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, glosses: Iterable[str]) -> list[int]:
        return [self.stoi.get(g, 1) for g in glosses]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids if i != 0]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.itos[2:], ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> GlossVocabulary:
        return cls(json.loads(Path(path).read_text()))
