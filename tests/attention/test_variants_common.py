"""Every registered attention variant: builds, runs fwd+bwd, agrees across backends, masks, causality, gradcheck."""

from __future__ import annotations

import pytest
import torch
from variant_cases import DIM, HEADS, build, inputs, key_mask

from polyhead.attention import AttentionOutput, get_attention_class, list_attention

ALL = list_attention()


def test_all_fourteen_variants_registered() -> None:
    assert (
        sorted(
            [
                "mha",
                "rel_mha",
                "moh",
                "rcmha",
                "gaam",
                "multi_axis",
                "halo",
                "lsda",
                "s2",
                "dma",
                "duo",
                "single_head",
                "complex",
                "multiscale_cross",
            ]
        )
        == ALL
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name: str, dtype: torch.dtype) -> None:
    m = build(name, dtype)
    x, shape = inputs(name, dtype=dtype)
    x.requires_grad_(True)
    out = m(x, shape=shape)
    assert isinstance(out, AttentionOutput)
    assert out.output.shape == x.shape and out.output.dtype == dtype
    assert torch.isfinite(out.output).all()
    loss = out.output.square().mean() + (out.aux_loss if out.aux_loss is not None else 0)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ALL)
def test_backends_agree_with_math(name: str, masked: bool) -> None:
    cls = get_attention_class(name)
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        m = build(name, dtype)
        x, shape = inputs(name, dtype=dtype)
        mask = key_mask(x.shape[0], x.shape[1]) if masked else None
        m.backend = "math"
        ref = m(x, mask=mask, shape=shape, need_weights=True)
        scale = ref.output.abs().max().item()
        for backend in cls.backends:
            if backend == "math":
                continue
            m.backend = backend
            with torch.set_grad_enabled(backend != "flex"):  # FlexAttention has no CPU backward
                out = m(x, mask=mask, shape=shape).output
            torch.testing.assert_close(
                out, ref.output, atol=tol * max(scale, 1.0), rtol=0, msg=f"{name}/{backend}"
            )
        # Weights: rows sum to 1 over visible keys, 0 on masked keys.
        w = ref.weights
        assert (w is not None and w.shape[:2] == (x.shape[0], HEADS)) or name == "single_head"
        sums = w.sum(-1)
        live = sums > 0
        assert live.float().mean() > 0.5
        torch.testing.assert_close(sums[live], torch.ones_like(sums[live]), atol=tol * 10, rtol=0)
        if mask is not None and w.shape[-1] == x.shape[1]:
            assert w.masked_select(~mask[:, None, None, :].expand_as(w)).abs().max() == 0


@pytest.mark.parametrize("name", ALL)
def test_masked_keys_do_not_influence_outputs(name: str) -> None:
    cls = get_attention_class(name)
    m = build(name)
    x, shape = inputs(name)
    mask = key_mask(x.shape[0], x.shape[1])
    noise = torch.randn_like(x) * 5
    if cls.supports_cross:
        ctx = torch.randn_like(x)
        base = m(x, ctx, mask=mask).output
        moved = m(x, torch.where(mask[..., None], ctx, noise), mask=mask).output
        torch.testing.assert_close(moved, base, atol=1e-12, rtol=0)
    # Self-attention: masked tokens change, outputs at kept positions must not.
    base = m(x, mask=mask, shape=shape).output
    moved = m(torch.where(mask[..., None], x, noise), mask=mask, shape=shape).output
    keep = mask[..., None].expand_as(base)
    torch.testing.assert_close(moved[keep], base[keep], atol=1e-12, rtol=0)


CAUSAL = [n for n in ALL if get_attention_class(n).supports_causal]


@pytest.mark.parametrize("name", CAUSAL)
def test_causal_no_future_leak(name: str) -> None:
    m = build(name, causal=True) if name != "duo" else build(name)
    x, _ = inputs(name)
    t = x.shape[1] // 2
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 3
    for backend in get_attention_class(name).backends:
        m.backend = backend
        with torch.set_grad_enabled(backend != "flex"):
            a, b = m(x).output, m(x2).output
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], atol=1e-12, rtol=0, msg=f"{name}/{backend}")
        assert (a[:, t + 1 :] - b[:, t + 1 :]).abs().max() > 1e-6


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_tiny_float64(name: str) -> None:
    m = build(name)
    m.backend = "sdpa" if "sdpa" in get_attention_class(name).backends else "math"
    x, shape = inputs(name, batch=1)
    x = x[:, :8] if shape is None else x
    x.requires_grad_(True)
    mask = key_mask(1, x.shape[1])
    assert torch.autograd.gradcheck(lambda t: m(t, mask=mask, shape=shape).output, (x,), eps=1e-6, atol=1e-6)


def test_dim_and_heads_recorded() -> None:
    for name in ALL:
        m = build(name)
        assert m.dim == DIM and m.num_heads == HEADS and m.variant_name == name
