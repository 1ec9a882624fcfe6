"""S2-Attention: strided context shards per head (+ local blocks, optional dense heads).

Lin et al., "S2-Attention: Hardware-Aware Context Sharding Among Attention Heads" (2024,
arXiv:2407.17678; reference kernels linxihui/dkernel). Tokens are grouped in blocks of ``block_size``.
For head ``h`` the (query block ``i``, key block ``j``) pair is attended iff it is *local*
(``0 <= i - j < local_blocks``) or *strided* (``(j + h * head_step + offset) % vert_stride == 0``), with
``j <= i`` when causal (the default, as in dkernel; bidirectional uses ``|i - j| < local_blocks``). Heads
with different ``h * head_step`` see different residues, so the union over heads covers the context. The
first ``num_dense_heads`` heads attend densely. Inside a block pair the token-level causal mask applies.

On the ``sdpa`` path the block pattern becomes a :class:`~polyhead.attention.layouts.BlockLayout` and
:func:`polyhead.attention.layouts.block_sparse_attention` runs it: groups of query blocks gather, per head,
the union of the key blocks they list, attend to them with the token-level causal rule as mask, a chunk of
groups at a time, each chunk recomputed in backward. Memory is the projections plus one chunk's keys and
scores (``O(L * dim)``), never ``L x S``; dense heads go through a call of their own, so that the sparse
heads' gathers stay the size of their shards. The ``math`` oracle uses the explicit pattern.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.layouts import MaskMod, block_sparse_attention, dense_pattern, layout_from_block_mask
from polyhead.attention.registry import register_attention


def s2_block_mask(
    H: int,
    n_q_blocks: int,
    n_k_blocks: int,
    *,
    local_blocks: int,
    vert_stride: int,
    head_step: int = 1,
    offset: int = 0,
    num_dense_heads: int = 0,
    causal: bool = True,
    device: torch.device | None = None,
) -> Tensor:
    """``(H, nq, nk)`` bool of the S2 block pattern (query block i aligned with the end of the keys)."""
    shift = n_k_blocks - n_q_blocks
    i = torch.arange(n_q_blocks, device=device)[None, :, None] + shift
    j = torch.arange(n_k_blocks, device=device)[None, None, :]
    h = torch.arange(H, device=device)[:, None, None]
    d = i - j
    local = (d >= 0) & (d < local_blocks) if causal else d.abs() < local_blocks
    strided = (j + h * head_step + offset) % vert_stride == 0
    m = local | strided
    if causal:
        m = m & (d >= 0)
    dense = (h < num_dense_heads) & ((d >= 0) if causal else torch.ones_like(m))
    return m | dense


def s2_mask_mod(
    *,
    block_size: int,
    local_blocks: int,
    vert_stride: int,
    head_step: int = 1,
    offset: int = 0,
    num_dense_heads: int = 0,
    causal: bool = True,
    q_offset: int = 0,
) -> MaskMod:
    """Token-level S2 pattern as a FlexAttention ``mask_mod`` (``q_offset`` = S - L for decoding)."""

    def mask_mod(b, h, q_idx, kv_idx):
        qi = q_idx + q_offset
        i, j = qi // block_size, kv_idx // block_size
        d = i - j
        local = ((d >= 0) & (d < local_blocks)) if causal else (d.abs() < local_blocks)
        strided = (j + h * head_step + offset) % vert_stride == 0
        m = local | strided | (h < num_dense_heads)
        return (m & (kv_idx <= qi)) if causal else m

    return mask_mod


def _causal_mask_mod(q_offset: int) -> MaskMod:
    """Keys at or before the query (queries end-aligned): the S2 token rule inside a visible block pair."""

    def mask_mod(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx + q_offset

    return mask_mod


@register_attention("s2")
class StridedShardAttention(AttentionBase):
    """S2-Attention.

    Args:
        dim: token width.
        num_heads: heads.
        block_size: tokens per block (dkernel: 64).
        local_blocks: local window in blocks.
        vert_stride: stride of the strided shard.
        head_step: shard shift between consecutive heads.
        num_dense_heads: leading heads that attend densely.
        causal: causal (default) or bidirectional.
        backend: ``math`` (oracle), ``sdpa`` (block gather), ``auto``.
    """

    supports_causal = True
    cross_is_prefix = True  # context = cached keys, S - L a multiple of block_size

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        block_size: int = 64,
        local_blocks: int = 4,
        vert_stride: int = 8,
        head_step: int = 1,
        num_dense_heads: int = 0,
        causal: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if block_size < 1 or local_blocks < 1 or vert_stride < 1:
            raise ValueError(
                f"block_size, local_blocks and vert_stride must be >= 1, got {block_size}, {local_blocks}, {vert_stride}"
            )
        if not 0 <= num_dense_heads <= num_heads:
            raise ValueError(f"num_dense_heads must be in [0, {num_heads}], got {num_dense_heads}")
        self.block_size, self.local_blocks, self.vert_stride = block_size, local_blocks, vert_stride
        self.head_step, self.num_dense_heads, self.causal = head_step, num_dense_heads, causal
        self.backend = backend
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def mask_mod(self, L: int, S: int) -> MaskMod:
        return s2_mask_mod(
            block_size=self.block_size,
            local_blocks=self.local_blocks,
            vert_stride=self.vert_stride,
            head_step=self.head_step,
            num_dense_heads=self.num_dense_heads,
            causal=self.causal,
            q_offset=S - L,
        )

    def explicit_pattern(self, L: int, S: int, device: torch.device | None = None) -> Tensor:
        """``(H, L, S)`` bool: the keys each query of each head can see."""
        return dense_pattern(self.mask_mod(L, S), self.num_heads, L, S, device)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        src = x if context is None else context
        S = src.shape[1]
        q = self.split_heads(self.q_proj(x))
        k, v = self.split_heads(self.kv_proj(src), 2)
        w = None
        if need_weights or self.backend == "math":
            keep = self.explicit_pattern(L, S, x.device)[None]
            if mask is not None:
                keep = keep & mask[:, None, None, :]
            o, w = attention(q, k, v, mask=keep, backend="math", need_weights=True)
        else:
            if (S - L) % self.block_size:
                raise ValueError(f"s2: S - L ({S - L}) must be a multiple of block_size ({self.block_size})")
            bs = self.block_size
            nq, nk = -(-L // bs), -(-S // bs)
            block = s2_block_mask(
                self.num_heads,
                nq,
                nk,
                local_blocks=self.local_blocks,
                vert_stride=self.vert_stride,
                head_step=self.head_step,
                num_dense_heads=self.num_dense_heads,
                causal=self.causal,
                device=x.device,
            )
            # Inside a listed block pair every token pair is attended, except later keys when causal.
            inside = _causal_mask_mod(S - L) if self.causal else None
            # Dense heads see every (earlier) block: attended on their own so that the sparse heads' key
            # unions stay the size of their shards.
            groups = [(0, self.num_dense_heads), (self.num_dense_heads, self.num_heads)]
            o = torch.cat(
                [
                    block_sparse_attention(
                        q[:, a:b],
                        k[:, a:b],
                        v[:, a:b],
                        layout_from_block_mask(block[a:b], bs, bs),
                        inside,
                        key_padding=mask,
                        backend=self.backend,
                    )
                    for a, b in groups
                    if b > a
                ],
                dim=1,
            )
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)
