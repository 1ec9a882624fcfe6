"""Attended (query, key) sets of the structured variants equal the papers' patterns (brute force)."""

from __future__ import annotations

import itertools

import pytest
import torch

from polyhead.attention import create_attention
from polyhead.attention.layouts import block_mask_from_mask_mod, layout_from_block_mask
from polyhead.attention.variants.duo import streaming_block_mask, streaming_mask_mod
from polyhead.attention.variants.halo import halo_mask_mod, halo_pattern
from polyhead.attention.variants.s2 import s2_block_mask


def _support(m: torch.nn.Module, L: int, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, L, L) bool: where the math path puts non-zero attention (one random sample, no padding)."""
    m = m.double()
    m.backend = "math"
    x = torch.randn(1, L, m.dim, dtype=torch.float64)
    return m(x, shape=shape, need_weights=True).weights[0] > 0


def _grid_tokens(H: int, W: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(H) for x in range(W)]


@pytest.mark.parametrize(("H", "W", "P"), [(6, 6, 3), (5, 7, 2)])
def test_maxvit_block_and_grid_patterns(H: int, W: int, P: int) -> None:
    toks = _grid_tokens(H, W)
    Hp, Wp = -(-H // P) * P, -(-W // P) * P
    sy, sx = Hp // P, Wp // P
    block = torch.tensor([[(a[0] // P, a[1] // P) == (b[0] // P, b[1] // P) for b in toks] for a in toks])
    grid = torch.tensor([[(a[0] % sy, a[1] % sx) == (b[0] % sy, b[1] % sx) for b in toks] for a in toks])
    for mode, ref in (("block", block), ("grid", grid)):
        m = create_attention("multi_axis", dim=8, num_heads=2, mode=mode, window_size=P, grid_size=P)
        sup = _support(m, H * W, (H, W))
        assert torch.equal(sup, ref.expand_as(sup)), mode
    both = _support(
        create_attention("multi_axis", dim=8, num_heads=2, window_size=P, grid_size=P), H * W, (H, W)
    )
    assert torch.equal(both[0], block) and torch.equal(both[1], grid)
    if H % P == 0 and W % P == 0:
        # Grid attention spans the whole image: every token reaches tokens in other blocks.
        assert (grid & ~block).any(dim=1).all()


def test_crossformer_sda_lda_patterns() -> None:
    H = W = 6
    G = 3
    toks = _grid_tokens(H, W)
    interval = H // G
    sda = torch.tensor([[(a[0] // G, a[1] // G) == (b[0] // G, b[1] // G) for b in toks] for a in toks])
    lda = torch.tensor(
        [
            [(a[0] % interval, a[1] % interval) == (b[0] % interval, b[1] % interval) for b in toks]
            for a in toks
        ]
    )
    for distance, ref in (("short", sda), ("long", lda)):
        sup = _support(
            create_attention("lsda", dim=8, num_heads=2, distance=distance, group_size=G), H * W, (H, W)
        )
        assert torch.equal(sup, ref.expand_as(sup)), distance


@pytest.mark.parametrize(("H", "W", "b", "h"), [(8, 8, 4, 1), (7, 5, 3, 2)])
def test_halo_pattern(H: int, W: int, b: int, h: int) -> None:
    toks = _grid_tokens(H, W)
    ref = torch.tensor(
        [
            [
                (q[0] // b) * b - h <= k[0] < (q[0] // b) * b + b + h
                and (q[1] // b) * b - h <= k[1] < (q[1] // b) * b + b + h
                for k in toks
            ]
            for q in toks
        ]
    )
    sup = _support(create_attention("halo", dim=8, num_heads=2, block_size=b, halo_size=h), H * W, (H, W))
    assert torch.equal(sup, ref.expand_as(sup))
    assert torch.equal(halo_pattern(H, W, b, h), ref)
    qi, ki = torch.arange(H * W)[:, None], torch.arange(H * W)[None]
    assert torch.equal(halo_mask_mod(H, W, b, h)(0, 0, qi, ki), ref)


@pytest.mark.parametrize("causal", [True, False])
def test_s2_pattern_matches_paper_rule(causal: bool) -> None:
    bs, local, stride, heads, L = 2, 2, 3, 4, 24
    m = create_attention(
        "s2", dim=16, num_heads=heads, block_size=bs, local_blocks=local, vert_stride=stride, causal=causal
    )
    sup = _support(m, L)
    ref = torch.zeros(heads, L, L, dtype=torch.bool)
    for h, i, j in itertools.product(range(heads), range(L), range(L)):
        qb, kb = i // bs, j // bs
        loc = 0 <= qb - kb < local if causal else abs(qb - kb) < local
        strided = (kb + h) % stride == 0
        ref[h, i, j] = (loc or strided) and (j <= i or not causal)
    assert torch.equal(sup, ref)
    # The union over heads covers the whole (causal) context.
    full = torch.ones(L, L, dtype=torch.bool).tril() if causal else torch.ones(L, L, dtype=torch.bool)
    assert torch.equal(ref.any(0), full)
    # The closed-form block rule equals the blocks the token pattern touches.
    exact = block_mask_from_mask_mod(m.mask_mod(L, L), heads, L, L, bs, bs)
    rule = s2_block_mask(heads, L // bs, L // bs, local_blocks=local, vert_stride=stride, causal=causal)
    assert torch.equal(exact, rule)


def test_streaming_pattern_and_blocks() -> None:
    sink, recent, L, bs = 3, 5, 26, 4
    ref = torch.tensor([[j <= i and (j < sink or i - j < recent) for j in range(L)] for i in range(L)])
    m = create_attention("duo", dim=16, num_heads=2, sink=sink, recent=recent, block_size=bs)
    with torch.no_grad():
        m.alpha.zero_()  # all heads streaming
    sup = _support(m, L)
    assert torch.equal(sup, ref.expand_as(sup))
    exact = block_mask_from_mask_mod(streaming_mask_mod(sink, recent), 1, L, L, bs, bs)
    assert torch.equal(streaming_block_mask(-(-L // bs), -(-L // bs), bs, sink, recent), exact)


def test_layout_from_block_mask_is_compact_and_sorted() -> None:
    bm = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0)) > 0.5
    lay = layout_from_block_mask(bm, 16, 16)
    assert lay.indices.shape == (3, 5, int(bm.sum(-1).max()))
    for h, i in itertools.product(range(3), range(5)):
        got = lay.indices[h, i][lay.valid[h, i]].tolist()
        assert got == torch.nonzero(bm[h, i]).flatten().tolist()


def test_dma_keeps_top_window_keys() -> None:
    torch.manual_seed(0)
    m = create_attention("dma", dim=16, num_heads=2, window=4, causal=True).double()
    with torch.no_grad():
        m.A.fill_(1.0)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    w = m(x, need_weights=True).weights[0]
    _, _, v = None, None, m.kv_proj(x).view(1, 12, 2, 2, 8).permute(2, 0, 3, 1, 4)[1]
    bias = m.dynamic_bias(v)[0]  # (H, S)
    for h, i in itertools.product(range(2), range(12)):
        visible = torch.arange(i + 1)
        top = visible[bias[h, : i + 1].argsort(descending=True)[:4]]
        assert set(torch.nonzero(w[h, i]).flatten().tolist()) == set(top.tolist())
