"""Keypoint preprocessing and augmentation for ``(T, 86, 2)`` sequences (NaN = not detected).

- :func:`fill_missing`: forward then backward fill of each point over time, then zeros, with a
  ``(T, 86)`` mask of the points that were observed.
- :func:`normalize_parts`: per body part, coordinates relative to the part's first joint (wrist, first
  lip point, nose) divided by the part's spread, as in the Isharah reference preprocessing.
- Augmentations (vectorised, seeded with a ``numpy.random.Generator``): rotation, scale, shear, jitter,
  joint dropout, time warp, frame drop; :func:`crop_or_pad` to a fixed length (256 in the reference).
"""

from __future__ import annotations

import numpy as np

from polyhead.cslr.data.layout import PARTS


def fill_missing(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward/backward fill NaN points over time; never-seen points become 0. Returns ``(filled, observed)``."""
    x = kp[..., :2].astype(np.float32, copy=True)
    observed = ~np.isnan(x).any(-1)  # (T, P)
    T = x.shape[0]
    idx = np.where(observed, np.arange(T)[:, None], -1)
    ffill = np.maximum.accumulate(idx, axis=0)  # last observed frame at or before t
    bidx = np.where(observed, np.arange(T)[:, None], T)
    bfill = np.minimum.accumulate(bidx[::-1], axis=0)[::-1]  # first observed frame at or after t
    src = np.where(ffill >= 0, ffill, bfill)  # (T, P)
    has = src < T
    cols = np.arange(x.shape[1])[None, :].repeat(T, 0)
    out = np.zeros_like(x)
    out[has] = x[src[has], cols[has]]
    return out, observed


def normalize_parts(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per part: subtract the part's first joint and divide by the part's RMS distance to it (per frame)."""
    out = np.empty_like(x)
    for sl in PARTS.values():
        part = x[:, sl] - x[:, sl.start : sl.start + 1]
        scale = np.sqrt((part**2).sum(-1).mean(-1, keepdims=True))[..., None]  # (T, 1, 1)
        out[:, sl] = part / np.maximum(scale, eps)
    return out


def rotate(x: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    center = x.reshape(-1, 2).mean(0)
    return (x - center) @ np.array([[c, s], [-s, c]], dtype=x.dtype) + center


def scale(x: np.ndarray, factor: float | np.ndarray) -> np.ndarray:
    center = x.reshape(-1, 2).mean(0)
    return (x - center) * factor + center


def shear(x: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return x @ np.array([[1.0, sy], [sx, 1.0]], dtype=x.dtype)


def jitter(x: np.ndarray, rng: np.random.Generator, std: float = 0.005) -> np.ndarray:
    return x + rng.normal(0.0, std, x.shape).astype(x.dtype)


def joint_dropout(
    x: np.ndarray, observed: np.ndarray, rng: np.random.Generator, p: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    drop = rng.random(observed.shape) < p
    return np.where(drop[..., None], 0.0, x).astype(x.dtype), observed & ~drop


def time_warp(x: np.ndarray, rng: np.random.Generator, max_speed: float = 0.2) -> np.ndarray:
    """Resample in time with a random constant speed in ``[1 - max_speed, 1 + max_speed]`` (linear interpolation)."""
    T = x.shape[0]
    new_T = max(2, int(np.rint(T / rng.uniform(1 - max_speed, 1 + max_speed))))
    t = np.linspace(0, T - 1, new_T)
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, T - 1)
    w = (t - lo)[:, None, None].astype(x.dtype)
    return x[lo] * (1 - w) + x[hi] * w


def frame_drop(x: np.ndarray, rng: np.random.Generator, p: float = 0.1) -> np.ndarray:
    keep = rng.random(x.shape[0]) >= p
    keep[0] = True
    return x[keep]


def crop_or_pad(x: np.ndarray, length: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Random (or centred) crop to ``length`` frames, or zero-pad; returns ``(array, valid_length)``."""
    T = x.shape[0]
    if length <= T:
        start = int(rng.integers(0, T - length + 1)) if rng is not None else (T - length) // 2
        return x[start : start + length], length
    pad = np.zeros((length - T, *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, pad]), T


def augment(x: np.ndarray, observed: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The reference augmentation chain on filled coordinates (before normalisation)."""
    x = rotate(x, rng.uniform(-np.pi / 12, np.pi / 12))
    x = scale(x, rng.uniform(0.85, 1.15))
    x = shear(x, rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1))
    x = jitter(x, rng)
    x, observed = joint_dropout(x, observed, rng)
    return x, observed
