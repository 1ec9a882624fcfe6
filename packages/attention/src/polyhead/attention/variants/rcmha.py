"""Relative convolutional multi-head attention (RCMHA).

Sugiharto et al., "RCMHA: Relative Convolutional Multi-Head Attention for Natural Language Modelling"
(2023, arXiv:2308.03429). The projected queries, keys and values each pass through a depthwise 1-D
convolution (kernel 3) along the sequence before Transformer-XL relative-position attention, so every
head sees a little local context in its Q/K/V. With ``causal=True`` the convolutions are left-padded so
no position reads the future.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionOutput
from polyhead.attention.registry import register_attention
from polyhead.attention.variants.rel_mha import RelPositionMultiHeadAttention


@register_attention("rcmha")
class RelativeConvolutionalMultiHeadAttention(RelPositionMultiHeadAttention):
    """Depthwise-convolved Q/K/V + Transformer-XL relative attention.

    Args:
        dim: token width.
        num_heads: heads.
        kernel_size: depthwise convolution width (paper: 3).
        causal: causal attention and left-padded convolutions.
        dropout: dropout on the output projection.
        backend: ``functional.attention`` backend.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        kernel_size: int = 3,
        causal: bool = False,
        dropout: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads, causal=causal, dropout=dropout, backend=backend)
        if kernel_size < 1 or (not causal and kernel_size % 2 == 0):
            raise ValueError(
                f"kernel_size must be a positive odd int (or any positive int if causal), got {kernel_size}"
            )
        self.kernel_size = kernel_size
        self.dwconv = nn.ModuleList(nn.Conv1d(dim, dim, kernel_size, groups=dim) for _ in range(3))

    def _conv(self, conv: nn.Module, t: Tensor, mask: Tensor | None) -> Tensor:
        # t: (B, H, L, Dh) -> channels-first (B, dim, L) for the depthwise convolution.
        B, H, L, Dh = t.shape
        c = t.transpose(1, 2).reshape(B, L, H * Dh).transpose(1, 2)
        if mask is not None:  # padded positions must not leak into neighbours through the kernel
            c = c * mask[:, None, :].to(c.dtype)
        k = self.kernel_size
        c = F.pad(c, (k - 1, 0) if self.causal else (k // 2, k // 2))
        c = conv(c)
        return c.transpose(1, 2).reshape(B, L, H, Dh).transpose(1, 2)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        q, k, v = self.project_qkv(x)
        q, k, v = (self._conv(conv, t, mask) for conv, t in zip(self.dwconv, (q, k, v)))
        return self.attend_qkv(q, k, v, mask, need_weights)
