"""MaxViT multi-axis attention: block (local) and grid (dilated global) attention on 2-D token grids.

Tu et al., "MaxViT: Multi-Axis Vision Transformer" (ECCV 2022, arXiv:2204.01697). Block attention
attends inside non-overlapping ``P x P`` windows; grid attention inside a ``G x G`` grid of tokens spaced
``H/G`` apart, giving sparse global mixing. Both use a learned relative position bias table
(``(2P - 1)^2`` entries per head). P = G = 7 in the paper.

``mode="block"`` and ``mode="grid"`` are the two sub-layers a MaxViT block stacks (block, then grid, each
with its own MLP). ``mode="both"`` (default) splits the heads between the two axes inside one layer so a
single module mixes locally and globally; this head split is polyhead's packaging, not the paper's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.registry import register_attention
from polyhead.attention.windows import GroupedGridAttention


@register_attention("multi_axis")
class MultiAxisAttention(GroupedGridAttention, AttentionBase):
    """MaxViT block / grid attention with relative position bias.

    Args:
        dim: token width.
        num_heads: heads.
        mode: ``block``, ``grid`` or ``both`` (first half of the heads block, second half grid).
        window_size: block window P.
        grid_size: grid G.
        backend: ``math`` (oracle), ``sdpa`` or ``flex`` (per-group attention), ``auto``.
    """

    backends = ("math", "sdpa", "flex")
    supports_cross = False
    needs_shape = True
    example_shape = (14, 14)

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mode: str = "both",
        window_size: int = 7,
        grid_size: int = 7,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if mode not in ("block", "grid", "both"):
            raise ValueError(f"mode must be 'block', 'grid' or 'both', got {mode!r}")
        if mode == "both" and num_heads < 2:
            raise ValueError("mode='both' needs at least 2 heads (half block, half grid)")
        if window_size < 1 or grid_size < 1:
            raise ValueError(f"window_size and grid_size must be >= 1, got {window_size}, {grid_size}")
        self.mode, self.backend = mode, backend
        if mode == "block":
            self.head_kinds = [("block", window_size, num_heads)]
        elif mode == "grid":
            self.head_kinds = [("grid", grid_size, num_heads)]
        else:
            hb = num_heads // 2
            self.head_kinds = [("block", window_size, hb), ("grid", grid_size, num_heads - hb)]
        self.tables = nn.ParameterList(
            nn.Parameter(torch.randn(nh, (2 * size - 1) ** 2) * 0.02) for _, size, nh in self.head_kinds
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def relative_bias(self, i: int) -> Tensor:
        return self.tables[i]

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        return self.grouped_attention(x, mask, shape, need_weights)
