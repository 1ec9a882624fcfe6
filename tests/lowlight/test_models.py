"""FeatEnHancer, the Zero-DCE baseline and the detectors: shapes, the curve maths, gradients from the
detection loss into the enhancer, attention variants by config, user weights loaded safely."""

from __future__ import annotations

import pytest
import torch

from polyhead.lowlight.models import (
    DCENet,
    FeatEnHancer,
    LowLightDetector,
    ZeroDCE,
    apply_curves,
    build_backbone,
    build_enhancer,
)


def test_apply_curves_matches_the_le_formula():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 5, generator=g)
    a = torch.rand(2, 6, 5, 5, generator=g) * 2 - 1
    want = x.clone()
    for k in range(2):
        ak = a[:, 3 * k : 3 * k + 3]
        want = want + ak * (want - want**2)
    torch.testing.assert_close(apply_curves(x, a, 2), want)
    # LE keeps [0, 1] in [0, 1] for alpha in [-1, 1] and fixes 0 and 1
    ends = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    torch.testing.assert_close(apply_curves(ends, torch.ones(1, 3, 1, 2), 1), ends)


def test_dcenet_shapes_and_skips():
    net = DCENet(channels=8, iterations=4, depth=7)
    alphas, feats = net(torch.rand(2, 3, 16, 20))
    assert alphas.shape == (2, 12, 16, 20) and feats.shape == (2, 8, 16, 20)
    assert alphas.abs().max() <= 1
    assert len(net.down) == 4 and len(net.up) == 2  # 4 + 2 + head = the paper's 7 convolutions
    with pytest.raises(ValueError, match="odd"):
        DCENet(depth=6)


def test_featenhancer_starts_as_the_curve_enhanced_image_and_reports_scale_weights():
    torch.manual_seed(0)
    fe = FeatEnHancer(channels=8, iterations=4, dim=16, num_heads=4)
    x = torch.rand(2, 3, 64, 48) * 0.2
    out, d = fe(x, return_details=True)
    assert out.shape == x.shape
    torch.testing.assert_close(out, d["enhanced_full"])  # the residual projection starts at zero
    assert d["enhanced_quarter"].shape == (2, 3, 16, 12) and d["enhanced_eighth"].shape == (2, 3, 8, 6)
    w = d["scale_weights"]
    assert w.shape == (2, 4, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["mha", "moh", "halo"])
def test_featenhancer_attention_variants_by_config(name):
    fe = FeatEnHancer(channels=4, iterations=2, dim=16, num_heads=2, attention={"name": name})
    out, d = fe(torch.rand(1, 3, 64, 64), return_details=True)
    assert out.shape == (1, 3, 64, 64)
    w = d["scale_weights"]
    assert w.shape == (1, 2, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2), atol=1e-5, rtol=0)
    assert fe.mode == ("self" if name == "halo" else "cross")
    if name == "mha":  # each head distributes its own attention over the scales
        assert not torch.allclose(w[0, 0], w[0, 1], atol=1e-4)


def _targets(n):
    return [{"boxes": torch.tensor([[8.0, 8.0, 40.0, 36.0]]), "labels": torch.tensor([1])} for _ in range(n)]


@pytest.mark.parametrize(
    ("detector", "enhancer"),
    [
        ("fcos", "featenhancer"),
        ("retinanet", "zero_dce"),
        ("faster_rcnn", "featenhancer"),
        ("faster_rcnn", "none"),
    ],
)
def test_detection_loss_reaches_the_enhancer(detector, enhancer):
    torch.manual_seed(0)
    enh = build_enhancer(enhancer, channels=4, iterations=2, fusion_dim=16, fusion_heads=2)
    if isinstance(enh, FeatEnHancer):  # a non-zero residual so that the fusion gets gradients too
        torch.nn.init.normal_(enh.out.weight, std=0.01)
    m = LowLightDetector(enhancer=enh, detector=detector, num_classes=3, image_size=64, fpn_channels=32)
    m.train()
    losses = m(torch.rand(2, 3, 64, 64), _targets(2))
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    if enh is not None:
        grads = [p.grad for p in enh.parameters() if p.requires_grad]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    m.eval()
    with torch.no_grad():
        dets = m(torch.rand(2, 3, 64, 64))
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape[1] == 4
        if len(d["labels"]):
            assert int(d["labels"].min()) >= 0 and int(d["labels"].max()) < 3  # 0-based for every detector


def test_zero_dce_preserves_size():
    assert ZeroDCE(channels=4, iterations=2)(torch.rand(1, 3, 10, 14)).shape == (1, 3, 10, 14)


def test_backbone_weights_loaded_with_weights_only(tmp_path):
    torch.manual_seed(0)
    src = build_backbone("tiny")
    path = tmp_path / "body.pt"
    torch.save(src.body.state_dict(), path)
    dst = build_backbone("tiny", weights=str(path))
    for k, v in src.body.state_dict().items():
        torch.testing.assert_close(dst.body.state_dict()[k], v)

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match=r"(?i)weights only|weights_only|unsupported"):
        build_backbone("tiny", weights=str(tmp_path / "evil.pt"))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no tensor matches"):
        build_backbone("tiny", weights=str(tmp_path / "other.pt"))
