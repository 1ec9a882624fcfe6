"""Single-head attention on a channel slice (SHViT's SHSA).

Yun & Ro, "SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design" (CVPR 2024,
arXiv:2401.16456). Only the first ``dim / partial_ratio`` channels (ratio 4.67 in the paper) go through
attention, with a single head and a small query/key width (16); the remaining channels pass through
untouched. Both parts are concatenated, activated (ReLU) and projected. SHViT works on 2-D maps with
1x1 convolutions; on tokens these are the linear layers used here (the pre-norm is a LayerNorm instead
of BatchNorm). ``num_heads`` > 1 splits the attended slice into that many heads (SHViT uses 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


@register_attention("single_head")
class SingleHeadAttention(AttentionBase):
    """SHViT single-head self-attention on a partial channel slice.

    Args:
        dim: token width.
        num_heads: heads on the attended slice (SHViT: 1).
        qk_dim: query/key width per head (paper: 16).
        partial_ratio: ``dim / attended channels`` (paper: 4.67).
        backend: ``functional.attention`` backend.
    """

    supports_cross = False

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int = 1,
        qk_dim: int = 16,
        partial_ratio: float = 4.67,
        backend: str = "auto",
    ) -> None:
        pdim = max(num_heads, round(dim / partial_ratio / num_heads) * num_heads)
        if pdim > dim:
            raise ValueError(
                f"dim ({dim}) is too small for {num_heads} heads on a {partial_ratio}x channel slice"
            )
        super().__init__(dim=dim, num_heads=num_heads, head_dim=pdim // num_heads)
        self.pdim, self.qk_dim = pdim, qk_dim
        self.backend = backend
        self.pre_norm = nn.LayerNorm(pdim)
        self.qkv = nn.Linear(pdim, num_heads * (2 * qk_dim) + pdim)
        self.proj = nn.Sequential(nn.ReLU(), nn.Linear(dim, dim))

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        x1, x2 = x.split([self.pdim, self.dim - self.pdim], dim=-1)
        H, Dq = self.num_heads, self.qk_dim
        qk, v = self.qkv(self.pre_norm(x1)).split([2 * H * Dq, self.pdim], dim=-1)
        q, k = qk.view(B, L, 2, H, Dq).permute(2, 0, 3, 1, 4)  # (B, H, L, qk_dim)
        v = v.view(B, L, H, self.head_dim).transpose(1, 2)  # (B, H, L, pdim / H)
        # Values are wider or narrower than queries/keys (SDPA and the math path allow that).
        res = attention(
            q, k, v, mask=mask, scale=1 / math.sqrt(Dq), backend=self.backend, need_weights=need_weights
        )
        o, w = res if isinstance(res, tuple) else (res, None)
        o = self.gate_heads(o).transpose(1, 2).reshape(B, L, self.pdim)
        return AttentionOutput(self.proj(torch.cat([o, x2], dim=-1)), w)
