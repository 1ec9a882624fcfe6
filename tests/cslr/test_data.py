"""CSLR data layer: Isharah round trip and annotation errors, fill/normalise, augmentation invariants."""

from __future__ import annotations

import os
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from polyhead.cslr.data.isharah import (
    DataError,
    DataReport,
    Sample,
    load_keypoints,
    load_split,
    load_unlabeled,
    write_release,
)
from polyhead.cslr.data.layout import BODY, LEFT_HAND, LIPS, NUM_POINTS, RIGHT_HAND, bones
from polyhead.cslr.data.transforms import (
    Augmentation,
    fill_missing,
    frame_keep,
    normalize_parts,
    preprocess,
    resample,
    rotate,
    scale,
    warp_times,
)
from polyhead.cslr.data.vocab import GlossVocabulary


def _samples(rng: np.random.Generator, n: int = 3) -> list[Sample]:
    return [
        Sample(
            f"s{i}",
            rng.normal(size=(5 + i, NUM_POINTS, 3)).astype(np.float32),
            tuple(f"G{j}" for j in range(i + 1)),
        )
        for i in range(n)
    ]


def test_layout_partitions_86_points() -> None:
    covered = sorted(i for sl in (RIGHT_HAND, LEFT_HAND, LIPS, BODY) for i in range(sl.start, sl.stop))
    assert covered == list(range(NUM_POINTS))
    b = bones()
    assert b.min() >= 0 and b.max() < NUM_POINTS and len(b) == 2 * 21 + 19 + 8


def test_isharah_round_trip(tmp_path: Path) -> None:
    samples = _samples(np.random.default_rng(0))
    write_release(samples, tmp_path / "kp.pkl", tmp_path / "train.txt")
    back = load_split(tmp_path / "kp.pkl", tmp_path / "train.txt")
    assert [s.id for s in back] == [s.id for s in samples]
    for a, b in zip(samples, back):
        assert a.glosses == b.glosses
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def _release(tmp_path: Path, lines: list[str], arrays: dict) -> tuple[Path, Path]:
    kp, ann = tmp_path / "kp.pkl", tmp_path / "dev.txt"
    kp.write_bytes(pickle.dumps({k: {"keypoints": v} for k, v in arrays.items()}))
    ann.write_text("id|gloss\n" + "\n".join(lines) + "\n")
    return kp, ann


def test_every_problem_of_a_file_in_one_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    good = rng.normal(size=(5, NUM_POINTS, 3)).astype(np.float32)
    nan = np.full((4, NUM_POINTS, 3), np.nan, np.float32)
    inf = good.copy()
    inf[2, 3, 0] = np.inf
    arrays = {"s0": good, "s1": good, "flat": np.zeros((3, 80, 2)), "blank": nan, "inf": inf}
    lines = [
        "s0|G0",
        "s9|G1 G2",
        "s1|   ",
        "s1 G1 G2",
        "s1|G1|G2",
        "flat|G1",
        "blank|G2",
        "s0|G3",
        "inf|G1",
        "s8|G1",
    ]
    kp, ann = _release(tmp_path, lines, arrays)
    with pytest.raises(DataError) as exc:
        load_split(kp, ann)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{ann}: 9 problems")
    for expected in (
        "line 3: unknown id 's9'",
        "line 4: empty gloss for id 's1'",
        "line 5: expected 'id|gloss' with one '|'",
        "line 6: expected 'id|gloss'",
        "line 7: sample 'flat': keypoints must be (T > 0, 86, >= 2), got (3, 80, 2)",
        "line 8: sample 'blank': no point observed in any of its 4 frames",
        "line 9: id 's0' already annotated on line 2",
    ):
        assert expected in msg, expected
    assert "and 1 more" in msg  # the ninth is counted, not spelled out
    assert [p.line for p in exc.value.report.problems] == list(range(3, 12))
    # skip_bad: the good sample stays, the rest is counted by reason
    report = DataReport()
    kept = load_split(kp, ann, skip_bad=True, report=report)
    assert [s.id for s in kept] == ["s0"]
    assert report.skipped == {"unknown_id": 2, "empty_gloss": 1, "malformed_line": 2, "bad_shape": 1,
                              "all_missing": 1, "duplicate_id": 1, "non_finite": 1}  # fmt: skip


