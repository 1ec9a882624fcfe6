"""Generated continuous signing in the 86-point layout, with Isharah-like splits (the embedded default).

A vocabulary of glosses, each a parametric sign: a hand shape (per-finger flexion of a canonical
21-point hand), a location in front of the body, a movement path (line, arc or circle) with 1-3
repetitions, one or two hands, and a mouth opening. A sentence is a gloss sequence; consecutive signs are
joined by smooth co-articulation (a cosine blend of the hand trajectories over a few frames). Signers
differ in body proportions, camera distance and in-plane angle, signing speed, handedness (left-handed
signers mirror the dominant hand; if a dev or test signer is left-handed, training has one too) and
jitter; hands drop out for short spans (NaN), as detectors do.

Two splits mimic the SignEval 2025 tasks:
- ``signer_independent``: test (and dev) signers never appear in training;
- ``unseen_sentences``: test gloss sequences never appear in training (same vocabulary and signers).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from polyhead.cslr.data.isharah import Sample
from polyhead.cslr.data.layout import BODY, LEFT_HAND, LIPS, NUM_POINTS, RIGHT_HAND

GENERATOR_VERSION = 2  # part of the generated-corpus cache key: bump whenever the generated data changes

# Canonical right hand (wrist at the origin, fingers pointing up, units of hand length).
_FINGER_BASES = np.array([[-0.35, 0.25], [-0.15, 0.45], [0.0, 0.48], [0.15, 0.45], [0.28, 0.4]])
_FINGER_DIRS = np.array([[-0.6, 0.8], [-0.1, 1.0], [0.0, 1.0], [0.1, 1.0], [0.25, 1.0]])
_SEGMENT = np.array([0.18, 0.14, 0.12])


def hand_shape(flexion: np.ndarray) -> np.ndarray:
    """21 points for per-finger flexion in [0, 1] (0 straight, 1 fist): ``(21, 2)``."""
    pts = [np.zeros(2)]
    for f in range(5):
        d = _FINGER_DIRS[f] / np.linalg.norm(_FINGER_DIRS[f])
        p = _FINGER_BASES[f].copy()
        pts.append(p.copy())
        angle = 0.0
        for s in range(3):
            angle += flexion[f] * 1.2 * (1 if f else -1)
            c, sn = np.cos(angle), np.sin(angle)
            step = np.array([c * d[0] - sn * d[1], sn * d[0] + c * d[1]]) * _SEGMENT[s]
            p = p + step
            pts.append(p.copy())
    return np.asarray(pts)


@dataclass(frozen=True)
class GlossSign:
    flexion: np.ndarray  # (5,)
    location: np.ndarray  # (2,) relative to the neck, in shoulder widths
    path: str  # line | arc | circle
    direction: float
    size: float
    repetitions: int
    two_handed: bool
    mouth: float


@dataclass(frozen=True)
class Signer:
    id: int
    shoulder: float
    arm: float
    distance: float
    angle: float
    speed: float
    left_handed: bool
    jitter: float


def make_vocabulary(n: int, rng: np.random.Generator) -> list[GlossSign]:
    return [
        GlossSign(
            rng.uniform(0, 1, 5),
            rng.uniform([-0.6, -0.9], [0.6, 0.5]),
            str(rng.choice(["line", "arc", "circle"])),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0.15, 0.4)),
            int(rng.integers(1, 4)),
            bool(rng.random() < 0.3),
            float(rng.uniform(0, 1)),
        )
        for _ in range(n)
    ]


def make_signers(n: int, rng: np.random.Generator) -> list[Signer]:
    return [
        Signer(i, rng.uniform(0.8, 1.2), rng.uniform(0.9, 1.1), rng.uniform(0.7, 1.3), rng.uniform(-0.15, 0.15),
               rng.uniform(0.8, 1.25), bool(rng.random() < 0.25), rng.uniform(0.003, 0.012))
        for i in range(n)
    ]  # fmt: skip


def _path(sign: GlossSign, n: int) -> np.ndarray:
    """Hand offset over the sign's frames: ``(n, 2)``."""
    t = np.linspace(0, 1, n) * sign.repetitions
    u = (t % 1.0) * 2 * np.pi
    d = np.array([np.cos(sign.direction), np.sin(sign.direction)])
    if sign.path == "line":
        off = np.sin(u)[:, None] * d
    elif sign.path == "arc":
        off = np.stack([np.sin(u) * d[0], np.abs(np.sin(u)) * 0.5 + np.sin(u) * d[1]], -1)
    else:
        off = np.stack([np.cos(u + sign.direction), np.sin(u + sign.direction)], -1)
    return off * sign.size


