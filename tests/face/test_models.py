import pytest
import torch

from polyhead.face.losses import hinge_d_loss, hinge_g_loss, ssim_loss
from polyhead.face.models import PatchDiscriminator, RestoreFormerPP, UNetRestorer, VectorQuantizer

SMALL = {"resolution": 32, "channels": 8, "channel_mult": (1, 2, 2), "z_dim": 16, "num_codes": 32}


def test_quantizer_picks_the_nearest_code_and_passes_gradients():
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=16, dim=4)
    q.codebook.weight.data.normal_()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = q(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    ref = torch.cdist(flat, q.codebook.weight).argmin(1)
    assert torch.equal(out.indices.flatten(), ref)
    assert torch.allclose(out.z_q.detach(), q.codebook.weight[ref].view(2, 3, 3, 4).permute(0, 3, 1, 2))
    out.z_q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through
    used = len(ref.unique())
    assert out.usage.item() == pytest.approx(used / 16)
    p = torch.bincount(ref, minlength=16).float() / ref.numel()
    assert out.perplexity.item() == pytest.approx(
        torch.exp(-(p[p > 0] * p[p > 0].log()).sum()).item(), rel=1e-4
    )


def test_dead_codes_are_reinitialised_from_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(num_codes=8, dim=2, usage_decay=0.5)
    q.codebook.weight.data = torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(7)])
    z = torch.randn(4, 2, 4, 4) * 0.1
    for _ in range(10):
        q(z)  # only code 0 is ever used
    n = q.reinit_dead(z)
    assert n == 7
    flat = z.permute(0, 2, 3, 1).reshape(-1, 2)
    dist = torch.cdist(q.codebook.weight[1:], flat).min(1).values
    assert dist.max() < 0.05  # new codes sit on encoder outputs
    assert q.reinit_dead(z) == 0  # usage reset: not dead again right away


def test_restoreformer_stages_and_shapes():
    torch.manual_seed(0)
    m = RestoreFormerPP(**SMALL)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    rec, q, z = m.reconstruct(x)
    assert rec.shape == x.shape and q.indices.shape == (2, 8, 8)
    assert m.fusion_resolutions == (8, 16)
    stage1 = m.restore(x).image
    assert torch.allclose(stage1, rec)  # before stage 2 the restorer is the dictionary alone
    m.start_stage2()
    assert all(not p.requires_grad for p in m.vq.quantizer.parameters())
    for a, b in zip(m.lq_encoder.parameters(), m.vq.encoder.parameters(), strict=True):
        assert torch.equal(a, b)
    out = m.restore(x)
    # The merge starts as the identity on the prior stream: stage 2 begins at the dictionary's output.
    assert torch.allclose(out.image, rec, atol=1e-5)
    out.image.square().mean().backward()
    fusion_grads = [p.grad for p in m.fusions.parameters() if p.grad is not None]
    assert fusion_grads and any(g.abs().sum() > 0 for g in fusion_grads)
    assert m.vq.quantizer.codebook.weight.grad is None


@pytest.mark.parametrize("name", ["multiscale_cross", "mha", "moh"])
def test_attention_is_swappable(name):
    m = RestoreFormerPP(**SMALL, attention={"name": name})
    m.start_stage2()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_attention_without_cross_support_is_refused():
    with pytest.raises(ValueError, match="cross-attention"):
        RestoreFormerPP(**SMALL, attention={"name": "halo"})


def test_unet_and_discriminator_shapes():
    u = UNetRestorer(resolution=32, channels=8, channel_mult=(1, 2, 2), z_dim=16)
    assert u(torch.randn(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    assert PatchDiscriminator(channels=8, layers=3)(torch.randn(2, 3, 32, 32)).shape == (2, 1, 4, 4)
    with pytest.raises(ValueError, match="multiple"):
        UNetRestorer(resolution=30, channel_mult=(1, 2, 2))


def test_losses():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32)
    assert ssim_loss(a, a).abs() < 1e-5 and ssim_loss(a, torch.rand_like(a)) > 0.5
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert hinge_d_loss(real, fake) == pytest.approx(0.5 * (0.25 + 0.75))
    assert hinge_g_loss(fake) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="MS-SSIM"):
        ssim_loss(a, a, multiscale=True)


def test_attention_explanation_masses():
    from polyhead.face.explain import attention_explanation, code_mass, plot_explanation

    torch.manual_seed(0)
    m = RestoreFormerPP(**SMALL)
    m.start_stage2()
    lq = torch.rand(1, 3, 32, 32)
    expl = attention_explanation(m, lq)
    assert set(expl) == {"8", "16"}
    e = expl["16"]
    heads, L, S = e["weights"].shape
    assert (heads, L, S) == (4, 256, 256 + 64)
    assert torch.allclose(e["weights"].sum(-1), torch.ones(heads, L), atol=1e-4)  # rows are distributions
    mass, ids = code_mass(e["weights"], e["code_ids"])
    # Reference: a loop over the code keys.
    ref = torch.zeros(heads, len(ids))
    for j, c in enumerate(e["code_ids"].tolist()):
        ref[:, (ids == c).nonzero()[0, 0]] += e["weights"][:, :, 256 + j].mean(1)
    assert torch.allclose(mass, ref, atol=1e-5)
    import matplotlib.pyplot as plt

    plt.close(plot_explanation(lq[0], lq[0], e))
