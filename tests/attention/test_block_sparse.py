"""block_sparse_attention: groups of query blocks sharing one gather of their key blocks' union.

Outputs and q/k/v gradients must equal float64 math attention with the explicit mask "the pair lies in a
block its query block lists, and mask_mod holds, and the key is kept", whatever the group size and however
many chunks run; a key block that only another query block of the group lists must stay invisible.
"""

from __future__ import annotations

import pytest
import torch
from test_window_memory import _assert_sdpa_matches_math, _perturbed

from polyhead.attention import layouts, windows
from polyhead.attention.functional import attention
from polyhead.attention.layouts import (
    block_sparse_attention,
    layout_from_block_mask,
    union_group_size,
)


def _explicit(block_mask: torch.Tensor, pattern: torch.Tensor, bq: int, bk: int) -> torch.Tensor:
    """``(H, L, S)``: listed block pairs (token level) and the token pattern."""
    H, L, S = pattern.shape
    listed = block_mask.repeat_interleave(bq, 1).repeat_interleave(bk, 2)[:, :L, :S]
    return listed & pattern


@pytest.mark.parametrize("group", [1, 2, 3, None])
@pytest.mark.parametrize(("L", "S", "bq", "bk"), [(23, 23, 4, 4), (10, 17, 3, 5)])
def test_matches_explicit_mask(group, L, S, bq, bk, monkeypatch) -> None:
    monkeypatch.setattr(windows, "SCORE_BUDGET", 64)  # several chunks
    g = torch.Generator().manual_seed(L * 100 + (group or 0))
    B, H, D = 2, 3, 5
    nq, nk = -(-L // bq), -(-S // bk)
    block_mask = torch.rand(H, nq, nk, generator=g) > 0.5
    block_mask[0, 1] = False  # a query block with no listed key block
    pattern = torch.rand(H, L, S, generator=g) > 0.3  # also True outside the listed blocks

    def mask_mod(b, h, q_idx, kv_idx):
        return pattern[h, q_idx.clamp(max=L - 1), kv_idx.clamp(max=S - 1)]

    keep = torch.rand(B, S, generator=g) > 0.2
    q, k, v = (torch.randn(B, H, n, D, generator=g, dtype=torch.float64) for n in (L, S, S))
    leaves = [t.requires_grad_(True) for t in (q, k, v)]
    layout = layout_from_block_mask(block_mask, bq, bk)
    out = block_sparse_attention(q, k, v, layout, mask_mod, key_padding=keep, group=group)
    mask = _explicit(block_mask, pattern, bq, bk)[None] & keep[:, None, None, :]
    ref = attention(q, k, v, mask=mask, backend="math")
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(out, leaves, grad)
    exp = torch.autograd.grad(ref, leaves, grad)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    assert out[:, 0, bq : 2 * bq].abs().max() == 0  # head 0, query block 1 sees nothing
    for a, b in zip(got, exp, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_group_size_follows_the_overlap() -> None:
    """Nearly equal lists (dense causal heads) form groups; a sliding window (its union grows a block per
    query block) keeps one query block per gather; the budget caps a group."""
    nq = 64
    i, j = torch.arange(nq)[:, None], torch.arange(nq)[None, :]
    dense = layout_from_block_mask((j <= i)[None], 64, 64)
    window = layout_from_block_mask(((i - j >= 0) & (i - j < 4))[None], 64, 64)
    big = 1 << 40
    assert union_group_size(dense, 1, big, 32) > 1
    assert union_group_size(window, 1, big, 32) == 1
    # a group of 2 holds 2 * 64 blocks of 64 x 64 scores at the end of the sequence
    assert union_group_size(dense, 1, 2 * 64 * 64 * 64 - 1, 32) == 1
    assert union_group_size(dense, 1, 2 * 64 * 64 * 64, 32) == 2


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("duo", {"sink": 2, "recent": 5, "block_size": 2}),
        ("s2", {"block_size": 3, "local_blocks": 2, "vert_stride": 3, "num_dense_heads": 1}),
    ],
)
@pytest.mark.parametrize("group", [2, 3])
def test_modules_through_union_groups_match_oracle(name, kw, group, monkeypatch) -> None:
    """DuoAttention's streaming heads and S2 with groups of query blocks, many chunks, every gradient."""
    monkeypatch.setattr(windows, "SCORE_BUDGET", 16)
    monkeypatch.setattr(layouts, "union_group_size", lambda *a, **k: group)
    torch.manual_seed(group)
    m = _perturbed(name, **kw)
    if name == "duo":
        with torch.no_grad():
            m.alpha.uniform_(0.2, 0.8)  # both branches matter
    x = torch.randn(2, 23, 16, dtype=torch.float64)
    mask = torch.rand(2, 23) > 0.3
    _assert_sdpa_matches_math(m, x, None, mask, None)
