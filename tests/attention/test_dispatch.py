"""``auto`` dispatch on CPU: few keys go to the fused kernel (where built) or, in half precision with a mask,
to the plain product; every choice stays correct."""

from __future__ import annotations

import pytest
import torch

from polyhead.attention import cpu, functional
from polyhead.attention.functional import (
    CPU_FUSED_MAX_KEYS,
    CPU_HALF_MATH_MAX_KEYS,
    attention,
    math_attention,
    select_backend,
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("S", [39, CPU_HALF_MATH_MAX_KEYS, CPU_HALF_MATH_MAX_KEYS + 1])
def test_cpu_auto_backend_by_dtype_and_key_length(dtype: torch.dtype, S: int) -> None:
    q = torch.randn(2, 2, 5, 8).to(dtype)
    got = select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=S)
    half = dtype in (torch.bfloat16, torch.float16)
    assert got == ("math" if half and S <= CPU_HALF_MATH_MAX_KEYS else "sdpa")
    # without the key length (older callers) the choice is the float32 one
    assert select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False) == "sdpa"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("S", [39, CPU_FUSED_MAX_KEYS, CPU_FUSED_MAX_KEYS + 1])
def test_cpu_auto_picks_the_fused_kernel_for_short_unmasked_inputs(dtype: torch.dtype, S: int) -> None:
    q = torch.randn(2, 2, 5, 8).to(dtype)
    kw = {"bias": None, "block_mask": None, "need_weights": False, "kv_len": S}
    fused = cpu.available() and dtype != torch.float16 and S <= CPU_FUSED_MAX_KEYS
    got = select_backend(q, mask=None, kv_heads=2, **kw)
    assert (got == "cpu") == fused
    # a mask, a causal flag, GQA or wanted weights keep the other backends
    assert select_backend(q, mask=torch.ones(2, S, dtype=torch.bool), kv_heads=2, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=2, causal=True, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=1, **kw) != "cpu"
    assert select_backend(q, mask=None, kv_heads=2, **{**kw, "need_weights": True}) == "math"


@pytest.mark.parametrize("masked", [False, True])
def test_half_precision_auto_matches_the_float64_reference(
    masked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    B, H, L, S, D = 3, 2, 7, 39, 8
    q, k, v = torch.randn(B, H, L, D), torch.randn(B, H, S, D), torch.randn(B, H, S, D)
    mask = torch.rand(B, S) < 0.7 if masked else None
    if mask is not None:
        mask[:, 0] = True
    ref, _ = math_attention(q.double(), k.double(), v.double(), mask=mask)
    used = []
    real_math, real_fused = functional.math_attention, cpu.short_attention
    monkeypatch.setattr(
        functional, "math_attention", lambda *a, **kw: used.append("math") or real_math(*a, **kw)
    )
    monkeypatch.setattr(cpu, "short_attention", lambda *a, **kw: used.append("cpu") or real_fused(*a, **kw))
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    assert used == ["cpu" if cpu.available() and not masked else "math"] and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: float32 inputs, bf16 products
        out_ac = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    torch.testing.assert_close(out_ac.double(), ref, atol=3e-2, rtol=3e-2)
