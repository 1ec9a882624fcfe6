"""Tokenizers: characters, or sentencepiece BPE trained on the training transcripts; both saved with the run.

Index 0 is the CTC blank, 1 ``<sos/eos>`` (the decoder's start and end symbol), 2 ``<unk>``. Text is
normalised first (:func:`polyhead.speech.text.normalize`). :meth:`Tokenizer.check` reports characters
outside a character tokenizer's alphabet instead of silently mapping them to ``<unk>``.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

from polyhead.speech.text import normalize

BLANK, SOS_EOS, UNK = 0, 1, 2
SPECIALS = ["<blank>", "<sos/eos>", "<unk>"]


class Tokenizer:
    kind = "base"

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

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
        if d["kind"] == "char":
            return CharTokenizer(d["pieces"])
        return BpeTokenizer(bytes.fromhex(d["model"]))

    @staticmethod
    def load(path: str | Path) -> Tokenizer:
        return Tokenizer.from_dict(json.loads(Path(path).read_text()))


class CharTokenizer(Tokenizer):
    """Letters, apostrophe and ``|`` for the space (a token, so CTC can emit word boundaries).

    The alphabet is the letters (any script) and apostrophes of the training transcripts; digits and other
    symbols are never added, so a transcript that contains them is reported (spell numbers out first).
    """

    kind = "char"

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        chars = {c for t in texts for c in normalize(t) if c.isalpha() or c == "'"}
        return cls(sorted(chars) + ["|"])

    def __init__(self, pieces: list[str]) -> None:
        super().__init__(pieces)
        self._index = {c: i + len(SPECIALS) for i, c in enumerate(pieces)}

    def encode(self, text: str) -> list[int]:
        return [self._index.get(c, UNK) for c in normalize(text).replace(" ", "|")]

    def decode(self, ids: Iterable[int]) -> str:
        s = "".join(self.pieces[i - len(SPECIALS)] for i in ids if i >= len(SPECIALS))
        return " ".join(s.replace("|", " ").split())

    def check(self, text: str) -> str | None:
        unknown = sorted({c for c in normalize(text).replace(" ", "|") if c not in self._index})
        return f"characters outside the tokenizer: {unknown}" if unknown else None

    def to_dict(self) -> dict:
        return {"kind": "char", "pieces": self.pieces}


class BpeTokenizer(Tokenizer):
    """sentencepiece BPE; the serialized model travels in the run directory and the checkpoint."""

    kind = "bpe"

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256) -> BpeTokenizer:
        import sentencepiece as spm

        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "text.txt"
            corpus.write_text("\n".join(normalize(t) for t in texts) + "\n", encoding="utf-8")
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(Path(tmp) / "bpe"), vocab_size=vocab_size,
                model_type="bpe", character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, pad_id=-1,
                hard_vocab_limit=False, minloglevel=2,
            )  # fmt: skip
            return cls((Path(tmp) / "bpe.model").read_bytes())

    def __init__(self, model: bytes) -> None:
        import sentencepiece as spm

        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        super().__init__([self.sp.id_to_piece(i) for i in range(1, self.sp.get_piece_size())])

    def encode(self, text: str) -> list[int]:
        return [i - 1 + len(SPECIALS) if i > 0 else UNK for i in self.sp.encode(normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - len(SPECIALS) + 1 for i in ids if i >= len(SPECIALS)])

    def to_dict(self) -> dict:
        return {"kind": "bpe", "model": self.model.hex()}
