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


def recompute_in_backward(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """Run ``fn(*args)`` without keeping its intermediates for backward (they are recomputed).

    The structured variants use it around their gather + attention core, so that training memory is
    the inputs plus one chunk's working set instead of every chunk's gathered keys and scores.
    """
    if torch.is_grad_enabled() and any(a.requires_grad for a in args if isinstance(a, Tensor)):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


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
    B, H, L, D = q.shape
    S = k.shape[2]
    bq, bk = layout.block_q, layout.block_k
    nq, nk = -(-L // bq), -(-S // bk)
    Lp, Sp = nq * bq, nk * bk
    qp = torch.nn.functional.pad(q, (0, 0, 0, Lp - L))
    kp = torch.nn.functional.pad(k, (0, 0, 0, Sp - S)).view(B, H, nk, bk, D)
    vp = torch.nn.functional.pad(v, (0, 0, 0, Sp - S)).view(B, H, nk, bk, v.shape[-1])
    kpad = None if key_padding is None else torch.nn.functional.pad(key_padding, (0, Sp - S))
    K = layout.indices.shape[-1]
    # Query blocks per chunk: about 2^22 score elements per head at a time.
    step = max(1, (1 << 22) // max(1, B * bq * K * bk))
    outs = []
    for s0 in range(0, nq, step):
        s1 = min(nq, s0 + step)

        def chunk(qc: Tensor, kp: Tensor, vp: Tensor, s0: int = s0, s1: int = s1) -> Tensor:
            return _block_chunk(qc, kp, vp, layout, mask_mod, kpad, s0, s1, S, scale, backend)

        outs.append(recompute_in_backward(chunk, qp[:, :, s0 * bq : s1 * bq], kp, vp))
    return torch.cat(outs, dim=2)[:, :, :L]


def _block_chunk(
    qc: Tensor,
    kp: Tensor,
    vp: Tensor,
    layout: BlockLayout,
    mask_mod: MaskMod,
    kpad: Tensor | None,
    s0: int,
    s1: int,
    S: int,
    scale: float | None,
    backend: str,
) -> Tensor:
    """Query blocks ``s0:s1`` against their gathered key blocks: ``(B, H, (s1 - s0) * bq, Dv)``."""
    from polyhead.attention.functional import attention

    B, H, _, D = qc.shape
    bq, bk = layout.block_q, layout.block_k
    n = s1 - s0
    idx = layout.indices[:, s0:s1]  # (H, n, K)
    K = idx.shape[-1]
    hh = torch.arange(H, device=qc.device)[:, None, None]
    kg = kp[:, hh, idx].reshape(B, H, n, K * bk, D)
    vg = vp[:, hh, idx].reshape(B, H, n, K * bk, vp.shape[-1])
    k_tok = (idx[..., None] * bk + torch.arange(bk, device=qc.device)).reshape(H, n, K * bk)
    q_tok = torch.arange(s0 * bq, s1 * bq, device=qc.device).view(n, bq)
    allowed = mask_mod(None, hh[..., None], q_tok[None, :, :, None], k_tok[:, :, None, :])  # (H, n, bq, K*bk)
    allowed = allowed & layout.valid[:, s0:s1].repeat_interleave(bk, dim=-1)[:, :, None, :]
    allowed = (allowed & (k_tok < S)[:, :, None, :]).expand(B, H, n, bq, K * bk)
    if kpad is not None:
        allowed = allowed & _gather_keys(kpad, k_tok)[:, :, :, None, :]
    qb = qc.view(B, H, n, bq, D)

    def fold(t: Tensor) -> Tensor:  # (B, H, n, ...) -> (B * n, H, ...)
        return t.transpose(1, 2).reshape(B * n, H, *t.shape[3:])

    o = attention(fold(qb), fold(kg), fold(vg), mask=fold(allowed), scale=scale, backend=backend)
    return o.view(B, n, H, bq, -1).transpose(1, 2).reshape(B, H, n * bq, -1)


def _gather_keys(key_padding: Tensor, k_tok: Tensor) -> Tensor:
    """``key_padding (B, Sp)`` at token indices ``k_tok (H, nq, K)`` -> ``(B, H, nq, K)``."""
    return key_padding[:, k_tok]
