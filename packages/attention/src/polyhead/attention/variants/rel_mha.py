"""Relative positional multi-head self-attention (Transformer-XL), as used in Conformer blocks.

Dai et al., "Transformer-XL: Attentive Language Models Beyond a Fixed-Length Context" (2019,
arXiv:1901.02860), section 3.3; Gulati et al., "Conformer" (2020, arXiv:2005.08100) uses it in every block.
Scores are ``(q + u) k^T + (q + v) R^T`` where ``R`` are projected sinusoidal encodings of the relative
distance ``i - j`` and ``u``, ``v`` are learned per-head biases; the ``R`` term is realigned from
relative to absolute key positions (the "rel-shift", done here with an index gather instead of the
pad-and-reshape trick, which is equivalent for self-attention).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


def sinusoidal_relative_positions(
    length: int, dim: int, *, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Sinusoidal encodings of relative distances ``L-1, L-2, ..., -(L-1)``: ``(2L - 1, dim)``."""
    pos = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float64)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(2 * length - 1, dim, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return pe.to(dtype)


def rel_shift_index(L: int, device: torch.device) -> Tensor:
    """``idx[i, j] = (L - 1) - (i - j)``: the row of distance ``i - j`` in the ``(2L - 1)`` table."""
    i = torch.arange(L, device=device)[:, None]
    j = torch.arange(L, device=device)[None, :]
    return (L - 1) - (i - j)


@register_attention("rel_mha")
class RelPositionMultiHeadAttention(AttentionBase):
    """Transformer-XL relative positional self-attention.

    Args:
        dim: token width.
        num_heads: heads.
        causal: mask future keys.
        dropout: dropout on the output projection.
        backend: ``functional.attention`` backend (the positional term is passed as an additive bias).
    """

    supports_cross = False
    supports_causal = True

    def __init__(
        self, *, dim: int, num_heads: int, causal: bool = False, dropout: float = 0.0, backend: str = "auto"
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        self.causal = causal
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim)
        self.pos_proj = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, L, _ = x.shape
        q, k, v = self.split_heads(self.qkv(x), 3)
        return q, k, v  # each (B, H, L, Dh)

    def position_bias(self, q: Tensor) -> Tensor:
        """The ``(q + v) R^T`` term realigned to absolute key positions, pre-scaled: ``(B, H, L, L)``."""
        B, H, L, Dh = q.shape
        pe = sinusoidal_relative_positions(L, self.dim, device=q.device, dtype=q.dtype)
        r = self.pos_proj(pe).view(2 * L - 1, H, Dh).transpose(0, 1)  # (H, 2L-1, Dh)
        bd = torch.matmul(q + self.pos_bias_v[None, :, None, :], r.transpose(-1, -2)[None])  # (B, H, L, 2L-1)
        idx = rel_shift_index(L, q.device).expand(B, H, L, L)
        return bd.gather(-1, idx) / math.sqrt(Dh)

    def attend_qkv(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, need_weights: bool
    ) -> AttentionOutput:
        B, H, L, Dh = q.shape
        bias = self.position_bias(q)
        q_u = q + self.pos_bias_u[None, :, None, :]
        res = attention(
            q_u,
            k,
            v,
            bias=bias,
            mask=mask,
            causal=self.causal,
            backend=self.backend,
            need_weights=need_weights,
        )
        o, w = res if isinstance(res, tuple) else (res, None)
        o = self.merge_heads(o)
        return AttentionOutput(self.dropout(self.out_proj(o)), w)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        q, k, v = self.project_qkv(x)
        return self.attend_qkv(q, k, v, mask, need_weights)
