"""Keypoint preprocessing and augmentation for ``(T, 86, 2)`` sequences (NaN = not detected).

Missing points are handled the same way in training and evaluation (:func:`preprocess`):

1. training only: missingness augmentation on the raw keypoints (joint dropout, a whole hand dropped for
   a span), written as NaN, so a dropped point goes through exactly the path of an undetected one;
2. :func:`fill_missing`: forward then backward fill of each point over time, with ``observed`` (detected in
   this frame) and ``present`` (detected in some frame of the sequence) masks;
3. training only: temporal (time warp, frame drop) and spatial (rotation, scale, shear, jitter)
   augmentation; spatial centres and jitter use present points only, so a never-detected hand stays a
   single point and gets no noise;
4. :func:`normalize_parts`: per body part, coordinates relative to the part's first joint (wrist, first lip
   point, nose) divided by the part's RMS spread, as in the Isharah reference preprocessing, computed over
   present points only; points that are not present are exactly 0 (no fake points).

The model gets the coordinates and the ``observed`` mask (``CSLRModule(observed="channel")`` feeds it as
an extra input channel per point). ``NORMALIZATION`` names this scheme; it is stored with the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from polyhead.cslr.data.layout import LEFT_HAND, PARTS, RIGHT_HAND

NORMALIZATION = "per_part_rms_present_v2"  # stored with the checkpoint; bump when preprocessing changes


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation (the reference chain plus missingness augmentation).

    Attributes:
        rotation_deg: uniform in-plane rotation in ``[-rotation_deg, rotation_deg]``.
        scale: uniform scale factor in ``[1 - scale, 1 + scale]``.
        shear: uniform shear in ``[-shear, shear]`` per axis.
        jitter: standard deviation of Gaussian noise on present points (image units).
        joint_dropout: probability that a point is dropped (made undetected) in a frame.
        hand_dropout: probability that a hand is dropped for a span of the sequence.
        hand_dropout_span: longest dropped span, as a fraction of the sequence (the span is uniform up to it).
        time_warp: speed change in ``[1 - time_warp, 1 + time_warp]``.
        frame_drop: probability that a frame is removed.
    """

    rotation_deg: float = 15.0
    scale: float = 0.15
    shear: float = 0.1
    jitter: float = 0.005
    joint_dropout: float = 0.05
    hand_dropout: float = 0.1
    hand_dropout_span: float = 1.0
    time_warp: float = 0.2
    frame_drop: float = 0.1

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if v < 0:
                raise ValueError(f"Augmentation.{k} must be >= 0, got {v}")
        for k in ("joint_dropout", "hand_dropout", "frame_drop", "hand_dropout_span"):
            if getattr(self, k) > 1:
                raise ValueError(
                    f"Augmentation.{k} is a probability/fraction in [0, 1], got {getattr(self, k)}"
                )
        if self.scale >= 1 or self.time_warp >= 1:
            raise ValueError("Augmentation.scale and time_warp must be < 1")


