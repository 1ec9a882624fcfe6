"""Trainable dynamic mask attention (DMA).

Shi et al., "Trainable Dynamic Mask Sparse Attention" (2025, arXiv:2508.02124; reference kernels
SmallDoges/flash-dmattn). A content-aware mask is computed from the values: per head and key,
``bias = A_h * softplus(W_dt v)`` (``A`` starts at 0). Each query keeps only the ``window`` keys with the
largest bias among the keys it may see (causal, unpadded), and attends with
``softmax(q k^T * scale + bias) v`` over them; gradients reach ``A`` and ``W_dt`` through the bias of the
kept keys. Ties (e.g. at initialisation, when every bias is 0) go to the most recent keys, so an
untrained layer behaves like a sliding window.

The ``sdpa`` path gathers the kept keys per query (memory ``O(L * window)``), processing queries in chunks
so the selection never holds more than ``chunk_size x S`` scores; the ``math`` oracle scatters the same
selection into an explicit ``(L, S)`` mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.layouts import recompute_in_backward
from polyhead.attention.registry import register_attention


def dma_select(
    bias: Tensor,
    L: int,
    window: int,
    *,
    causal: bool,
    key_padding: Tensor | None,
    q_start: int = 0,
    q_end: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``window`` keys per query by ``bias (B, H, S)`` among visible keys, for queries ``[q_start, q_end)``.

    Returns ``(indices (B, H, n_q, w), valid (B, H, n_q, w))`` with ``w = min(window, S)``; queries are
    aligned with the end of the keys (query i is key position ``i + S - L``).
    """
    B, H, S = bias.shape
    q_end = L if q_end is None else q_end
    w = min(window, S)
    j = torch.arange(S, device=bias.device)
    # float64 score with a recency tie-breaker far below the bias resolution that matters.
    score = bias.double() + j.double() * 1e-9
    score = score[:, :, None, :].expand(B, H, q_end - q_start, S)
    visible = torch.ones(1, 1, 1, S, dtype=torch.bool, device=bias.device)
    if causal:
        qpos = torch.arange(q_start, q_end, device=bias.device) + (S - L)
        visible = (j[None, :] <= qpos[:, None])[None, None]
    if key_padding is not None:
        visible = visible & key_padding[:, None, None, :]
    score = score.masked_fill(~visible, float("-inf"))
    top = score.topk(w, dim=-1)
    return top.indices, torch.isfinite(top.values)


def dma_pattern(
    bias: Tensor, L: int, window: int, *, causal: bool, key_padding: Tensor | None = None
) -> Tensor:
    """Explicit ``(B, H, L, S)`` bool of the keys each query keeps (the oracle's mask)."""
    B, H, S = bias.shape
    idx, valid = dma_select(bias, L, window, causal=causal, key_padding=key_padding)
    keep = torch.zeros(B, H, L, S, dtype=torch.bool, device=bias.device)
    return keep.scatter_(-1, idx, valid)


def _fold(t: Tensor) -> Tensor:
    """``(B, H, c, ...)`` -> ``(B * c, H, ...)``: every query becomes its own batch entry."""
    return t.transpose(1, 2).reshape(t.shape[0] * t.shape[2], t.shape[1], *t.shape[3:])


def _gathered_attention(
    qc: Tensor, k: Tensor, v: Tensor, bias: Tensor, idx: Tensor, valid: Tensor, backend: str
) -> Tensor:
    """Queries ``(B, H, c, Dh)`` against their own kept keys ``idx (B, H, c, w)``: ``(B*c, H, 1, Dh)``."""
    B, H = qc.shape[:2]
    hb = torch.arange(B, device=qc.device)[:, None, None, None]
    hh = torch.arange(H, device=qc.device)[None, :, None, None]
    kg, vg, bg = k[hb, hh, idx], v[hb, hh, idx], bias[hb, hh, idx]  # (B, H, c, w, Dh), (B, H, c, w)
    return attention(
        _fold(qc[..., None, :]),
        _fold(kg),
        _fold(vg),
        bias=_fold(bg[..., None, :]),
        mask=_fold(valid[..., None, :]),
        backend=backend,
    )


@register_attention("dma")
class DynamicMaskAttention(AttentionBase):
    """DMA attention.

    Args:
        dim: token width.
        num_heads: heads.
        window: keys kept per query (flash-dmattn's ``keep_window_size``).
        causal: causal (default, as in the paper's language models).
        chunk_size: queries processed together on the gather path.
        backend: ``math`` (oracle), ``sdpa`` (gathered keys), ``auto``.
    """

    supports_causal = True

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window: int = 256,
        causal: bool = True,
        chunk_size: int = 64,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if window < 1 or chunk_size < 1:
            raise ValueError(f"window and chunk_size must be >= 1, got {window}, {chunk_size}")
        self.window, self.causal, self.chunk_size, self.backend = window, causal, chunk_size, backend
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.dt_proj = nn.Linear(dim, num_heads)
        self.A = nn.Parameter(torch.zeros(num_heads))
        self.out_proj = nn.Linear(dim, dim)

    def dynamic_bias(self, v: Tensor) -> Tensor:
        """``A * softplus(W_dt v)`` from values ``(B, H, S, Dh)``: ``(B, H, S)``."""
        B, H, S, Dh = v.shape
        dt = F.softplus(self.dt_proj(v.transpose(1, 2).reshape(B, S, H * Dh)))  # (B, S, H)
        return (self.A * dt).transpose(1, 2)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        src = x if context is None else context
        S = src.shape[1]
        H, Dh = self.num_heads, self.head_dim
        q = self.q_proj(x).view(B, L, H, Dh).transpose(1, 2)
        k, v = self.kv_proj(src).view(B, S, 2, H, Dh).permute(2, 0, 3, 1, 4)
        bias = self.dynamic_bias(v)  # (B, H, S)
        w = None
        if need_weights or self.backend == "math":
            keep = dma_pattern(bias, L, self.window, causal=self.causal, key_padding=mask)
            o, w = attention(q, k, v, bias=bias[:, :, None, :], mask=keep, backend="math", need_weights=True)
        else:
            outs = []
            for s in range(0, L, self.chunk_size):
                e = min(L, s + self.chunk_size)
                idx, valid = dma_select(
                    bias, L, self.window, causal=self.causal, key_padding=mask, q_start=s, q_end=e
                )
                o = recompute_in_backward(
                    lambda qc, k, v, bias, idx=idx, valid=valid: _gathered_attention(
                        qc, k, v, bias, idx, valid, self.backend
                    ),
                    q[:, :, s:e],
                    k,
                    v,
                    bias,
                )  # (B*c, H, 1, Dh)
                c = idx.shape[2]
                outs.append(o.view(B, c, H, Dh).transpose(1, 2))
            o = torch.cat(outs, dim=2)
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)
