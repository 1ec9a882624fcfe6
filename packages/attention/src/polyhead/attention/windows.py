"""Partitioning 2-D token grids into attention groups, and the explicit patterns they implement.

Two partitions cover MaxViT and CrossFormer:
- **block** (MaxViT block attention, CrossFormer SDA): non-overlapping ``P x P`` windows of adjacent tokens.
- **grid** (MaxViT grid attention, CrossFormer LDA): a ``G x G`` grid of tokens spaced ``s = H_pad / G``
  apart; the tokens sharing ``(y mod s, x mod s)`` form one group.

Grids that are not multiples of the window are padded (bottom/right) and the padded keys are masked, as in
timm. Each partition also has an explicit ``(L, L)`` boolean pattern and a within-group relative
coordinate, computed from token coordinates alone; the ``math`` oracle uses those, the fast paths use the
partitions, and the tests check both give the same attended (query, key) sets.

The fast paths never hold more than one chunk of groups' scores: :func:`grouped_window_attention` views
the (padded) projections as groups without copying them, attends a few group rows at a time and
recomputes each chunk in backward (:func:`polyhead.attention.layouts.recompute_in_backward`), so training
memory is ``O(L * dim)`` plus one chunk of ``SCORE_BUDGET`` scores, whatever the grid size.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from polyhead.attention.base import AttentionOutput

# Score elements (queries x keys x heads) one chunk of windows may hold at a time on the fast paths.
SCORE_BUDGET = 1 << 20


def chunk_ranges(n: int, per_item: int, budget: int | None = None) -> list[tuple[int, int]]:
    """Split ``range(n)`` into consecutive chunks of about ``budget / per_item`` items (``SCORE_BUDGET``)."""
    step = max(1, (SCORE_BUDGET if budget is None else budget) // max(1, per_item))
    return [(s, min(n, s + step)) for s in range(0, n, step)]


def row_chunks(t: Tensor, dim: int, step: int, n: int, overlap: int = 0) -> tuple[Tensor, ...]:
    """The ``n`` views ``t.narrow(dim, i * step, step + overlap)``; ``t.shape[dim]`` must be ``n * step + overlap``.

    Taken with one ``unfold``/``unbind`` (or ``split``), so backward gathers the chunks' gradients with one
    op; slicing chunk by chunk would allocate and add a zero gradient of the full tensor per chunk.
    """
    if t.shape[dim] != n * step + overlap:
        raise ValueError(f"row_chunks: size {t.shape[dim]} along dim {dim} is not {n} * {step} + {overlap}")
    if overlap == 0:
        return t.split(step, dim)
    return t.unfold(dim, step + overlap, step).movedim(-1, dim + 1).unbind(dim)


def padded_size(n: int, multiple: int) -> int:
    return math.ceil(n / multiple) * multiple


def group_coords(H: int, W: int, size: int, kind: str, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per token (row-major over ``H x W``): group id ``(L,)`` and in-group (row, col) ``(L, 2)``."""
    y, x = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    y, x = y.flatten(), x.flatten()
    Hp, Wp = padded_size(H, size), padded_size(W, size)
    if kind == "block":
        gid = (y // size) * (Wp // size) + x // size
        local = torch.stack([y % size, x % size], -1)
    elif kind == "grid":
        sy, sx = Hp // size, Wp // size  # spacing between grid members
        gid = (y % sy) * sx + x % sx
        local = torch.stack([y // sy, x // sx], -1)
    else:
        raise ValueError(f"partition kind must be 'block' or 'grid', got {kind!r}")
    return gid, local


def explicit_pattern(H: int, W: int, size: int, kind: str, device: torch.device | None = None) -> Tensor:
    """``(L, L)`` bool: query i may attend key j (same block/grid group)."""
    gid, _ = group_coords(H, W, size, kind, device or torch.device("cpu"))
    return gid[:, None] == gid[None, :]


def relative_index(H: int, W: int, size: int, kind: str, device: torch.device | None = None) -> Tensor:
    """``(L, L)`` index into a ``(2 size - 1)^2`` relative-position table (valid inside a group)."""
    _, local = group_coords(H, W, size, kind, device or torch.device("cpu"))
    d = local[:, None, :] - local[None, :, :] + (size - 1)  # (L, L, 2) in [0, 2 size - 2]
    return d[..., 0] * (2 * size - 1) + d[..., 1]


def window_relative_index(size: int, device: torch.device | None = None) -> Tensor:
    """``(size^2, size^2)`` relative-position index inside one ``size x size`` group."""
    ys, xs = torch.meshgrid(
        torch.arange(size, device=device), torch.arange(size, device=device), indexing="ij"
    )
    c = torch.stack([ys.flatten(), xs.flatten()], -1)
    d = c[:, None, :] - c[None, :, :] + (size - 1)
    return d[..., 0] * (2 * size - 1) + d[..., 1]


def _group_view(g: Tensor, size: int, kind: str) -> Tensor:
    """Padded grid ``(B, Hp, Wp, *rest)`` as a view whose dim 1 (block) or 2 (grid) indexes group rows.

    block: ``(B, Hp/P, P, Wp/P, P, *rest)`` (group row, in-row, group col, in-col);
    grid: ``(B, P, s_y, P, s_x, *rest)`` (in-row, group row, in-col, group col) with ``s = H_pad / P``.
    """
    B, Hp, Wp = g.shape[:3]
    if kind == "block":
        return g.unflatten(2, (Wp // size, size)).unflatten(1, (Hp // size, size))
    return g.unflatten(2, (size, Wp // size)).unflatten(1, (size, Hp // size))


def _groups_first(t: Tensor, kind: str) -> Tensor:
    """``_group_view`` chunk -> ``(B, rows, cols, P, P, *rest)`` (group index first, in-group row-major)."""
    order = (0, 1, 3, 2, 4) if kind == "block" else (0, 2, 4, 1, 3)
    return t.permute(*order, *range(5, t.dim()))


def _groups_back(t: Tensor, kind: str) -> Tensor:
    """Inverse of :func:`_groups_first`."""
    order = (0, 1, 3, 2, 4) if kind == "block" else (0, 3, 1, 4, 2)
    return t.permute(*order, *range(5, t.dim()))


def grouped_window_attention(
    qkv: Tensor,
    mask: Tensor | None,
    shape: tuple[int, int],
    size: int,
    kind: str,
    heads: slice,
    num_heads: int,
    table: Tensor,
    backend: str,
) -> Tensor:
    """Self-attention inside the block/grid groups of a 2-D grid, a few group rows at a time.

    Args:
        qkv: ``(B, H*W, 3 * num_heads * Dh)`` fused projections (q, k, v; heads within each).
        mask: ``(B, H*W)`` bool key padding (True = keep) or None; grid padding is masked as well.
        shape: the grid ``(H, W)``; size: P (block) or G (grid); kind: ``block`` or ``grid``.
        heads: the heads this partition serves; table: their relative bias ``(nh, (2P - 1)^2)``.

    Returns:
        ``(B, H*W, nh, Dh)``. Only the selected heads are copied (once, when the grid needs padding);
        each chunk's groups, scores and bias exist only while that chunk runs, in forward and in backward.
    """
    from polyhead.attention.functional import attention
    from polyhead.attention.layouts import recompute_in_backward

    B, L, C3 = qkv.shape
    H, W = int(shape[0]), int(shape[1])
    Dh = C3 // (3 * num_heads)
    nh = len(range(num_heads)[heads])
    Hp, Wp = padded_size(H, size), padded_size(W, size)
    g = qkv.view(B, H, W, 3, num_heads, Dh)[..., heads, :]  # (B, H, W, 3, nh, Dh), a view
    valid = torch.ones(B, H, W, dtype=torch.bool, device=qkv.device) if mask is None else mask.view(B, H, W)
    if (Hp, Wp) != (H, W):
        g = F.pad(g, (0, 0, 0, 0, 0, 0, 0, Wp - W, 0, Hp - H))
        valid = F.pad(valid, (0, Wp - W, 0, Hp - H), value=False)
    gv, vv = _group_view(g, size, kind), _group_view(valid, size, kind)
    row_dim = 1 if kind == "block" else 2
    n_rows, n_cols = gv.shape[row_dim], Wp // size
    rel = window_relative_index(size, qkv.device)  # (P^2, P^2)

    def chunk(gc: Tensor, vc: Tensor, table: Tensor) -> Tensor:
        t = _groups_first(gc, kind)  # (B, rows, cols, P, P, 3, nh, Dh)
        rows = t.shape[1]
        t = t.reshape(-1, size * size, 3, nh, Dh)
        q, k, v = (t[:, :, i].transpose(1, 2) for i in range(3))  # (N, nh, P^2, Dh)
        keep = _groups_first(vc, kind).reshape(-1, 1, 1, size * size)
        o = attention(q, k, v, bias=table[:, rel][None], mask=keep, backend=backend)  # (N, nh, P^2, Dh)
        assert isinstance(o, Tensor)  # without need_weights: the output alone
        o = o.transpose(1, 2).reshape(B, rows, n_cols, size, size, nh, Dh)
        return _groups_back(o, kind)

    sizes = [r1 - r0 for r0, r1 in chunk_ranges(n_rows, B * n_cols * nh * size**4)]
    outs = [
        recompute_in_backward(chunk, gc, vc, table)
        for gc, vc in zip(gv.split(sizes, row_dim), vv.split(sizes, row_dim), strict=True)
    ]
    o = torch.cat(outs, dim=row_dim).reshape(B, Hp, Wp, nh, Dh)
    if (Hp, Wp) != (H, W):
        o = o[:, :H, :W]
    return o.reshape(B, L, nh, Dh)


class _GridHost(Protocol):
    """What :class:`GroupedGridAttention` needs from the AttentionBase subclass it is mixed into."""

    @property
    def head_kinds(self) -> list[tuple[str, int, int]]: ...
    @property
    def qkv(self) -> nn.Module: ...
    @property
    def out_proj(self) -> nn.Module: ...
    @property
    def backend(self) -> str: ...
    @property
    def num_heads(self) -> int: ...
    @property
    def dim(self) -> int: ...
    def relative_bias(self, kind_index: int) -> Tensor: ...
    def split_heads(self, t: Tensor, parts: int) -> Tensor | tuple[Tensor, ...]: ...
    def gate_heads(self, o: Tensor) -> Tensor: ...


class GroupedGridAttention:
    """Mixin computing self-attention restricted to block/grid groups of a 2-D token grid.

    A subclass (an :class:`~polyhead.attention.base.AttentionBase`) provides ``self.qkv``, ``self.out_proj``,
    ``self.backend``, ``self.head_kinds`` (a list of ``(kind, size, heads)`` covering all heads in order) and
    ``relative_bias(kind_index) -> (heads_of_that_kind, (2 size - 1)^2)``.

    - ``math`` backend / ``need_weights``: the oracle, dense ``(L, L)`` attention with the explicit pattern.
    - ``sdpa`` / ``flex``: attention inside each group only, in chunks of group rows recomputed in backward
      (:func:`grouped_window_attention`; memory grows with the group size and ``L * dim``, not L^2).
    """

    head_kinds: list[tuple[str, int, int]]

    def grouped_attention(
        self: _GridHost, x: Tensor, mask: Tensor | None, shape: tuple[int, int], need_weights: bool
    ) -> AttentionOutput:
        from polyhead.attention.base import AttentionOutput
        from polyhead.attention.functional import attention

        B, L, _ = x.shape
        Hh, Ww = int(shape[0]), int(shape[1])
        qkv = self.qkv(x)
        if not (need_weights or self.backend == "math"):
            outs, h0 = [], 0
            for i, (kind, size, nh) in enumerate(self.head_kinds):
                heads = slice(h0, h0 + nh)
                table = self.relative_bias(i)  # (nh, (2 size - 1)^2)
                outs.append(
                    grouped_window_attention(
                        qkv, mask, (Hh, Ww), size, kind, heads, self.num_heads, table, self.backend
                    )
                )
                h0 += nh
            o = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)  # (B, L, H, Dh)
            o = self.gate_heads(o.transpose(1, 2)).transpose(1, 2).reshape(B, L, self.dim)
            return AttentionOutput(self.out_proj(o), None)
        q, k, v = self.split_heads(qkv, 3)  # (B, H, L, Dh)
        outs, weights = [], []
        h0 = 0
        for i, (kind, size, nh) in enumerate(self.head_kinds):
            sl = slice(h0, h0 + nh)
            table = self.relative_bias(i)  # (nh, (2 size - 1)^2)
            pattern = explicit_pattern(Hh, Ww, size, kind, x.device)  # (L, L)
            bias = table[:, relative_index(Hh, Ww, size, kind, x.device)]  # (nh, L, L)
            keep = pattern[None, None] if mask is None else pattern[None, None] & mask[:, None, None, :]
            o, w = attention(
                q[:, sl],
                k[:, sl],
                v[:, sl],
                bias=bias[None],
                mask=keep,
                backend="math",
                need_weights=True,
            )
            outs.append(o)
            weights.append(w)
            h0 += nh
        o = self.gate_heads(torch.cat(outs, dim=1)).transpose(1, 2).reshape(B, L, self.dim)
        return AttentionOutput(self.out_proj(o), torch.cat(weights, dim=1))
