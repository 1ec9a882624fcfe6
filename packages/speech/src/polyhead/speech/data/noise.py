"""Additive noise at a chosen signal-to-noise ratio: generated (white, pink) or a recording (looped, cropped).

:func:`mix_at_snr` scales the noise so that ``10 log10(P_signal / P_noise) = snr_db`` (mean power over the
utterance). :class:`RecordedNoise` takes seeded random crops of a noise recording, looping it when the
utterance is longer, so that one short file gives many different segments. The recording the synthesised
corpus uses by default is the one Debian ships: ``/usr/share/sounds/alsa/Noise.wav`` from ``alsa-utils``
(the packages/speech README says what it is and is not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALSA_NOISE = Path("/usr/share/sounds/alsa/Noise.wav")


def mix_at_snr(wav: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wav + g * noise`` with ``g`` chosen so that the mixture's SNR is ``snr_db`` (same lengths)."""
    if wav.shape != noise.shape:
        raise ValueError(f"signal and noise differ in shape: {wav.shape} vs {noise.shape}")
    p_sig = float(np.mean(wav.astype(np.float64) ** 2)) + 1e-12
    p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    return (wav + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, *, pink: bool) -> np.ndarray:
    """``n`` samples of white Gaussian noise, or pink (1/f power) noise shaped in the frequency domain."""
    noise = rng.standard_normal(n).astype(np.float32)
    if pink:
        spec = np.fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        noise = np.fft.irfft(spec, n=n).astype(np.float32)
    return noise


class RecordedNoise:
    """Seeded random segments of a noise recording, resampled to ``sample_rate``.

    Args:
        path: the recording (any format libsndfile reads; downmixed).
        sample_rate: the rate of the speech it is mixed into.
    """

    def __init__(self, *, path: str | Path = ALSA_NOISE, sample_rate: int = 16000) -> None:
        import soundfile as sf

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"noise recording not found: {p} (apt-get install alsa-utils)")
        data, sr = sf.read(str(p), dtype="float64", always_2d=True)
        data = data.mean(1)
        if sr != sample_rate:
            from math import gcd

            from scipy.signal import resample_poly

            g = gcd(sr, sample_rate)
            data = resample_poly(data, sample_rate // g, sr // g)
        if len(data) == 0 or not np.any(data):
            raise ValueError(f"{p}: the noise recording is empty or silent")
        self.path, self.samples = p, data.astype(np.float32)

    def segment(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples from a random offset, looping the recording as often as needed."""
        start = int(rng.integers(len(self.samples)))
        idx = (start + np.arange(n)) % len(self.samples)
        return self.samples[idx]
