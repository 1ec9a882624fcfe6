"""Generated continuous signing: split properties, layout, dropouts, release-format round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyhead.cslr.data.isharah import load_split, write_release
from polyhead.cslr.data.layout import LEFT_HAND, NUM_POINTS, RIGHT_HAND
from polyhead.cslr.data.synthetic import generate_corpus, hand_shape


def _signer(sample_id: str) -> str:
    return sample_id.rsplit("_s", 1)[1]


def test_splits_match_the_two_tasks(tmp_path: Path) -> None:
    corpus = generate_corpus(num_sentences=40, samples_per_sentence=3, num_signers=9, seed=1)
    si = corpus["signer_independent"]
    train_signers = {_signer(s.id) for s in si["train"]}
    assert train_signers.isdisjoint({_signer(s.id) for s in si["test"]})
    assert train_signers.isdisjoint({_signer(s.id) for s in si["dev"]})
    assert si["test"] and si["dev"]
    us = corpus["unseen_sentences"]
    train_sentences = {s.glosses for s in us["train"]}
    assert us["test"] and train_sentences.isdisjoint({s.glosses for s in us["test"]})
    assert {g for s in us["test"] for g in s.glosses} <= {g for s in us["train"] for g in s.glosses} | {
        g for s in us["dev"] for g in s.glosses
    }
    sample = si["train"][0]
    assert sample.keypoints.shape[1:] == (NUM_POINTS, 3) and sample.keypoints.dtype == np.float32
    all_kp = np.concatenate([s.keypoints for s in si["train"]])
    missing = np.isnan(all_kp[..., 0])
    assert missing[:, RIGHT_HAND].any() or missing[:, LEFT_HAND].any()  # detector dropouts happen
    assert not missing[:, 61:].any()  # the body is always detected
    assert (all_kp[..., 2][missing] == 0).all()  # confidence 0 where undetected
    write_release(si["train"][:5], tmp_path / "kp.pkl", tmp_path / "train.txt")
    back = load_split(tmp_path / "kp.pkl", tmp_path / "train.txt")
    assert [s.glosses for s in back] == [s.glosses for s in si["train"][:5]]


def test_hand_shape_bone_lengths_do_not_depend_on_flexion() -> None:
    open_hand, fist = hand_shape(np.zeros(5)), hand_shape(np.ones(5))
    assert open_hand.shape == (21, 2)
    finger = [(1 + 4 * f + s, 2 + 4 * f + s) for f in range(5) for s in range(3)]
    la = [np.linalg.norm(open_hand[a] - open_hand[b]) for a, b in finger]
    lb = [np.linalg.norm(fist[a] - fist[b]) for a, b in finger]
    np.testing.assert_allclose(la, lb)
    # Flexion curls the fingers: index fingertip closer to the wrist in a fist.
    assert np.linalg.norm(fist[8] - fist[0]) < np.linalg.norm(open_hand[8] - open_hand[0])


def test_held_out_handedness_is_covered_by_training_signers() -> None:
    from dataclasses import replace

    import numpy as np

    from polyhead.cslr.data.synthetic import assign_signer_splits, make_signers

    signers = [replace(s, left_handed=False) for s in make_signers(9, np.random.default_rng(0))]
    signers[8] = replace(signers[8], left_handed=True)  # the test signer is left-handed
    fixed, dev, test = assign_signer_splits(signers)
    assert test == {8} and dev == {7}
    assert any(s.left_handed for s in fixed if s.id not in test | dev)
    untouched, _, _ = assign_signer_splits([replace(s, left_handed=False) for s in signers])
    assert not any(s.left_handed for s in untouched)
