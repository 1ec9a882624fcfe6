"""The pretrained-weight terms, exercised with random-weight stand-ins of the same architectures."""

import pytest
import torch
from torchvision.models import resnet18, vgg16

from polyhead.face.perceptual import LPIPS, IdentityDistance, VGGPerceptualLoss


@pytest.fixture(scope="module")
def vgg_state():
    torch.manual_seed(0)
    return vgg16(weights=None).state_dict()


def test_vgg_perceptual_from_a_state_dict(tmp_path, vgg_state):
    path = tmp_path / "vgg16.pth"
    torch.save(vgg_state, path)
    loss = VGGPerceptualLoss.from_file(path)
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    b = torch.rand(2, 3, 32, 32)
    assert loss(b, b).item() == pytest.approx(0.0, abs=1e-7)
    val = loss(a, b)
    val.backward()
    assert val > 0 and a.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_lpips_from_an_lpips_style_state_dict(tmp_path, vgg_state):
    # The lpips package's key layout: net.slice{1..5}.{index}.weight and lin{0..4}.model.1.weight.
    slices = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
    state = {}
    for s, (lo, hi) in enumerate(slices, start=1):
        for k, v in vgg_state.items():
            if k.startswith("features."):
                idx, rest = k[len("features.") :].split(".", 1)
                if lo <= int(idx) < hi:
                    state[f"net.slice{s}.{idx}.{rest}"] = v
    for i, c in enumerate((64, 128, 256, 512, 512)):
        state[f"lin{i}.model.1.weight"] = torch.rand(1, c, 1, 1)
    path = tmp_path / "lpips.pth"
    torch.save(state, path)
    m = LPIPS.from_file(path)
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    d = m(a, b)
    assert d.shape == (3,) and (d > 0).all()
    assert m(a, a).abs().max() < 1e-6
    # Closer images are closer: a slightly noisy copy vs an unrelated image.
    assert (m(a, (a + 0.02 * torch.randn_like(a)).clamp(0, 1)) < d).all()


def test_identity_distance_and_bad_files(tmp_path):
    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=64)
    path = tmp_path / "id.pth"
    torch.save(net.state_dict(), path)
    m = IdentityDistance.from_file(path, arch="resnet18")
    a, b = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert m(a, a).abs().max() < 1e-5 and (m(a, b) >= 0).all() and (m(a, b) <= 2).all()
    with pytest.raises(FileNotFoundError, match="identity weights"):
        IdentityDistance.from_file(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a plain tensor state dict"):
        VGGPerceptualLoss.from_file(tmp_path / "junk.pth")
    torch.save({"fc.weight": torch.zeros(4, 4)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="resnet50"):
        IdentityDistance.from_file(tmp_path / "wrong.pth")
