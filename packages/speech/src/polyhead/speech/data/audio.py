"""Audio I/O with soundfile: any rate / channel count -> mono float32 at the model rate, with checks.

torchaudio's own loader needs torchcodec in torchaudio 2.9+; soundfile (libsndfile 1.1+) reads WAV, FLAC,
OGG/Vorbis/Opus and MP3 (Common Voice's clips), among others (:data:`AUDIO_SUFFIXES`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polyhead.speech.data.errors import SpeechDataError

# what the manifest builders collect from a folder; load_audio reads whatever libsndfile decodes
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")


class AudioError(SpeechDataError):
    """An audio file that cannot be used (missing, empty, truncated, not audio, silent, too long)."""


def load_audio(path: str | Path, sample_rate: int = 16000, *, min_rms_db: float = -70.0) -> Tensor:
    """Read ``path`` -> ``(samples,)`` float32 mono at ``sample_rate``.

    Raises :class:`AudioError` naming the file for an empty or unreadable file, zero samples, or a signal
    whose RMS level is below ``min_rms_db`` dBFS (digital silence).
    """
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: no such audio file", reason="missing audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: empty file (0 bytes)", reason="empty audio file")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises RuntimeError/LibsndfileError for bad or truncated files
        raise AudioError(
            f"{p}: not a readable audio file ({type(err).__name__}: {err})", reason="unreadable audio"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"{p}: zero-length audio", reason="zero-length audio")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # downmix to mono
    if sr != sample_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav, sr, sample_rate)
    rms = float(wav.pow(2).mean().sqrt())
    if 20 * np.log10(max(rms, 1e-12)) < min_rms_db:
        raise AudioError(
            f"{p}: silent audio (RMS {20 * np.log10(max(rms, 1e-12)):.0f} dBFS < {min_rms_db} dBFS)",
            reason="silent audio",
        )
    return wav


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding); :class:`AudioError` naming the file if unreadable."""
    import soundfile as sf

    p = Path(path)
    if not p.is_file():
        raise AudioError(f"{p}: no such audio file", reason="missing audio file")
    try:
        info = sf.info(str(p))
    except Exception as err:  # libsndfile's errors for non-audio or truncated headers
        raise AudioError(
            f"{p}: not a readable audio file ({type(err).__name__}: {err})", reason="unreadable audio"
        ) from None
    return info.frames / info.samplerate
