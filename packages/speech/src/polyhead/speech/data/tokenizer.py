"""Tokenizers: characters, or sentencepiece BPE trained on the training transcripts; both saved with the run.

Index 0 is the CTC blank, 1 ``<sos/eos>`` (the decoder's start and end symbol), 2 ``<unk>``. Every
tokenizer owns its :class:`~polyhead.speech.data.normalize.TextNormalizer`: text is normalised by it before
encoding, and both travel together (``to_dict``) in the checkpoint and the run's ``tokenizer.json``, so a
later manifest is read exactly as the training transcripts were. :meth:`Tokenizer.check` reports
characters outside a character tokenizer's alphabet instead of silently mapping them to ``<unk>``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

from polyhead.speech.data.normalize import TextNormalizer

BLANK, SOS_EOS, UNK = 0, 1, 2
SPECIALS = ["<blank>", "<sos/eos>", "<unk>"]


class Tokenizer:
    kind = "base"

    def __init__(self, pieces: list[str], normalizer: TextNormalizer | None = None) -> None:
        self.pieces = pieces
        self.normalizer = normalizer or TextNormalizer()

    def normalize(self, text: str) -> str:
        """The text as this tokenizer's run normalises it (what references are scored as)."""
        return self.normalizer(text)

    def __len__(self) -> int:
        return len(SPECIALS) + len(self.pieces)

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def check(self, text: str) -> str | None:
        """None if ``text`` is fully representable, else a message naming what is not."""
        return None

    def to_dict(self) -> dict:
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @staticmethod
    def from_dict(d: dict) -> Tokenizer:
        normalizer = TextNormalizer.from_dict(d.get("normalizer"))
        if d["kind"] == "char":
            return CharTokenizer(d["pieces"], normalizer)
        if d["kind"] == "bpe":
            return BpeTokenizer(bytes.fromhex(d["model"]), normalizer)
        raise ValueError(f"unknown tokenizer kind {d['kind']!r} (expected 'char' or 'bpe')")

    @staticmethod
    def load(path: str | Path) -> Tokenizer:
        return Tokenizer.from_dict(json.loads(Path(path).read_text()))


class CharTokenizer(Tokenizer):
    """Letters, apostrophe and ``|`` for the space (a token, so CTC can emit word boundaries).

    The alphabet is the normaliser's own (for English: a-z and the apostrophe, whatever the training
    transcripts happen to use, so that a model trained on digit strings still reads "don't" in a later
    manifest) plus any other letter (any script) of the normalised training transcripts. Digits and other
    symbols are never added, so a transcript that still has them is reported.
    """

    kind = "char"

    @classmethod
    def train(cls, texts: Iterable[str], normalizer: TextNormalizer | None = None) -> CharTokenizer:
        norm = normalizer or TextNormalizer()
        chars = {c for t in texts for c in norm(t) if c.isalpha() or c == "'"} | set(norm.alphabet)
        return cls(sorted(chars) + ["|"], norm)

    def __init__(self, pieces: list[str], normalizer: TextNormalizer | None = None) -> None:
        super().__init__(pieces, normalizer)
        self._index = {c: i + len(SPECIALS) for i, c in enumerate(pieces)}

    def encode(self, text: str) -> list[int]:
        return [self._index.get(c, UNK) for c in self.normalize(text).replace(" ", "|")]

    def decode(self, ids: Iterable[int]) -> str:
        s = "".join(self.pieces[i - len(SPECIALS)] for i in ids if i >= len(SPECIALS))
        return " ".join(s.replace("|", " ").split())

    def check(self, text: str) -> str | None:
        unknown = sorted({c for c in self.normalize(text).replace(" ", "|") if c not in self._index})
        return f"characters outside the tokenizer: {unknown}" if unknown else None

    def to_dict(self) -> dict:
        return {"kind": "char", "pieces": self.pieces, "normalizer": self.normalizer.to_dict()}


class BpeTokenizer(Tokenizer):
    """sentencepiece BPE; the serialized model travels in the run directory and the checkpoint."""

    kind = "bpe"

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 256, normalizer: TextNormalizer | None = None
    ) -> BpeTokenizer:
        import sentencepiece as spm

        norm = normalizer or TextNormalizer()
        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "text.txt"
            corpus.write_text("\n".join(norm(t) for t in texts) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(Path(tmp) / "bpe"), vocab_size=vocab_size,
                model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
                hard_vocab_limit=False, minloglevel=2,
            )  # fmt: skip
            return cls((Path(tmp) / "bpe.model").read_bytes(), norm)

    def __init__(self, model: bytes, normalizer: TextNormalizer | None = None) -> None:
        import sentencepiece as spm

        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        super().__init__([self.sp.id_to_piece(i) for i in range(1, self.sp.get_piece_size())], normalizer)

    def encode(self, text: str) -> list[int]:
        return [i - 1 + len(SPECIALS) if i > 0 else UNK for i in self.sp.encode(self.normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - len(SPECIALS) + 1 for i in ids if i >= len(SPECIALS)])

    def to_dict(self) -> dict:
        return {"kind": "bpe", "model": self.model.hex(), "normalizer": self.normalizer.to_dict()}
