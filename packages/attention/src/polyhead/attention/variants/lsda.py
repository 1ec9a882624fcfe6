"""CrossFormer long/short distance attention (LSDA) with dynamic position bias (DPB).

Wang et al., "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale Attention" (ICLR 2022,
arXiv:2108.00154). Short-distance attention (SDA) groups adjacent ``G x G`` tokens; long-distance
attention (LDA) groups tokens sampled with a fixed interval ``I`` (a ``G x G`` dilated grid with
``I = H / G``). CrossFormer alternates SDA and LDA blocks. The position bias is *dynamic*: a small MLP
maps each relative offset ``(dy, dx)`` in group coordinates to one bias per head, so it adapts to any
group size. G = 7 in the paper.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.registry import register_attention
from polyhead.attention.windows import GroupedGridAttention


class DynamicPositionBias(nn.Module):
    """CrossFormer DPB: MLP (2 -> d -> d -> d -> heads) over relative offsets, with LayerNorm + ReLU."""

    def __init__(self, heads: int, hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(2, hidden)]
        for _ in range(2):
            layers += [nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, hidden)]
        layers += [nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, heads)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, size: int) -> Tensor:
        """Bias table ``(heads, (2 size - 1)^2)`` for all offsets of a ``size x size`` group."""
        first = cast(nn.Linear, self.mlp[0])  # Sequential indexing is typed Module | Sequential
        r = torch.arange(1 - size, size, dtype=first.weight.dtype, device=first.weight.device)
        offsets = torch.stack(torch.meshgrid(r, r, indexing="ij"), -1).view(-1, 2)  # ((2s-1)^2, 2)
        return self.mlp(offsets).transpose(0, 1)


@register_attention("lsda")
class LongShortDistanceAttention(GroupedGridAttention, AttentionBase):
    """CrossFormer SDA (``distance="short"``) or LDA (``distance="long"``) with dynamic position bias.

    Args:
        dim: token width.
        num_heads: heads.
        distance: ``short`` (adjacent groups) or ``long`` (interval-sampled groups).
        group_size: G.
        backend: ``math`` (oracle), ``sdpa`` or ``flex`` (per-group attention), ``auto``.
    """

    backends = ("math", "sdpa", "flex")
    supports_cross = False
    needs_shape = True
    example_shape = (14, 14)

    def __init__(
        self, *, dim: int, num_heads: int, distance: str = "short", group_size: int = 7, backend: str = "auto"
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if distance not in ("short", "long"):
            raise ValueError(f"distance must be 'short' or 'long', got {distance!r}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.distance, self.backend = distance, backend
        self.head_kinds = [("block" if distance == "short" else "grid", group_size, num_heads)]
        self.dpb = DynamicPositionBias(num_heads, max(dim // 4, 8))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def relative_bias(self, i: int) -> Tensor:
        return self.dpb(self.head_kinds[i][1])

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        return self.grouped_attention(x, mask, shape, need_weights)
