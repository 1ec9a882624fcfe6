"""Room reverberation for data augmentation: seeded synthetic room impulse responses.

A room impulse response (RIR) is modelled as a unit direct path followed by Gaussian noise under an
exponential envelope whose energy falls by 60 dB in ``rt60`` seconds (Sabine's reverberation time), the
statistical late-reverberation model used for simulated-RIR augmentation (e.g. Ko et al. 2017, "A study on
data augmentation of reverberant speech for robust speech recognition", ICASSP). Unlike image-method
simulators it has no early reflections or room geometry: only the decay time and the direct-to-reverberant
ratio vary. :func:`reverberate` convolves by FFT and keeps the dry signal's RMS level.
"""

from __future__ import annotations

import numpy as np


def synthetic_rir(
    rng: np.random.Generator, *, sample_rate: int, rt60: float, drr_db: float = 0.0, pre_delay: float = 0.002
) -> np.ndarray:
    """A seeded RIR: a direct-path impulse, then exponentially decaying noise (``rt60`` s to -60 dB).

    ``drr_db`` is the direct-to-reverberant energy ratio; ``pre_delay`` the gap before the tail starts.
    """
    if not rt60 > 0:
        raise ValueError(f"rt60 must be > 0 seconds, got {rt60}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    n = round(rt60 * sample_rate)  # the tail is cut at -60 dB
    gap = round(pre_delay * sample_rate)
    t = np.arange(n) / sample_rate
    # amplitude decays by 60 dB (a factor 1000) in rt60 seconds: exp(-t * ln(1000) / rt60)
    tail = rng.standard_normal(n) * np.exp(-t * np.log(1000.0) / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))  # tail energy relative to the unit direct path
    rir = np.zeros(1 + gap + n)
    rir[0] = 1.0
    rir[1 + gap :] = tail
    return rir.astype(np.float32)


def reverberate(wav: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``wav`` convolved with ``rir`` (same length as ``wav``, aligned to the direct path, same RMS)."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(wav.astype(np.float64), rir.astype(np.float64))[: len(wav)]
    scale = np.sqrt((np.mean(wav.astype(np.float64) ** 2) + 1e-20) / (np.mean(wet**2) + 1e-20))
    return (wet * scale).astype(np.float32)
