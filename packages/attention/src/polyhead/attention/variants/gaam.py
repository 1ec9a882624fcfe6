"""Gaussian adaptive attention (GAAM) alongside dot-product attention.

Ioannides et al., "Gaussian Adaptive Attention is All You Need: Robust Contextual Representations
Across Multiple Modalities" (2024, arXiv:2401.11143). Each head owns a slice of the features and learns
a mean offset ``delta_h`` and a variance scale ``c_h``: along the sequence, features are normalised as
``y = (x - (mu + delta_h)) / sqrt(var + eps)`` and re-weighted by the Gaussian density
``exp(-y^2 / (2 c_h^2))``, so each head emphasises the feature values that are (un)typical for the
sequence. As in the paper's hybrid ("works alongside dot-product attention"), the Gaussian-modulated
tokens then go through standard multi-head dot-product attention; the returned weights are those of the
dot-product part. Sequence statistics skip padded tokens; no causal mode (the statistics see the whole
sequence).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


@register_attention("gaam")
class GaussianAdaptiveAttention(AttentionBase):
    """Per-head Gaussian feature modulation followed by multi-head attention.

    Args:
        dim: token width.
        num_heads: heads (each gets ``dim / num_heads`` features for its Gaussian).
        init_scale: initial variance scale ``c``.
        eps: variance floor.
        backend: ``functional.attention`` backend.
    """

    def __init__(
        self, *, dim: int, num_heads: int, init_scale: float = 2.0, eps: float = 1e-5, backend: str = "auto"
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        self.eps = eps
        self.backend = backend
        self.mean_offset = nn.Parameter(torch.zeros(num_heads))
        self.scale = nn.Parameter(torch.full((num_heads,), float(init_scale)))
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def gaussian_modulation(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """``x * exp(-y^2 / (2 c^2))`` per head, statistics over the (unpadded) sequence: ``(B, L, dim)``."""
        B, L, _ = x.shape
        xh = x.view(B, L, self.num_heads, self.head_dim)
        if mask is None:
            mu = xh.mean(dim=1, keepdim=True)
            var = xh.var(dim=1, keepdim=True, unbiased=False)
        else:
            m = mask[:, :, None, None].to(x.dtype)
            n = m.sum(dim=1, keepdim=True).clamp_min(1)
            mu = (xh * m).sum(dim=1, keepdim=True) / n
            var = (((xh - mu) * m) ** 2).sum(dim=1, keepdim=True) / n
        y = (xh - (mu + self.mean_offset[:, None])) / torch.sqrt(var + self.eps)
        density = torch.exp(-(y**2) / (2 * self.scale[:, None] ** 2))
        return (xh * density).view(B, L, self.dim)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        if context is None:
            src = x = self.gaussian_modulation(x, mask)
        else:
            x = self.gaussian_modulation(x, None)
            src = self.gaussian_modulation(context, mask)
        q = self.split_heads(self.q_proj(x))
        k, v = self.split_heads(self.kv_proj(src), 2)
        res = attention(q, k, v, mask=mask, backend=self.backend, need_weights=need_weights)
        o, w = res if isinstance(res, tuple) else (res, None)
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)
