import itertools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from polyhead.face.data import degrade as D
from polyhead.face.data.render import render


@pytest.fixture(scope="module")
def face():
    img, _ = render(0, [0], 64)
    return img[0].permute(1, 2, 0).numpy().copy()


@pytest.mark.parametrize(
    "sx,sy,theta", [(0.1, 0.1, 0.0), (1.0, 1.0, 0.0), (10.0, 10.0, 0.0), (4.0, 1.0, 0.7)]
)
def test_gaussian_kernel_moments(sx, sy, theta):
    k = D.gaussian_kernel(sx, sy, theta)
    assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-5
    half = k.shape[0] // 2
    ax = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(ax, ax)
    cov = np.array([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    ref = rot @ np.diag([sx**2, sy**2]) @ rot.T
    if sx >= 1:  # below ~1 px the discrete kernel is not a sampled Gaussian any more
        assert np.allclose(cov, ref, rtol=0.05, atol=0.02)
    else:
        assert k[half, half] > 0.99


def test_blur_strength_grows_with_sigma(face):
    def hf(x):
        return np.abs(np.diff(x, axis=0)).mean()

    vals = [hf(D.blur(face, D.gaussian_kernel(s, s, 0))) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in itertools.pairwise(vals))


def test_downsample_range(face):
    errs = []
    for r in (0.8, 2.0, 4.0, 8.0):
        small = D.resize(face, (round(64 / r), round(64 / r)))
        assert small.shape[:2] == (round(64 / r), round(64 / r))
        errs.append(np.abs(D.resize(small, (64, 64)) - face).mean())
    assert all(a < b for a, b in itertools.pairwise(errs)) and errs[-1] > 3 * errs[1]


@pytest.mark.parametrize("sigma", [0.0, 5.0, 20.0])
def test_noise_std(sigma):
    img = np.full((64, 64, 3), 0.5, np.float32)
    out = D.add_noise(img, sigma, np.random.default_rng(0))
    assert abs((out - img).std() * 255 - sigma) < 0.05 * sigma + 1e-6


def test_jpeg_quality_order(face):
    errs = [np.abs(D.jpeg(face, q) - face).mean() for q in (60, 80, 100)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01


def test_shift_moves_content(face):
    out = D.shift(face, 5, -3)
    assert np.allclose(out[10:40, 15:45], face[13:43, 10:40], atol=1e-5)


def test_haze_and_gray(face):
    h = D.haze(face, 0.5, 1.0)
    assert np.allclose(h, face * 0.5 + 0.5)
    g = D.grayscale(face)
    assert np.allclose(g[..., 0], g[..., 1]) and np.allclose(
        g[..., 0], face @ [0.299, 0.587, 0.114], atol=1e-5
    )


def test_ramp_mask_is_a_smooth_split():
    m = D.ramp_mask(32, 32, 0.0, 0.0, 0.1)
    assert m[:, 0].max() < 0.01 and m[:, -1].min() > 0.99


def test_sampled_parameters_stay_in_range_and_probabilities_hold(face):
    t = D.ExtendedDegradation(seed=0)
    ps = [t.sample(np.random.default_rng(i), 512) for i in range(400)]
    for key, (lo, hi) in {
        "blur_sigma_x": (0.1, 10),
        "downsample": (0.8, 8),
        "noise": (0, 20),
        "jpeg": (60, 100),
    }.items():
        v = np.array([p[key] for p in ps])
        assert v.min() >= lo and v.max() <= hi and v.max() - v.min() > 0.8 * (hi - lo)
    aniso = np.array([p["blur_aniso"] for p in ps])
    assert 0.4 < aniso.mean() < 0.6
    iso = [p for p in ps if not p["blur_aniso"]]
    assert all(p["blur_sigma_x"] == p["blur_sigma_y"] for p in iso)
    full = [t(face, i)[1] for i in range(300)]
    assert 0.13 < np.mean([p["shift"] for p in full]) < 0.27
    assert 0.05 < np.mean([p["uneven"] for p in full]) < 0.16
    shifts = np.array([abs(p["shift_x"]) for p in full if p["shift"]])
    assert shifts.max() <= 32 * 64 / 512 + 1e-9


def test_rare_components_fire_with_their_probability(face):
    cfg = D.DegradationConfig(haze_prob=1.0, gray_prob=1.0)
    lq, p = D.ExtendedDegradation(seed=0, config=cfg)(face, 0)
    assert p["haze"] == 1 and p["gray"] == 1 and np.allclose(lq[..., 0], lq[..., 2])
    off = D.DegradationConfig(haze_prob=0.0, gray_prob=0.0, shift_prob=0.0, uneven_prob=0.0)
    ps = [D.ExtendedDegradation(seed=0, config=off)(face, i)[1] for i in range(20)]
    assert not any(p["haze"] or p["gray"] or p["shift"] or p["uneven"] for p in ps)


def test_resolution_scaling_of_spatial_parameters(face):
    t = D.ExtendedDegradation(seed=0)
    assert t.sample(np.random.default_rng(0), 64)["blur_scale"] == pytest.approx(0.125)
    raw = D.ExtendedDegradation(seed=0, config=D.DegradationConfig(reference_resolution=None))
    assert raw.sample(np.random.default_rng(0), 64)["blur_scale"] == 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="shift_prob"):
        D.DegradationConfig(shift_prob=1.5)
    with pytest.raises(ValueError, match="downsample"):
        D.DegradationConfig(downsample=(4.0, 2.0))


class _Faces(Dataset):
    def __init__(self, img):
        self.img, self.t = img, D.ExtendedDegradation(seed=7)

    def __len__(self):
        return 6

    def __getitem__(self, i):
        lq, p = self.t(self.img, i, epoch=1)
        return torch.from_numpy(lq), torch.tensor(p["noise"])


def test_same_seed_same_image_in_any_worker(face):
    ds = _Faces(face)
    ref = [ds[i] for i in range(6)]
    for workers in (0, 2):
        got = list(DataLoader(ds, batch_size=None, num_workers=workers))
        for (a, pa), (b, pb) in zip(ref, got, strict=True):
            assert torch.equal(a, b) and pa == pb
    other, _ = D.ExtendedDegradation(seed=8)(face, 0, epoch=1)
    assert not np.array_equal(other, ref[0][0].numpy())
