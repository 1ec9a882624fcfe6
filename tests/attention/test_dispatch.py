"""``auto`` dispatch on CPU: half precision with few keys goes to the plain product, and stays correct."""

from __future__ import annotations

import pytest
import torch

from polyhead.attention import functional
from polyhead.attention.functional import CPU_HALF_MATH_MAX_KEYS, attention, math_attention, select_backend


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("S", [39, CPU_HALF_MATH_MAX_KEYS, CPU_HALF_MATH_MAX_KEYS + 1])
def test_cpu_auto_backend_by_dtype_and_key_length(dtype: torch.dtype, S: int) -> None:
    q = torch.randn(2, 2, 5, 8).to(dtype)
    got = select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False, kv_len=S)
    half = dtype in (torch.bfloat16, torch.float16)
    assert got == ("math" if half and S <= CPU_HALF_MATH_MAX_KEYS else "sdpa")
    # without the key length (older callers) the choice is the float32 one
    assert select_backend(q, bias=None, mask=None, block_mask=None, need_weights=False) == "sdpa"


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
    real = functional.math_attention
    monkeypatch.setattr(functional, "math_attention", lambda *a, **kw: used.append(1) or real(*a, **kw))
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    assert used and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, atol=3e-2, rtol=3e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: float32 inputs, bf16 products
        out_ac = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask=mask)
    torch.testing.assert_close(out_ac.double(), ref, atol=3e-2, rtol=3e-2)