def _body_template(signer: Signer) -> np.ndarray:
    """MediaPipe Pose 0-24 in body units (neck at the origin, y up): ``(25, 2)``."""
    s = signer.shoulder
    b = np.zeros((25, 2))
    b[0] = [0, 0.55]  # nose
    b[1:4] = [[-0.05, 0.62], [-0.08, 0.62], [-0.11, 0.62]]
    b[4:7] = [[0.05, 0.62], [0.08, 0.62], [0.11, 0.62]]
    b[7:9] = [[-0.16, 0.58], [0.16, 0.58]]
    b[9:11] = [[-0.04, 0.47], [0.04, 0.47]]
    b[11:13] = [[-0.5 * s, 0.0], [0.5 * s, 0.0]]
    b[23:25] = [[-0.3 * s, -1.1], [0.3 * s, -1.1]]
    return b


def render_sentence(
    glosses: list[int],
    vocab: list[GlossSign],
    signer: Signer,
    rng: np.random.Generator,
    *,
    missing_hand: float = 0.0,
    long_gaps: float = 0.0,
) -> np.ndarray:
    """Keypoints ``(T, 86, 3)``: x, y in image units and a detection confidence; NaN where undetected.

    ``missing_hand``: probability that one hand (either) is never detected in the clip; ``long_gaps``:
    probability, per hand, of a detection gap over 30-70% of the clip (as real extraction has when a hand
    leaves the frame or is occluded). Both default to 0 (the default corpus).
    """
    spans = [max(6, int(rng.normal(16, 2) / signer.speed)) for _ in glosses]
    hold = max(2, int(4 / signer.speed))
    dom_frames, sub_frames, mouth = [], [], []
    for g, n in zip(glosses, spans):
        s = vocab[g]
        base = s.location * signer.arm
        dom_frames.append(base + _path(s, n))
        sub_frames.append(
            np.tile([-0.45 * signer.shoulder, -0.7], (n, 1))
            if not s.two_handed
            else base * [-1, 1] - _path(s, n) * [1, -1]
        )
        mouth.append(np.full(n, s.mouth))

    ramp = ((1 - np.cos(np.linspace(0, np.pi, hold))) / 2)[:, None]  # (hold, 1)

    def join(chunks: list[np.ndarray]) -> np.ndarray:
        """Co-articulation: a cosine blend from the end of each sign to the start of the next."""
        out = [chunks[0]]
        for nxt in chunks[1:]:
            out += [out[-1][-1] * (1 - ramp) + nxt[0] * ramp, nxt]
        return np.concatenate(out)

    dom, sub = join(dom_frames), join(sub_frames)
    mouth_t = np.concatenate([np.concatenate([m, np.full(hold, m[-1])]) for m in mouth])[: len(dom)]
    T = len(dom)
    kp = np.zeros((T, NUM_POINTS, 2))
    # The hand shape is constant over a sign and its hold: one shape per gloss, repeated over its frames.
    shapes = (
        np.concatenate(
            [np.repeat(hand_shape(vocab[g].flexion)[None], n + hold, axis=0) for g, n in zip(glosses, spans)]
        )[:T]
        * 0.35
    )  # (T, 21, 2)
    right, left = (sub, dom) if signer.left_handed else (dom, sub)
    mirror = np.array([-1.0, 1.0])
    kp[:, RIGHT_HAND] = right[:, None] + shapes * (mirror if signer.left_handed else 1.0)
    kp[:, LEFT_HAND] = left[:, None] + (shapes if signer.left_handed else shapes * mirror)
    ring = np.linspace(0, 2 * np.pi, 19, endpoint=False)
    kp[:, LIPS] = np.array([0, 0.47]) + np.stack(
        [0.05 * np.cos(ring)[None].repeat(T, 0), (0.01 + 0.03 * mouth_t)[:, None] * np.sin(ring)[None]], -1
    )
    body = _body_template(signer)[None].repeat(T, 0)
    body[:, 15], body[:, 16] = right, left  # wrists follow the hands
    body[:, 13] = (body[:, 11] + right) / 2 + [-0.1, -0.2]
    body[:, 14] = (body[:, 12] + left) / 2 + [0.1, -0.2]
    body[:, 17:23] = np.repeat(np.stack([right, left], 1), 3, axis=1)
    kp[:, BODY] = body
    # Camera: rotation, distance, image placement; jitter.
    c, s_ = np.cos(signer.angle), np.sin(signer.angle)
    kp = kp @ np.array([[c, s_], [-s_, c]]) * (0.25 / signer.distance) + [0.5, 0.55]
    kp = kp + rng.normal(0, signer.jitter, kp.shape)
    conf = np.ones((T, NUM_POINTS, 1))
    for hand in (RIGHT_HAND, LEFT_HAND):  # detection dropouts of whole hands over short spans
        for _ in range(rng.poisson(T / 60)):
            start = int(rng.integers(0, T))
            kp[start : start + int(rng.integers(2, 8)), hand] = np.nan
    if long_gaps:
        for hand in (RIGHT_HAND, LEFT_HAND):
            if rng.random() < long_gaps:
                span = int(rng.uniform(0.3, 0.7) * T)
                start = int(rng.integers(0, T - span + 1))
                kp[start : start + span, hand] = np.nan
    if missing_hand and rng.random() < missing_hand:
        kp[:, (RIGHT_HAND, LEFT_HAND)[int(rng.integers(0, 2))]] = np.nan
    conf[np.isnan(kp).any(-1)] = 0.0
    return np.concatenate([kp, conf], -1).astype(np.float32)


