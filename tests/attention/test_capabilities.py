"""The capability flags every variant declares (read by the variant x domain matrix) match what it does.

``supports_cross``, ``cross_is_prefix``, ``supports_causal``, ``supports_bidirectional`` and ``needs_shape``
decide where
``polyhead matrix`` may swap a variant in; a wrong flag either hides a working cell or crashes one.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from variant_cases import DIM, HEADS, build, inputs

from polyhead.attention import create_attention, get_attention_class, list_attention

ALL = list_attention()


@pytest.mark.parametrize("name", ALL)
def test_supports_cross_matches_behaviour(name: str) -> None:
    cls = get_attention_class(name)
    # Cross-attention is not causal: the matrix builds variants with a causal option with causal=False there.
    m = build(name, causal=False) if cls.supports_causal and cls.supports_bidirectional else build(name)
    x, _ = inputs(name)
    ctx = torch.randn(x.shape[0], 5, DIM, dtype=x.dtype)  # S != L
    if cls.cross_is_prefix:
        # A key cache of the same sequence: a block-aligned prefix works, a second sequence of another
        # length does not (so the matrix keeps such variants out of encoder-decoder cross-attention).
        assert cls.supports_cross
        m = create_attention(name, dim=DIM, num_heads=HEADS, causal=False, block_size=4).double()
        prefix = torch.randn(x.shape[0], 8, DIM, dtype=x.dtype)
        assert m(x, torch.cat([prefix, x], 1)).output.shape == x.shape
        with pytest.raises(ValueError, match="S - L"):
            m(x, torch.randn(x.shape[0], x.shape[1] + 7, DIM, dtype=x.dtype))
        return
    if cls.supports_cross and not cls.needs_shape:
        out = m(x, ctx).output
        assert out.shape == x.shape and torch.isfinite(out).all()
        # The context is used: changing it changes the output.
        assert (m(x, ctx * 3 + 1).output - out).abs().max() > 1e-6
    else:
        assert not cls.supports_cross, f"{name}: a 2-D variant must not claim cross-attention"
        with pytest.raises(ValueError, match="cross"):
            m(x, ctx)


@pytest.mark.parametrize("name", ALL)
def test_supports_causal_means_a_causal_option(name: str) -> None:
    cls = get_attention_class(name)
    has_option = "causal" in inspect.signature(cls.__init__).parameters
    assert has_option == cls.supports_causal, f"{name}: supports_causal={cls.supports_causal}"
    if cls.supports_causal:
        m = build(name, causal=True)
        x, shape = inputs(name)
        assert m(x, shape=shape).output.shape == x.shape


@pytest.mark.parametrize("name", ALL)
def test_supports_bidirectional_means_later_keys_are_seen(name: str) -> None:
    cls = get_attention_class(name)
    if not cls.supports_bidirectional:
        assert cls.supports_causal, f"{name}: causal-only variant without a causal option"
        with pytest.raises(ValueError, match="causal"):
            build(name, causal=False)
        return
    m = build(name, causal=False) if cls.supports_causal else build(name)
    x, shape = inputs(name)
    t = x.shape[1] // 2
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :]) * 3
    a, b = m(x, shape=shape).output, m(x2, shape=shape).output
    assert (a[:, : t + 1] - b[:, : t + 1]).abs().max() > 1e-6, f"{name}: earlier tokens ignore later ones"


@pytest.mark.parametrize("name", [n for n in ALL if get_attention_class(n).needs_shape])
def test_needs_shape_refuses_a_plain_sequence(name: str) -> None:
    m = build(name)
    x, shape = inputs(name)
    assert shape is not None and m(x, shape=shape).output.shape == x.shape
    with pytest.raises(ValueError, match="shape"):
        m(x)
