"""Standard multi-head attention (Vaswani et al., "Attention Is All You Need", 2017, arXiv:1706.03762).

Self- or cross-attention with key-padding masks, an optional causal mask, grouped-query attention
(GQA: ``num_kv_heads`` < ``num_heads``, Ainslie et al. 2023, arXiv:2305.13245) and an optional learned
relative position bias (one scalar per head and clipped relative distance, as in Shaw et al. 2018 /
T5 without buckets).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention, split_last
from polyhead.attention.registry import register_attention


@register_attention("mha")
class MultiHeadAttention(AttentionBase):
    """Multi-head scaled dot-product attention.

    Args:
        dim: token width.
        num_heads: query heads.
        num_kv_heads: key/value heads (GQA); must divide ``num_heads``. Default: ``num_heads``.
        causal: mask future keys (query i sees keys j <= i).
        qkv_bias: bias in the input projections.
        dropout: dropout on the output projection.
        rel_pos_max_distance: if set, add a learned per-head bias indexed by the relative distance
            ``j - i`` clipped to ``[-d, d]``.
        backend: ``functional.attention`` backend.
    """

    backends = ("math", "sdpa", "flex")
    supports_causal = True

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        causal: bool = False,
        qkv_bias: bool = True,
        dropout: float = 0.0,
        rel_pos_max_distance: int | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_kv_heads <= 0 or num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads ({num_kv_heads}) must be positive and divide num_heads ({num_heads})"
            )
        self.num_kv_heads = num_kv_heads
        self.causal = causal
        self.backend = backend
        kv_dim = num_kv_heads * self.head_dim
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, kv_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, kv_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.rel_pos_max_distance = rel_pos_max_distance
        if rel_pos_max_distance is not None:
            if rel_pos_max_distance <= 0:
                raise ValueError(f"rel_pos_max_distance must be positive, got {rel_pos_max_distance}")
            self.rel_pos_table = nn.Parameter(torch.zeros(num_heads, 2 * rel_pos_max_distance + 1))
            nn.init.trunc_normal_(self.rel_pos_table, std=0.02)

    def relative_position_bias(self, L: int, S: int, device: torch.device) -> Tensor:
        """``(1, H, L, S)`` learned bias for relative distance ``j - i`` (clipped)."""
        d = self.rel_pos_max_distance
        assert d is not None  # the bias exists only with rel_pos_max_distance set
        rel = torch.arange(S, device=device)[None, :] - torch.arange(L, device=device)[:, None]
        idx = rel.clamp(-d, d) + d  # (L, S)
        return self.rel_pos_table[:, idx].unsqueeze(0)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        src = x if context is None else context
        S = src.shape[1]
        if context is None:
            # Self-attention: q, k and v from one product with the three weights stacked (one GEMM instead of
            # three, the same parameters); the heads are views into it.
            stacked = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
            biases = (self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)
            bias_cat = None if biases[0] is None else torch.cat(biases)
            qx, kx, vx = split_last(
                F.linear(x, stacked, bias_cat), [self.dim, self.k_proj.out_features, self.v_proj.out_features]
            )
        else:
            qx, kx, vx = self.q_proj(x), self.k_proj(src), self.v_proj(src)
        q = qx.reshape(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, L, Dh)
        k = kx.reshape(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, S, Dh)
        v = vx.reshape(B, S, self.num_kv_heads, self.head_dim).transpose(1, 2)
        bias = None if self.rel_pos_max_distance is None else self.relative_position_bias(L, S, x.device)
        res = attention(
            q, k, v, bias=bias, mask=mask, causal=self.causal, backend=self.backend, need_weights=need_weights
        )
        o, w = res if isinstance(res, tuple) else (res, None)
        o = self.merge_heads(o)
        return AttentionOutput(self.dropout(self.out_proj(o)), w)