def assign_signer_splits(signers: list[Signer]) -> tuple[list[Signer], set[int], set[int]]:
    """Signer-independent split: the last fifth of the signers test, the one before dev, the rest train.

    Unseen signers must come from the training population: if a dev or test signer is left-handed and no
    training signer is, the first training signer is made left-handed (otherwise the split would test
    mirror invariance, not signer independence).
    """
    n_test = max(1, len(signers) // 5)
    test = {s.id for s in signers[-n_test:]}
    dev = {signers[-n_test - 1].id}
    train = [i for i, s in enumerate(signers) if s.id not in test | dev]
    held_out_left = any(s.left_handed for s in signers if s.id in test | dev)
    if held_out_left and not any(signers[i].left_handed for i in train):
        signers = list(signers)
        signers[train[0]] = replace(signers[train[0]], left_handed=True)
    return signers, dev, test


def generate_corpus(
    *,
    num_glosses: int = 60,
    num_signers: int = 9,
    num_sentences: int = 120,
    samples_per_sentence: int = 4,
    min_len: int = 2,
    max_len: int = 6,
    seed: int = 0,
    missing_hand: float = 0.0,
    long_gaps: float = 0.0,
) -> dict[str, dict[str, list[Sample]]]:
    """Both splits: ``{"signer_independent": {"train", "dev", "test"}, "unseen_sentences": {...}}``.

    ``missing_hand`` and ``long_gaps`` add detection failures to every split (see :func:`render_sentence`).
    """
    rng = np.random.default_rng(seed)
    vocab = make_vocabulary(num_glosses, rng)
    signers = make_signers(num_signers, rng)
    sentences: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()
    while len(sentences) < num_sentences:
        s = tuple(int(g) for g in rng.integers(0, num_glosses, rng.integers(min_len, max_len + 1)))
        if s not in seen:
            seen.add(s)
            sentences.append(s)
    names = [f"G{i:03d}" for i in range(num_glosses)]

    def sample(sid: str, sent: tuple[int, ...], signer: Signer) -> Sample:
        return Sample(
            sid,
            render_sentence(list(sent), vocab, signer, rng, missing_hand=missing_hand, long_gaps=long_gaps),
            tuple(names[g] for g in sent),
        )

    signers, si_dev, si_test = assign_signer_splits(signers)
    si: dict[str, list[Sample]] = {"train": [], "dev": [], "test": []}
    us: dict[str, list[Sample]] = {"train": [], "dev": [], "test": []}
    n_us_test = max(1, num_sentences // 5)
    us_split = {
        i: ("test" if i < n_us_test else "dev" if i < 2 * n_us_test else "train")
        for i in range(num_sentences)
    }
    for i, sent in enumerate(sentences):
        for k in range(samples_per_sentence):
            signer = signers[int(rng.integers(0, num_signers))]
            part = "test" if signer.id in si_test else "dev" if signer.id in si_dev else "train"
            si[part].append(sample(f"si_{i:04d}_{k}_s{signer.id}", sent, signer))
            us[us_split[i]].append(sample(f"us_{i:04d}_{k}_s{signer.id}", sent, signer))
    return {"signer_independent": si, "unseen_sentences": us}