def fill_missing(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward/backward fill NaN points over time.

    Returns:
        ``(filled (T, P, 2), observed (T, P), present (P,))``: ``observed`` marks points detected in that
        frame, ``present`` points detected in some frame; never-detected points are 0 in ``filled``.
    """
    x = kp[..., :2].astype(np.float32, copy=True)
    observed = ~np.isnan(x).any(-1)  # (T, P)
    T = x.shape[0]
    idx = np.where(observed, np.arange(T)[:, None], -1)
    ffill = np.maximum.accumulate(idx, axis=0)  # last observed frame at or before t
    bidx = np.where(observed, np.arange(T)[:, None], T)
    bfill = np.minimum.accumulate(bidx[::-1], axis=0)[::-1]  # first observed frame at or after t
    src = np.where(ffill >= 0, ffill, bfill)  # (T, P)
    has = src < T
    cols = np.broadcast_to(np.arange(x.shape[1])[None, :], src.shape)
    out = np.zeros_like(x)
    out[has] = x[src[has], cols[has]]
    return out, observed, observed.any(0)


def normalize_parts(x: np.ndarray, present: np.ndarray | None = None, eps: float = 1e-6) -> np.ndarray:
    """Per part and frame: subtract the part's first joint, divide by the RMS distance to it.

    Only ``present`` points (``(P,)`` or ``(T, P)``) count for the reference and the spread; when the first
    joint is not present the part's present centroid is the reference. Points that are not present are 0.
    """
    T, P = x.shape[:2]
    pres = np.ones((T, P), bool) if present is None else np.broadcast_to(present, (T, P))
    out = np.zeros_like(x)
    for sl in PARTS.values():
        m = pres[:, sl]  # (T, n)
        part = x[:, sl]
        cnt = m.sum(1, keepdims=True)  # (T, 1)
        centroid = (part * m[..., None]).sum(1, keepdims=True) / np.maximum(cnt, 1)[..., None]
        ref = np.where(m[:, :1, None], part[:, :1], centroid)  # (T, 1, 2)
        rel = (part - ref) * m[..., None]
        scale = np.sqrt((rel**2).sum(-1).sum(-1, keepdims=True) / np.maximum(cnt, 1))[..., None]  # (T, 1, 1)
        out[:, sl] = rel / np.maximum(scale, eps)
    return out


def _center(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    pts = x[:, present].reshape(-1, 2)
    return pts.mean(0) if len(pts) else np.zeros(2, x.dtype)


def rotate(x: np.ndarray, angle: float, present: np.ndarray | None = None) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    center = _center(x, np.ones(x.shape[1], bool) if present is None else present)
    return (x - center) @ np.array([[c, s], [-s, c]], dtype=x.dtype) + center


def scale(x: np.ndarray, factor: float | np.ndarray, present: np.ndarray | None = None) -> np.ndarray:
    center = _center(x, np.ones(x.shape[1], bool) if present is None else present)
    return (x - center) * factor + center


def shear(x: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return x @ np.array([[1.0, sy], [sx, 1.0]], dtype=x.dtype)


def jitter(
    x: np.ndarray, rng: np.random.Generator, std: float = 0.005, present: np.ndarray | None = None
) -> np.ndarray:
    noise = rng.normal(0.0, std, x.shape).astype(x.dtype)
    if present is not None:
        noise *= present[None, :, None]
    return x + noise


def drop_missing(kp: np.ndarray, rng: np.random.Generator, aug: Augmentation) -> np.ndarray:
    """Missingness augmentation on raw keypoints: dropped points become NaN, as undetected ones are."""
    kp = kp.copy()
    T = kp.shape[0]
    if aug.joint_dropout:
        kp[rng.random(kp.shape[:2]) < aug.joint_dropout, :2] = np.nan
    if aug.hand_dropout:
        for hand in (RIGHT_HAND, LEFT_HAND):
            if rng.random() < aug.hand_dropout:
                span = max(1, int(np.ceil(rng.uniform(0, aug.hand_dropout_span) * T)))
                start = int(rng.integers(0, T - span + 1))
                kp[start : start + span, hand, :2] = np.nan
    return kp


def warp_times(T: int, rng: np.random.Generator, max_speed: float = 0.2) -> np.ndarray:
    """Time warp: sample times for a random constant speed in ``[1 - max_speed, 1 + max_speed]``."""
    new_T = max(2, int(np.rint(T / rng.uniform(1 - max_speed, 1 + max_speed))))
    return np.linspace(0, T - 1, new_T)


def resample(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``x`` at fractional times ``t`` (linear); a boolean mask is set where both neighbours are."""
    lo = np.floor(t).astype(int)
    hi = np.minimum(np.ceil(t).astype(int), x.shape[0] - 1)  # == lo at whole times: one neighbour only
    if x.dtype == bool:
        return x[lo] & x[hi]
    w = (t - lo).reshape(-1, *([1] * (x.ndim - 1))).astype(x.dtype)
    return x[lo] * (1 - w) + x[hi] * w


def frame_keep(T: int, rng: np.random.Generator, p: float) -> np.ndarray:
    """Frame drop: which of ``T`` frames to keep, each dropped with probability ``p`` (never the first)."""
    keep = rng.random(T) >= p
    keep[0] = True
    return keep


def preprocess(
    kp: np.ndarray,
    *,
    max_frames: int,
    rng: np.random.Generator | None = None,
    aug: Augmentation | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw keypoints ``(T, 86, C)`` -> model input ``(T', 86, 2)`` and ``observed (T', 86)``.

    With ``aug`` (and ``rng``) this is the training path; without, evaluation. Both treat missing points
    identically: filled from their neighbours in time when seen elsewhere in the sequence, exactly 0 when
    never seen, and flagged in ``observed``.
    """
    if aug is not None:  # the training path
        assert rng is not None, "augmentation needs an rng"
        kp = drop_missing(kp, rng, aug)
    x, observed, present = fill_missing(kp)
    if aug is not None:
        assert rng is not None
        keep = frame_keep(x.shape[0], rng, aug.frame_drop)
        x, observed = x[keep], observed[keep]
        t = warp_times(x.shape[0], rng, aug.time_warp)
        x, observed = resample(x, t), resample(observed, t)
        x = rotate(x, np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg)), present)
        x = scale(x, rng.uniform(1 - aug.scale, 1 + aug.scale), present)
        x = shear(x, rng.uniform(-aug.shear, aug.shear), rng.uniform(-aug.shear, aug.shear))
        x = jitter(x, rng, aug.jitter, present)
    x = normalize_parts(x, present)
    if x.shape[0] > max_frames:
        if aug is not None:
            assert rng is not None
            start = int(rng.integers(0, x.shape[0] - max_frames + 1))
        else:
            start = (x.shape[0] - max_frames) // 2
        x, observed = x[start : start + max_frames], observed[start : start + max_frames]
    return x, observed