def test_samples_no_split_uses_are_not_validated(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    arrays = {"s0": rng.normal(size=(5, NUM_POINTS, 2)), "broken": np.zeros((3, 7)), "odd": "not an array"}
    kp, ann = _release(tmp_path, ["s0|G0"], arrays)
    (sample,) = load_split(kp, ann)
    assert sample.id == "s0" and sample.keypoints.dtype == np.float32
    with pytest.raises(DataError, match=r"sample 'broken'.*sample 'odd'"):
        load_unlabeled(kp)


def test_crafted_pickle_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    f = tmp_path / "evil.pkl"
    f.write_bytes(pickle.dumps({"s0": {"keypoints": Exploit()}}))
    with pytest.raises(ValueError, match=r"evil.pkl: refused to load (posix|os)\.system"):
        load_keypoints(f)
    assert not marker.exists()
    # numpy arrays (also numpy-2 module names and protocol 5) and plain containers load
    arr = np.random.default_rng(6).normal(size=(2, NUM_POINTS, 3)).astype(np.float32)
    for protocol in (2, 4, 5):
        f.write_bytes(pickle.dumps({"a": {"keypoints": arr}, "b": [1, (2, 3)]}, protocol=protocol))
        np.testing.assert_array_equal(load_keypoints(f)["a"]["keypoints"], arr)
    # a trusted legacy file with other objects: only with unsafe=True
    f.write_bytes(pickle.dumps({"a": {"keypoints": arr, "meta": Fraction(1, 3)}}))
    with pytest.raises(ValueError, match=r"refused to load fractions\.Fraction"):
        load_keypoints(f)
    assert load_keypoints(f, unsafe=True)["a"]["meta"] == Fraction(1, 3)
    f.write_bytes(pickle.dumps({"a": 1})[:-3])
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_keypoints(f)


def test_fill_missing_forward_then_backward() -> None:
    x = np.full((5, NUM_POINTS, 2), np.nan, dtype=np.float32)
    x[1, 0] = [1, 1]
    x[3, 0] = [3, 3]
    x[:, 5] = 7.0
    filled, observed, present = fill_missing(x)
    np.testing.assert_array_equal(filled[:, 0, 0], [1, 1, 1, 3, 3])  # backward fill at t=0, forward after
    assert (filled[:, 1] == 0).all() and not observed[:, 1].any() and not present[1]  # never seen
    assert observed[:, 5].all() and observed[1, 0] and not observed[2, 0] and present[0] and present[5]


def _clip(rng: np.random.Generator, T: int = 40) -> np.ndarray:
    base = rng.uniform(0.2, 0.8, size=(1, NUM_POINTS, 2))
    kp = (base + np.cumsum(rng.normal(0, 0.01, size=(T, NUM_POINTS, 2)), 0)).astype(np.float32)
    kp[:, LEFT_HAND] = np.nan  # never detected
    kp[:, BODY.start + 20] = np.nan  # a body point never detected
    kp[10:20, RIGHT_HAND] = np.nan  # a gap
    return kp


def test_missing_points_are_zero_and_flagged_in_training_and_evaluation() -> None:
    rng = np.random.default_rng(7)
    kp = _clip(rng)
    never = np.zeros(NUM_POINTS, bool)
    never[LEFT_HAND] = True
    never[BODY.start + 20] = True
    ev, ev_obs = preprocess(kp, max_frames=256)
    aug = Augmentation(joint_dropout=0.0, hand_dropout=0.0, frame_drop=0.0, time_warp=0.0)
    for x, obs in [(ev, ev_obs), preprocess(kp, max_frames=256, rng=rng, aug=aug)]:
        assert (x[:, never] == 0).all() and not obs[:, never].any()  # no fake points, no noise
        assert np.isfinite(x).all() and (np.abs(x[:, ~never]).sum(-1) > 0).mean() > 0.9
    assert not ev_obs[10:20, RIGHT_HAND].any() and ev_obs[:10, RIGHT_HAND].all()
    np.testing.assert_allclose(ev[10:20, RIGHT_HAND], ev[9:10, RIGHT_HAND].repeat(10, 0), atol=1e-5)
    # augmented missingness goes the same way: a dropped hand is all zeros and unobserved
    x, obs = preprocess(
        kp, max_frames=256, rng=rng, aug=Augmentation(hand_dropout=1.0, hand_dropout_span=1.0)
    )
    assert x.shape[0] == obs.shape[0] and x.shape[1:] == (NUM_POINTS, 2)
    # longest crop
    x, obs = preprocess(kp, max_frames=16)
    assert x.shape[0] == obs.shape[0] == 16


def test_normalize_parts_with_an_absent_first_joint() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, NUM_POINTS, 2))
    present = np.ones(NUM_POINTS, bool)
    present[RIGHT_HAND.start] = False  # no wrist: the hand's centroid is the reference
    out = normalize_parts(x, present)
    hand = x[:, RIGHT_HAND.start + 1 : RIGHT_HAND.stop]
    rel = hand - hand.mean(1, keepdims=True)
    ref = rel / np.sqrt((rel**2).sum(-1).mean(-1))[:, None, None]
    np.testing.assert_allclose(out[:, RIGHT_HAND.start + 1 : RIGHT_HAND.stop], ref, atol=1e-9)
    assert (out[:, RIGHT_HAND.start] == 0).all()


