"""CSLR data layer: Isharah round trip and annotation errors, fill/normalise, augmentation invariants."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from polyhead.cslr.data.isharah import (
    AnnotationError,
    Sample,
    load_keypoints,
    load_split,
    read_annotations,
    write_release,
)
from polyhead.cslr.data.layout import BODY, LEFT_HAND, LIPS, NUM_POINTS, RIGHT_HAND, bones
from polyhead.cslr.data.transforms import (
    crop_or_pad,
    fill_missing,
    frame_drop,
    normalize_parts,
    rotate,
    scale,
    time_warp,
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


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("s9|G1 G2", r"line 3: unknown id 's9'"),
        ("s1|   ", r"line 3: empty gloss for id 's1'"),
        ("s1 G1 G2", r"line 3: expected 'id\|gloss' with one '\|'"),
        ("s1|G1|G2", r"line 3: expected 'id\|gloss'"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "dev.txt"
    f.write_text(f"id|gloss\ns0|G0\n{line}\n")
    with pytest.raises(AnnotationError, match=message) as exc:
        read_annotations(f, {"s0", "s1"})
    assert str(f) in str(exc.value)


def test_bad_keypoints_name_the_sample(tmp_path: Path) -> None:
    f = tmp_path / "kp.pkl"
    f.write_bytes(
        pickle.dumps({"ok": {"keypoints": np.zeros((3, 86, 2))}, "bad": {"keypoints": np.zeros((3, 80, 2))}})
    )
    with pytest.raises(ValueError, match=r"sample 'bad': keypoints must be \(T > 0, 86, >= 2\)"):
        load_keypoints(f)


def test_fill_missing_forward_then_backward() -> None:
    x = np.full((5, NUM_POINTS, 2), np.nan, dtype=np.float32)
    x[1, 0] = [1, 1]
    x[3, 0] = [3, 3]
    x[:, 5] = 7.0
    filled, observed = fill_missing(x)
    np.testing.assert_array_equal(filled[:, 0, 0], [1, 1, 1, 3, 3])  # backward fill at t=0, forward after
    assert (filled[:, 1] == 0).all() and not observed[:, 1].any()  # never seen: zeros, masked
    assert observed[:, 5].all() and observed[1, 0] and not observed[2, 0]


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
    w = time_warp(x, rng)
    assert 30 <= w.shape[0] <= 52 and np.allclose(w[0], x[0]) and np.allclose(w[-1], x[-1])
    d = frame_drop(x, rng, p=0.5)
    assert 1 <= d.shape[0] < 40 and np.array_equal(d[0], x[0])
    c, n = crop_or_pad(x, 16, rng)
    assert c.shape[0] == 16 and n == 16
    p, n = crop_or_pad(x[:5], 16)
    assert p.shape[0] == 16 and n == 5 and (p[5:] == 0).all()


def test_vocabulary_round_trip(tmp_path: Path) -> None:
    v = GlossVocabulary.build([["A", "B", "A"], ["C", "A"]])
    assert v.itos[:3] == ["<blank>", "<unk>", "A"] and len(v) == 5
    assert v.decode(v.encode(["A", "C", "ZZZ"])) == ["A", "C", "<unk>"]
    v.save(tmp_path / "v.json")
    assert GlossVocabulary.load(tmp_path / "v.json").itos == v.itos
