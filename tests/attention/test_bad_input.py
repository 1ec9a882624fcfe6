"""Bad inputs raise ValueError naming the argument and the expected shape."""

from __future__ import annotations

import pytest
import torch
from variant_cases import DIM, HEADS, build, inputs

from polyhead.attention import create_attention, get_attention_class, list_attention
from polyhead.attention.functional import attention

ALL = list_attention()


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs(name: str) -> None:
    cls = get_attention_class(name)
    m = build(name)
    x, shape = inputs(name)
    B, L, _ = x.shape
    with pytest.raises(ValueError, match=rf"x must have shape \(B, L, {DIM}\)"):
        m(torch.randn(B, L, DIM + 1, dtype=x.dtype), shape=shape)
    with pytest.raises(ValueError, match=r"x must have shape"):
        m(torch.randn(L, DIM, dtype=x.dtype), shape=shape)
    with pytest.raises(ValueError, match=rf"mask must have shape \({B}, {L}\)"):
        m(x, mask=torch.ones(B, L + 1, dtype=torch.bool), shape=shape)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        m(x, mask=torch.ones(B, L), shape=shape)
    if cls.needs_shape:
        with pytest.raises(ValueError, match=r"shape \(5, 5\) does not match L = 12"):
            m(x, shape=(5, 5))
        with pytest.raises(ValueError, match="shape=\\(H, W\\) is required"):
            m(x)
    else:
        with pytest.raises(ValueError, match="does not match L"):
            m(x, shape=(2, 2))
    if not cls.supports_cross:
        with pytest.raises(ValueError, match="context"):
            m(x, torch.randn_like(x), shape=shape)
    else:
        with pytest.raises(ValueError, match=rf"context must have shape \({B}, S, {DIM}\)"):
            m(x, torch.randn(B, 3, DIM + 2, dtype=x.dtype))


@pytest.mark.parametrize("name", [n for n in ALL if n != "single_head"])
def test_heads_must_divide_dim(name: str) -> None:
    with pytest.raises(ValueError, match=r"num_heads \(3\) must divide dim \(16\)"):
        create_attention(name, dim=16, num_heads=3)


def test_unknown_variant_and_bad_dims() -> None:
    with pytest.raises(ValueError, match="unknown attention variant 'nope'"):
        create_attention("nope", dim=16, num_heads=2)
    with pytest.raises(ValueError, match="dim must be a positive int"):
        create_attention("mha", dim=0, num_heads=2)
    with pytest.raises(ValueError, match="num_kv_heads"):
        create_attention("mha", dim=16, num_heads=4, num_kv_heads=3)


def test_functional_checks() -> None:
    q = torch.randn(2, HEADS, 5, 8)
    k = torch.randn(2, 2, 7, 8)
    with pytest.raises(ValueError, match="backend must be one of"):
        attention(q, k, k, backend="cuda")
    with pytest.raises(ValueError, match=r"key-padding mask must have shape \(2, 7\)"):
        attention(q, k, k, mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="need_weights=True needs backend 'math'"):
        attention(q, k, k, backend="sdpa", need_weights=True)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        attention(q, torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8))
    with pytest.raises(ValueError, match="'triton' needs CUDA"):
        attention(q, k, k, backend="triton")
    # GQA: every backend agrees with the math oracle.
    ref = attention(q.double(), k.double(), k.double(), backend="math")
    torch.testing.assert_close(attention(q.double(), k.double(), k.double(), backend="sdpa"), ref)
