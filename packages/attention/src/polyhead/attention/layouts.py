"""Block-sparse attention layouts and a gather-based block-sparse attention for CPU/SDPA.

A structured pattern (S2 strided shards, sliding window + sinks, top-w keys...) is described twice:
- a token-level ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (FlexAttention's convention; broadcasting
  tensors in, bool tensor out), the ground truth;
- a block-level ``(H, n_q_blocks, n_k_blocks)`` bool saying which blocks hold any visible pair.

:func:`layout_from_block_mask` turns the block mask into the compact ``(H, n_q_blocks, max_k_blocks)``
index list that the Triton kernels and :func:`block_sparse_attention` consume. The latter gathers only the
listed key blocks for every query block and runs dense attention inside them, so memory grows with the
number of visible blocks, never with ``L x S``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

MaskMod = Callable[..., Tensor]


@dataclass
class BlockLayout:
    """Compact per-head block layout.

    Attributes:
        indices: ``(H, n_q_blocks, max_k_blocks)`` key-block indices, ascending; padding entries repeat a
            valid index and are flagged in ``valid``.
        valid: ``(H, n_q_blocks, max_k_blocks)`` bool.
        counts: ``(H, n_q_blocks)`` number of valid entries.
        block_q, block_k: block sizes in tokens.
    """

    indices: Tensor
    valid: Tensor
    counts: Tensor
    block_q: int
    block_k: int

    @property
    def density(self) -> float:
        """Fraction of (query block, key block) pairs that are computed."""
        H, nq, _ = self.indices.shape
        n_k = int(self.indices.max()) + 1 if self.indices.numel() else 1
        return float(self.counts.sum()) / (H * nq * max(n_k, 1))


def layout_from_block_mask(block_mask: Tensor, block_q: int, block_k: int) -> BlockLayout:
    """``(H, nq, nk)`` bool -> :class:`BlockLayout` (ascending key blocks per query block)."""
    if block_mask.dim() != 3 or block_mask.dtype != torch.bool:
        raise ValueError(
            f"block_mask must be a bool (H, n_q_blocks, n_k_blocks) tensor, got {tuple(block_mask.shape)}"
        )
    counts = block_mask.sum(-1)
    max_k = max(int(counts.max()) if counts.numel() else 0, 1)
    nk = block_mask.shape[-1]
    # Sort visible blocks first (stable keeps them ascending), then keep the first max_k.
    key = (~block_mask).to(torch.int64) * nk + torch.arange(nk, device=block_mask.device)
    order = key.argsort(dim=-1)[..., :max_k]
    valid = torch.arange(max_k, device=block_mask.device) < counts[..., None]
    first = order[..., :1]
    indices = torch.where(valid, order, first)
    return BlockLayout(indices, valid, counts, block_q, block_k)


def dense_pattern(mask_mod: MaskMod, H: int, L: int, S: int, device: torch.device | None = None) -> Tensor:
    """Evaluate ``mask_mod`` on the full grid: ``(H, L, S)`` bool (for tests and the math oracle)."""
    h = torch.arange(H, device=device)[:, None, None]
    q = torch.arange(L, device=device)[None, :, None]
    k = torch.arange(S, device=device)[None, None, :]
    return mask_mod(None, h, q, k).expand(H, L, S)


def block_mask_from_mask_mod(
    mask_mod: MaskMod, H: int, L: int, S: int, block_q: int, block_k: int, device: torch.device | None = None
) -> Tensor:
    """Exact block mask by evaluating ``mask_mod`` one query block at a time: ``(H, nq, nk)`` bool.

    Memory is ``H * block_q * S`` at a time; patterns with a closed form block rule should use it instead.
    """
    nq, nk = -(-L // block_q), -(-S // block_k)
    out = torch.zeros(H, nq, nk, dtype=torch.bool, device=device)
    h = torch.arange(H, device=device)[:, None, None]
    k = torch.arange(S, device=device)[None, None, :]
    pad = nk * block_k - S
    for i in range(nq):
        q = torch.arange(i * block_q, min((i + 1) * block_q, L), device=device)[None, :, None]
        m = mask_mod(None, h, q, k).expand(H, q.shape[1], S).any(dim=1)  # (H, S)
        m = torch.nn.functional.pad(m, (0, pad))
        out[:, i] = m.view(H, nk, block_k).any(-1)
    return out


def block_sparse_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: BlockLayout,
    mask_mod: MaskMod,
    *,
    key_padding: Tensor | None = None,
    scale: float | None = None,
    backend: str = "sdpa",
) -> Tensor:
    """Attention over the blocks listed in ``layout``, exact w.r.t. ``mask_mod`` (and ``key_padding``).

    Args:
        q: ``(B, H, L, D)``; k, v: ``(B, H, S, D)`` (expand GQA heads before calling).
        layout: per-head layout with ``block_q``/``block_k`` blocks.
        mask_mod: token-level pattern ``mask_mod(b, h, q_idx, kv_idx)``.
        key_padding: ``(B, S)`` bool, True = keep.

    Returns:
        ``(B, H, L, D)``; queries that see no key get zeros.
    """
    from polyhead.attention.functional import attention

    B, H, L, D = q.shape
    S = k.shape[2]
    bq, bk = layout.block_q, layout.block_k
    nq, nk = -(-L // bq), -(-S // bk)
    Lp, Sp = nq * bq, nk * bk
    qp = torch.nn.functional.pad(q, (0, 0, 0, Lp - L)).view(B, H, nq, bq, D)
    kp = torch.nn.functional.pad(k, (0, 0, 0, Sp - S)).view(B, H, nk, bk, D)
    vp = torch.nn.functional.pad(v, (0, 0, 0, Sp - S)).view(B, H, nk, bk, v.shape[-1])
    idx = layout.indices  # (H, nq, K)
    K = idx.shape[-1]
    hh = torch.arange(H, device=q.device)[:, None, None]
    kg = kp[:, hh, idx].reshape(B, H, nq, K * bk, D)  # (B, H, nq, K*bk, D)
    vg = vp[:, hh, idx].reshape(B, H, nq, K * bk, v.shape[-1])
    # Token indices of the gathered keys and of the queries.
    k_tok = (idx[..., None] * bk + torch.arange(bk, device=q.device)).reshape(H, nq, K * bk)
    q_tok = torch.arange(Lp, device=q.device).view(nq, bq)
    allowed = mask_mod(
        None, hh[..., None], q_tok[None, :, :, None], k_tok[:, :, None, :]
    )  # (H, nq, bq, K*bk)
    allowed = allowed & layout.valid.repeat_interleave(bk, dim=-1)[:, :, None, :] & (k_tok < S)[:, :, None, :]
    allowed = allowed.expand(B, H, nq, bq, K * bk)
    if key_padding is not None:
        kpad = torch.nn.functional.pad(key_padding, (0, Sp - S))
        allowed = allowed & _gather_keys(kpad, k_tok)[:, :, :, None, :]
    # Fold (B, nq) into the batch: (B*nq, H, bq, K*bk).
    fold = lambda t: t.transpose(1, 2).reshape(B * nq, H, *t.shape[3:])  # noqa: E731
    o = attention(fold(qp), fold(kg), fold(vg), mask=fold(allowed), scale=scale, backend=backend)
    return o.view(B, nq, H, bq, -1).transpose(1, 2).reshape(B, H, Lp, -1)[:, :, :L]


def _gather_keys(key_padding: Tensor, k_tok: Tensor) -> Tensor:
    """``key_padding (B, Sp)`` at token indices ``k_tok (H, nq, K)`` -> ``(B, H, nq, K)``."""
    return key_padding[:, k_tok]
