"""Multi-scale cross-attention: queries from one feature map, keys/values from features at several scales.

Combines two papers used by the face and low-light packages:
- RestoreFormer++ (Wang et al., TPAMI 2023, arXiv:2308.07228): multi-head cross-attention between
  degraded features (queries) and high-quality priors (keys/values, e.g. a VQ dictionary's features) at
  several feature scales, added residually.
- FeatEnHancer (Hashmi et al., ICCV 2023, arXiv:2308.03594): scale-aware attention that weights each
  scale by its usefulness for the task.

Call with ``context`` as a list/tuple of ``(B, S_i, dim)`` tensors, one per scale (a single tensor is one
scale; ``None`` attends to ``x`` itself). Each scale has its own key/value projection; the query
projection is shared. Per-scale outputs are fused with token-wise softmax weights over the scales
predicted from the query features, and the result is added to ``x`` (residual, as in RestoreFormer++).
``mask`` is the key-padding mask over the concatenated scales ``(B, sum S_i)``. The returned weights
``(B, heads, L, sum S_i)`` are each scale's attention times its fusion weight, so rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


@register_attention("multiscale_cross")
class MultiScaleCrossAttention(AttentionBase):
    """Cross-attention to several scales with learned scale fusion and a residual output.

    Args:
        dim: token width.
        num_heads: heads (RestoreFormer++: 4).
        num_scales: number of context scales accepted (RestoreFormer++: 2, at 16 and 32).
        backend: ``functional.attention`` backend.
    """

    _scales: list[Tensor] | None  # the scales of the forward call in progress (set by forward)

    def __init__(self, *, dim: int, num_heads: int, num_scales: int = 2, backend: str = "auto") -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.num_scales = num_scales
        self.backend = backend
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.ModuleList(nn.LayerNorm(dim) for _ in range(num_scales))
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(num_scales))
        self.scale_gate = nn.Linear(dim, num_scales)
        self.out_proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        context: Tensor | Sequence[Tensor] | None = None,
        *,
        mask: Tensor | None = None,
        shape: tuple[int, int] | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        if isinstance(context, (list, tuple)):
            if not 1 <= len(context) <= self.num_scales:
                raise ValueError(f"context must hold 1..{self.num_scales} scales, got {len(context)}")
            for i, c in enumerate(context):
                if (
                    not isinstance(c, Tensor)
                    or c.dim() != 3
                    or c.shape[0] != x.shape[0]
                    or c.shape[-1] != self.dim
                ):
                    got = tuple(c.shape) if isinstance(c, Tensor) else type(c).__name__
                    raise ValueError(
                        f"context[{i}] must have shape ({x.shape[0]}, S_{i}, {self.dim}), got {got}"
                    )
            self._scales = list(context)
            joined: Tensor | None = torch.cat(self._scales, dim=1)
        else:
            self._scales = None
            # not a list/tuple of scales: one tensor or None (the base class validates it)
            joined = cast("Tensor | None", context)
        try:
            return super().forward(x, joined, mask=mask, shape=shape, need_weights=need_weights)
        finally:
            self._scales = None

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        scales = self._scales if self._scales is not None else [x if context is None else context]
        q = self.split_heads(self.q_proj(self.norm_q(x)))
        fuse = torch.softmax(self.scale_gate(x)[..., : len(scales)], dim=-1)  # (B, L, n_scales)
        out = torch.zeros_like(q)
        weights = []
        start = 0
        for i, feat in enumerate(scales):
            S = feat.shape[1]
            m = None if mask is None else mask[:, start : start + S]
            k, v = (
                self.kv_proj[i](self.norm_kv[i](feat))
                .view(B, S, 2, self.num_heads, self.head_dim)
                .permute(2, 0, 3, 1, 4)
            )
            res = attention(q, k, v, mask=m, backend=self.backend, need_weights=need_weights)
            o, w = res if isinstance(res, tuple) else (res, None)
            g = fuse[..., i][:, None, :, None]  # (B, 1, L, 1)
            out = out + g * o
            if w is not None:
                weights.append(g * w)
            start += S
        o = self.gate_heads(out).transpose(1, 2).reshape(B, L, self.dim)
        w_all = torch.cat(weights, dim=-1) if need_weights else None
        return AttentionOutput(x + self.out_proj(o), w_all)