def test_normalize_parts_is_translation_and_scale_invariant() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, NUM_POINTS, 2)).astype(np.float64)
    a = normalize_parts(x)
    b = normalize_parts(3.0 * x + np.array([5.0, -2.0]))
    np.testing.assert_allclose(a, b, atol=1e-9)
    for sl in (RIGHT_HAND, LEFT_HAND, LIPS, BODY):
        np.testing.assert_allclose(a[:, sl.start], 0.0)  # first joint at the origin


def test_rotation_keeps_bone_lengths_and_scale_multiplies_them() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, NUM_POINTS, 2))
    b = bones()

    def lengths(y: np.ndarray) -> np.ndarray:
        return np.linalg.norm(y[:, b[:, 0]] - y[:, b[:, 1]], axis=-1)

    np.testing.assert_allclose(lengths(rotate(x, 0.7)), lengths(x), rtol=1e-10)
    np.testing.assert_allclose(lengths(scale(x, 1.3)), 1.3 * lengths(x), rtol=1e-10)


def test_temporal_transforms() -> None:
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(40, NUM_POINTS, 2)), axis=0)
    t = warp_times(40, rng, 0.2)
    w = resample(x, t)
    assert 30 <= w.shape[0] <= 52 and np.allclose(w[0], x[0]) and np.allclose(w[-1], x[-1])
    mid = (x[7] + x[8]) / 2
    np.testing.assert_allclose(resample(x, np.array([7.5]))[0], mid)
    m = rng.random((40, NUM_POINTS)) > 0.3
    wm = resample(m, np.array([7.5, 3.0]))
    assert wm.dtype == bool and (wm[0] == (m[7] & m[8])).all() and (wm[1] == m[3]).all()
    keep = frame_keep(40, rng, 0.5)
    assert keep[0] and 1 <= keep.sum() < 40


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    v = GlossVocabulary.build([["A", "B", "A"], ["C", "A"]])
    assert v.itos[:3] == ["<blank>", "<unk>", "A"] and len(v) == 5
    assert v.decode(v.encode(["A", "C", "ZZZ"])) == ["A", "C", "<unk>"]
    v.save(tmp_path / "v.json")
    assert GlossVocabulary.load(tmp_path / "v.json").itos == v.itos
