"""DuoAttention incremental decoding: step() equals full attention per head kind; streaming cache is constant."""

from __future__ import annotations

import pytest
import torch

from polyhead.attention import create_attention
from polyhead.attention.variants.duo import duo_gate_loss


def _deployed(sink: int = 2, recent: int = 4):
    torch.manual_seed(0)
    m = create_attention("duo", dim=16, num_heads=4, sink=sink, recent=recent, block_size=4).double()
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.9, 0.1, 0.7, 0.3]))
    m.deploy(0.5)
    return m


def test_step_matches_full_and_windowed_references() -> None:
    m = _deployed()
    x = torch.randn(2, 30, 16, dtype=torch.float64)
    full = m(x).output  # deployed forward: retrieval heads full causal, streaming heads sinks + window
    out, cache = m.prefill(x[:, :7])
    steps = [out]
    for t in range(7, 30):
        o, cache = m.step(x[:, t : t + 1], cache)
        steps.append(o)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-12, rtol=0)
    # Also from an empty cache, token by token.
    cache = m.empty_cache(2, dtype=torch.float64)
    outs = []
    for t in range(30):
        o, cache = m.step(x[:, t : t + 1], cache)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, 1), full, atol=1e-12, rtol=0)


def test_step_per_head_references() -> None:
    """Retrieval heads = full causal attention; streaming heads = the windowed reference."""
    m = _deployed()
    m.out_proj.weight.data = torch.eye(16, dtype=torch.float64)
    m.out_proj.bias.data.zero_()
    x = torch.randn(1, 20, 16, dtype=torch.float64)
    cache = m.empty_cache(1, dtype=torch.float64)
    outs = []
    for t in range(20):
        o, cache = m.step(x[:, t : t + 1], cache)
        outs.append(o)
    got = torch.cat(outs, 1).view(1, 20, 4, 4).transpose(1, 2)  # (1, H, L, Dh)
    q, k, v = m.qkv(x).view(1, 20, 3, 4, 4).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / 2.0
    i, j = torch.arange(20)[:, None], torch.arange(20)[None]
    causal = j <= i
    window = causal & ((j < 2) | (i - j < 4))
    for h, retrieval in enumerate([True, False, True, False]):
        allowed = causal if retrieval else window
        ref = torch.softmax(scores[0, h].masked_fill(~allowed, float("-inf")), -1) @ v[0, h]
        torch.testing.assert_close(got[0, h], ref, atol=1e-12, rtol=0)


def test_streaming_cache_size_is_constant() -> None:
    m = _deployed(sink=2, recent=4)
    cache = m.empty_cache(1, dtype=torch.float64)
    sizes = []
    for _ in range(64):
        _, cache = m.step(torch.randn(1, 1, 16, dtype=torch.float64), cache)
        sizes.append((cache.nbytes("streaming"), cache.nbytes("retrieval")))
    per_token = 2 * 2 * 4 * 8  # k+v, 2 streaming heads, head dim 4, float64
    assert sizes[-1][0] == sizes[10][0] == (2 + 4) * per_token  # sinks + window, whatever the length
    assert sizes[-1][1] == 64 * per_token > sizes[10][1]  # retrieval heads keep everything


def test_gate_training_mixes_and_loss() -> None:
    torch.manual_seed(0)
    m = create_attention("duo", dim=16, num_heads=4, sink=2, recent=4, block_size=4).double()
    x = torch.randn(2, 24, 16, dtype=torch.float64)
    with torch.no_grad():
        full = m(x).output  # alpha = 1: full attention everywhere
        m.alpha.fill_(0.0)
        stream = m(x).output
        m.alpha.fill_(0.25)
        mixed = m(x).output
    assert (full - stream).abs().max() > 1e-3
    # Output is linear in the gate before the (linear) output projection.
    torch.testing.assert_close(mixed, 0.25 * full + 0.75 * stream, atol=1e-12, rtol=0)
    loss = duo_gate_loss(m(x).output, full, m.alpha)
    loss.backward()
    assert m.alpha.grad is not None and m.alpha.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="deploy"):
        m.prefill(x)
