"""What a speech run needs to read new input exactly as it was trained, saved with the run.

:class:`SpeechSettings` holds the tokenizer (with its text normaliser and alphabet) and the feature settings
(sample rate, mel bands, CMVN). ``fit`` stores them in every checkpoint (``checkpoint["speech"]``) and in the
run directory (``speech_settings.json``); ``test``, ``validate``, ``predict``, ``transcribe`` and ``explain``
take them from the checkpoint and read any later manifest against them, never rebuilding them from files
passed later. The model's own configuration is the checkpoint's ``hyper_parameters``.

Checkpoints are read with ``torch.load(..., weights_only=True)``: loading never runs code from the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyhead.speech.data.errors import SpeechDataError
from polyhead.speech.data.tokenizer import Tokenizer

CHECKPOINT_KEY = "speech"
SETTINGS_FILE = "speech_settings.json"
FORMAT_VERSION = 1


@dataclass
class SpeechSettings:
    """Tokenizer + feature settings of a run (see the module docstring)."""

    tokenizer: Tokenizer
    features: dict[str, Any] = field(default_factory=dict)

    def fbank(self):  # -> Fbank; imported here so that reading settings does not load torchaudio
        from polyhead.speech.data.features import Fbank

        return Fbank.from_config(self.features)

    @property
    def sample_rate(self) -> int:
        return int(self.features.get("sample_rate", 16000))

    @property
    def n_mels(self) -> int:
        return int(self.features.get("n_mels", 80))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "tokenizer": self.tokenizer.to_dict(),
            "features": dict(self.features),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeechSettings:
        return cls(Tokenizer.from_dict(d["tokenizer"]), dict(d.get("features") or {}))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint read with ``weights_only=True`` (tensors and plain containers only)."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise SpeechDataError(f"checkpoint not found: {p}", reason="missing checkpoint")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated file or one holding code objects: both are refused here
        raise SpeechDataError(
            f"{p}: not a loadable checkpoint ({type(err).__name__}: {str(err).splitlines()[0]})",
            reason="bad checkpoint",
        ) from None


def settings_from_checkpoint(ckpt: dict[str, Any], where: str | Path = "checkpoint") -> SpeechSettings:
    """The run settings stored in a loaded checkpoint (older checkpoints: their tokenizer, default features)."""
    if CHECKPOINT_KEY in ckpt:
        return SpeechSettings.from_dict(ckpt[CHECKPOINT_KEY])
    if "tokenizer" in ckpt:
        return SpeechSettings(Tokenizer.from_dict(ckpt["tokenizer"]), {})
    raise SpeechDataError(
        f"{where}: not a polyhead-speech checkpoint (no {CHECKPOINT_KEY!r} settings)", reason="bad checkpoint"
    )
