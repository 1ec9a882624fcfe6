"""Partitioning 2-D token grids into attention groups, and the explicit patterns they implement.

Two partitions cover MaxViT and CrossFormer:
- **block** (MaxViT block attention, CrossFormer SDA): non-overlapping ``P x P`` windows of adjacent tokens.
- **grid** (MaxViT grid attention, CrossFormer LDA): a ``G x G`` grid of tokens spaced ``s = H_pad / G``
  apart; the tokens sharing ``(y mod s, x mod s)`` form one group.

Grids that are not multiples of the window are padded (bottom/right) and the padded keys are masked, as in
timm. Each partition also has an explicit ``(L, L)`` boolean pattern and a within-group relative
coordinate, computed from token coordinates alone; the ``math`` oracle uses those, the fast paths use the
partitions, and the tests check both give the same attended (query, key) sets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


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


def partition(t: Tensor, H: int, W: int, size: int, kind: str) -> Tensor:
    """``(B, H*W, C)`` -> ``(B, n_groups, size*size, C)`` (zero-padded to multiples of ``size``)."""
    B, L, C = t.shape
    Hp, Wp = padded_size(H, size), padded_size(W, size)
    g = F.pad(t.view(B, H, W, C), (0, 0, 0, Wp - W, 0, Hp - H))
    if kind == "block":
        g = g.view(B, Hp // size, size, Wp // size, size, C).permute(0, 1, 3, 2, 4, 5)
    else:  # grid: group = (y mod s, x mod s), in-group = (y // s, x // s)
        g = g.view(B, size, Hp // size, size, Wp // size, C).permute(0, 2, 4, 1, 3, 5)
    return g.reshape(B, -1, size * size, C)


def unpartition(g: Tensor, H: int, W: int, size: int, kind: str) -> Tensor:
    """Inverse of :func:`partition`: ``(B, n_groups, size*size, C)`` -> ``(B, H*W, C)``."""
    B, _, _, C = g.shape
    Hp, Wp = padded_size(H, size), padded_size(W, size)
    if kind == "block":
        t = g.view(B, Hp // size, Wp // size, size, size, C).permute(0, 1, 3, 2, 4, 5)
    else:
        t = g.view(B, Hp // size, Wp // size, size, size, C).permute(0, 3, 1, 4, 2, 5)
    return t.reshape(B, Hp, Wp, C)[:, :H, :W].reshape(B, H * W, C)


def partition_mask(
    mask: Tensor | None, B: int, H: int, W: int, size: int, kind: str, device: torch.device
) -> Tensor:
    """Key-validity ``(B, n_groups, size*size)``: False for padding and for masked tokens."""
    valid = torch.ones(B, H * W, 1, device=device) if mask is None else mask[..., None].to(torch.float32)
    return partition(valid, H, W, size, kind)[..., 0] > 0.5


def heads_to_groups(t: Tensor, H: int, W: int, size: int, kind: str) -> Tensor:
    """Per-head tokens ``(B, h, L, Dh)`` -> per-group ``(B * n_groups, h, size^2, Dh)``."""
    B, h, L, Dh = t.shape
    g = partition(t.transpose(1, 2).reshape(B, L, h * Dh), H, W, size, kind)
    return g.view(B * g.shape[1], size * size, h, Dh).transpose(1, 2)


class GroupedGridAttention:
    """Mixin computing self-attention restricted to block/grid groups of a 2-D token grid.

    A subclass (an :class:`~polyhead.attention.base.AttentionBase`) provides ``self.qkv``, ``self.out_proj``,
    ``self.backend``, ``self.head_kinds`` (a list of ``(kind, size, heads)`` covering all heads in order) and
    ``relative_bias(kind_index) -> (heads_of_that_kind, (2 size - 1)^2)``.

    - ``math`` backend / ``need_weights``: the oracle, dense ``(L, L)`` attention with the explicit pattern.
    - ``sdpa`` / ``flex``: attention inside each group only (memory grows with the group size, not L^2).
    """

    head_kinds: list[tuple[str, int, int]]

    def grouped_attention(self, x: Tensor, mask: Tensor | None, shape: tuple[int, int], need_weights: bool):
        from polyhead.attention.base import AttentionOutput
        from polyhead.attention.functional import attention

        B, L, _ = x.shape
        Hh, Ww = int(shape[0]), int(shape[1])
        q, k, v = self.split_heads(self.qkv(x), 3)  # (B, H, L, Dh)
        outs, weights = [], []
        h0 = 0
        for i, (kind, size, nh) in enumerate(self.head_kinds):
            sl = slice(h0, h0 + nh)
            table = self.relative_bias(i)  # (nh, (2 size - 1)^2)
            if need_weights or self.backend == "math":
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
            else:
                qg, kg, vg = (heads_to_groups(t[:, sl], Hh, Ww, size, kind) for t in (q, k, v))
                valid = partition_mask(mask, B, Hh, Ww, size, kind, x.device)  # (B, n, size^2)
                bias = table[:, window_relative_index(size, x.device)][None]  # (1, nh, size^2, size^2)
                keep = valid.flatten(0, 1)[:, None, None, :]
                o = attention(qg, kg, vg, bias=bias, mask=keep, backend=self.backend)
                n = valid.shape[1]
                o = o.transpose(1, 2).reshape(B, n, size * size, nh * self.head_dim)
                outs.append(unpartition(o, Hh, Ww, size, kind).view(B, L, nh, self.head_dim).transpose(1, 2))
            h0 += nh
        o = self.gate_heads(torch.cat(outs, dim=1)).transpose(1, 2).reshape(B, L, self.dim)
        w = torch.cat(weights, dim=1) if need_weights else None
        return AttentionOutput(self.out_proj(o), w)
