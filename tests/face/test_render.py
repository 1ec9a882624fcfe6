import numpy as np
import torch

from polyhead.face.data.render import FFHQ_TEMPLATE, render, sample_params


def test_face_depends_only_on_seed_and_index():
    a, lm_a = render(3, [5, 6, 7], 32)
    b, lm_b = render(3, [7], 32)
    assert torch.equal(a[2], b[0]) and torch.equal(lm_a[2], lm_b[0])
    c, _ = render(4, [7], 32)
    assert (c[0] - b[0]).abs().mean() > 0.02  # another seed, another face


def test_landmarks_follow_the_ffhq_template():
    _, lm = render(0, range(64), 64)
    mean = lm.mean(0).numpy() / 64
    assert np.abs(mean - FFHQ_TEMPLATE).max() < 0.02
    assert lm.std(0).max() > 0.3  # jittered per face, not a constant


def test_faces_vary_and_features_are_drawn():
    img, lm = render(1, range(32), 64)
    assert img.shape == (32, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
    assert img.std(0).mean() > 0.1  # faces differ
    # The eyes are darker/brighter detail than the cheek below them: a local contrast check.
    x, y = lm[:, 0, 0].round().long(), lm[:, 0, 1].round().long()
    eye = torch.stack([img[i, :, y[i] - 2 : y[i] + 3, x[i] - 3 : x[i] + 4].std() for i in range(32)])
    cheek = torch.stack([img[i, :, y[i] + 8 : y[i] + 13, x[i] - 3 : x[i] + 4].std() for i in range(32)])
    assert (eye > cheek).float().mean() > 0.8


def test_params_cover_the_declared_attributes():
    p = sample_params(0, range(200))
    assert set(p["hair_style"].unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert 0.15 < p["glasses"].mean() < 0.45
    tone = p["skin"].mean(1)
    assert tone.max() - tone.min() > 0.4  # light to dark skin
