"""Trainable dynamic mask attention (DMA).

Shi et al., "Trainable Dynamic Mask Sparse Attention" (2025, arXiv:2508.02124; reference kernels
SmallDoges/flash-dmattn). A content-aware mask is computed from the values: per head and key,
``bias = A_h * softplus(W_dt v)`` (``A`` starts at 0). Each query keeps only the ``window`` keys with the
largest bias among the keys it may see (causal, unpadded), and attends with
``softmax(q k^T * scale + bias) v`` over them; gradients reach ``A`` and ``W_dt`` through the bias of the
kept keys. Ties (e.g. at initialisation, when every bias is 0) go to the most recent keys, so an
untrained layer behaves like a sliding window.

The ``sdpa`` path never looks at more than ``window + chunk_size`` keys per query chunk. Because the bias
does not depend on the query, the top-``window`` keys of a causal query are among the top-``window`` keys
of everything before its chunk plus the chunk's own keys; a running top-``window`` set is carried from
chunk to chunk (``O(S * window / chunk_size)`` selection work instead of ``O(L * S)``), every query of a chunk
attends to the chunk's ``window + chunk_size`` candidate keys with its own selection as mask, and each
chunk is recomputed in backward, so memory is ``O(L * dim)`` plus one chunk's scores. Without ``causal``
every query keeps the same global top-``window`` keys. The ``math`` oracle scatters the per-query
selection of :func:`dma_select` into an explicit ``(L, S)`` mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.layouts import recompute_in_backward
from polyhead.attention.registry import register_attention


def selection_score(bias: Tensor) -> Tensor:
    """The float64 score keys are ranked by: ``bias (B, H, S)`` plus a recency tie-breaker (``1e-9 * j``)
    far below the bias resolution that matters, so ties (e.g. an all-zero bias) go to the latest keys."""
    j = torch.arange(bias.shape[-1], device=bias.device, dtype=torch.float64)
    return bias.detach().double() + j * 1e-9


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
    score = selection_score(bias)[:, :, None, :].expand(B, H, q_end - q_start, S)
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


def _candidate_attention(
    qc: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor,
    cand: Tensor,
    cand_score: Tensor,
    q_pos: Tensor | None,
    window: int,
    backend: str,
) -> Tensor:
    """Queries ``qc (B, H, c, Dh)`` against the candidate keys ``cand (B, H, K)`` (ranked by ``cand_score``).

    Each query keeps its top-``window`` candidates among those it sees (position ``<= q_pos (c,)`` when
    causal, ``q_pos (c, 1)``; all when ``q_pos`` is None) with a finite score; the rest are masked.
    Returns ``(B, H, c, Dh)``.
    """
    B, H, K = cand.shape
    Dh = k.shape[-1]
    if q_pos is None:  # non-causal: every query keeps the same keys
        keep = torch.isfinite(cand_score)[:, :, None, :]  # (B, H, 1, K)
    else:
        seen = cand[:, :, None, :] <= q_pos  # (B, H, c, K)
        score = cand_score[:, :, None, :].masked_fill(~seen, float("-inf"))
        top = score.topk(min(window, K), dim=-1)
        keep = torch.zeros_like(seen).scatter_(-1, top.indices, torch.isfinite(top.values))
    g = cand[..., None].expand(B, H, K, Dh)
    kc, vc = k.gather(2, g), v.gather(2, g)
    bc = bias.gather(2, cand)[:, :, None, :]  # (B, H, 1, K)
    out = attention(qc, kc, vc, bias=bc, mask=keep, backend=backend)
    assert isinstance(out, Tensor)  # without need_weights: the output alone
    return out


def dma_chunked_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    bias: Tensor,
    window: int,
    *,
    causal: bool,
    key_padding: Tensor | None,
    chunk_size: int,
    backend: str,
) -> Tensor:
    """DMA attention ``(B, H, L, Dh)`` without an ``L x S`` selection (see the module docstring).

    Queries are aligned with the end of the keys (query i is key position ``i + S - L``).
    """
    B, H, L, _ = q.shape
    S = k.shape[2]
    w = min(window, S)
    score = selection_score(bias)
    if key_padding is not None:
        score = score.masked_fill(~key_padding[:, None, :], float("-inf"))
    off = S - L
    if causal:
        # Running top-w of the keys before the current chunk's queries (-inf placeholders where fewer exist).
        run_idx = torch.zeros(B, H, w, dtype=torch.long, device=q.device)
        run_score = torch.full((B, H, w), float("-inf"), dtype=torch.float64, device=q.device)
        if off > 0:
            top = score[..., :off].topk(min(w, off), dim=-1)
            run_idx[..., : top.indices.shape[-1]] = top.indices
            run_score[..., : top.values.shape[-1]] = top.values
    else:  # every query keeps the same global top-w keys
        top = score.topk(w, dim=-1)
        cand, cand_score, q_pos = top.indices, top.values, None
    outs, s = [], 0
    for qc in q.split(chunk_size, dim=2):
        e = s + qc.shape[2]
        if causal:
            p0, p1 = s + off, e + off  # this chunk's query positions = its new keys
            new = torch.arange(p0, p1, device=q.device).expand(B, H, p1 - p0)
            cand = torch.cat([run_idx, new], dim=-1)  # (B, H, w + c)
            cand_score = torch.cat([run_score, score[..., p0:p1]], dim=-1)
            q_pos = torch.arange(p0, p1, device=q.device)[:, None]  # (c, 1)
        outs.append(
            recompute_in_backward(
                lambda qc, k, v, bias, c=cand, cs=cand_score, qp=q_pos: _candidate_attention(
                    qc, k, v, bias, c, cs, qp, w, backend
                ),
                qc,
                k,
                v,
                bias,
            )
        )
        if causal:
            top = cand_score.topk(w, dim=-1)
            run_idx, run_score = cand.gather(-1, top.indices), top.values
        s = e
    return torch.cat(outs, dim=2)


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
            o = dma_chunked_attention(
                q,
                k,
                v,
                bias,
                self.window,
                causal=self.causal,
                key_padding=mask,
                chunk_size=self.chunk_size,
                backend=self.backend,
            )
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)
