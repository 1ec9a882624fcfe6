"""Block-sparse attention layouts and a gather-based block-sparse attention for CPU/SDPA.

A structured pattern (S2 strided shards, sliding window + sinks, top-w keys...) is described twice:
- a token-level ``mask_mod(b, h, q_idx, kv_idx) -> bool`` (FlexAttention's convention; broadcasting
  tensors in, bool tensor out), the ground truth;
- a block-level ``(H, n_q_blocks, n_k_blocks)`` bool saying which blocks hold any visible pair.

:func:`layout_from_block_mask` turns the block mask into the compact ``(H, n_q_blocks, max_k_blocks)``
index list that the Triton kernels and :func:`block_sparse_attention` consume. The latter gathers, for a
group of consecutive query blocks, only the key blocks they list (their union, shared by the group) and runs
dense attention against them, so memory grows with the number of visible blocks, never with ``L x S``; the
S2 and DuoAttention fast paths both run on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
    mask_mod: MaskMod | None = None,
    *,
    key_padding: Tensor | None = None,
    scale: float | None = None,
    backend: str = "sdpa",
    group: int | None = None,
) -> Tensor:
    """Attention over the blocks listed in ``layout``, exact w.r.t. ``mask_mod`` (and ``key_padding``).

    Query blocks are taken ``group`` at a time; a group gathers, per head, the union of the key blocks its
    query blocks list (once, shared by them: a strided shard or the sink blocks are copied once per group
    instead of once per query block) and runs one dense attention against it, with the token mask
    "(query, key) lies in a block its query block lists, ``mask_mod`` holds, the key is kept". Groups are
    batched a chunk at a time (about ``4 * windows.SCORE_BUDGET`` score elements) and each chunk is
    recomputed in backward, so memory grows with the number of listed blocks, never with ``L x S``.

    Args:
        q: ``(B, H, L, D)``; k, v: ``(B, H, S, D)`` (expand GQA heads before calling).
        layout: per-head layout with ``block_q``/``block_k`` blocks (``ceil(L / block_q)`` query blocks).
        mask_mod: token-level pattern ``mask_mod(b, h, q_idx, kv_idx)`` inside the listed blocks; None keeps
            every pair of a listed block.
        key_padding: ``(B, S)`` bool, True = keep.
        group: query blocks per gather; None picks it from the layout (:func:`union_group_size`).

    Returns:
        ``(B, H, L, D)``; queries that see no key get zeros.
    """
    from polyhead.attention import windows

    B, H, L, D = q.shape
    S = k.shape[2]
    bq, bk = layout.block_q, layout.block_k
    nq, nk = layout.indices.shape[1], -(-S // bk)
    if nq != -(-L // bq) or layout.indices.shape[0] != H:
        raise ValueError(f"layout {tuple(layout.indices.shape)} does not fit H={H}, L={L}, block_q={bq}")
    budget = 4 * windows.SCORE_BUDGET
    m = union_group_size(layout, B * H, budget, D + v.shape[-1]) if group is None else max(1, min(group, nq))
    G = -(-nq // m)
    Lp, Sp = G * m * bq, nk * bk
    qp = F.pad(q, (0, 0, 0, Lp - L)) if Lp != L else q
    kp = (F.pad(k, (0, 0, 0, Sp - S)) if Sp != S else k).view(B, H, nk, bk, D)
    vp = (F.pad(v, (0, 0, 0, Sp - S)) if Sp != S else v).view(B, H, nk, bk, v.shape[-1])
    key_ok = (torch.arange(Sp, device=q.device) < S)[None]
    if key_padding is not None:
        key_ok = key_ok & F.pad(key_padding, (0, Sp - S), value=False)
    lists, listed = _grouped_lists(layout, m)  # (H, G, m, K)
    union, count = _union(lists, listed)  # (H, G, U), (H, G)
    widest = int(count.max()) if count.numel() else 1
    outs = []
    for g0, g1 in windows.chunk_ranges(G, B * H * m * bq * max(widest, 1) * bk, budget):
        U = max(int(count[:, g0:g1].max()), 1)
        idx = union[:, g0:g1, :U]
        pair = (lists[:, g0:g1, :, :, None] == idx[:, :, None, None, :]) & listed[:, g0:g1, :, :, None]
        pair = pair.any(3) & (torch.arange(U, device=q.device) < count[:, g0:g1, None])[:, :, None]

        def chunk(qc: Tensor, kp: Tensor, vp: Tensor, g0: int = g0, idx: Tensor = idx, pair: Tensor = pair):
            return _union_chunk(qc, kp, vp, idx, pair, g0 * m * bq, bq, mask_mod, key_ok, scale, backend)

        outs.append(recompute_in_backward(chunk, qp[:, :, g0 * m * bq : g1 * m * bq], kp, vp))
    o = torch.cat(outs, dim=2)
    return o[:, :, :L] if Lp != L else o


def union_group_size(layout: BlockLayout, batch_heads: int, budget: int, kv_dim: int) -> int:
    """Query blocks per gather: the power of two with the fewest score + gathered elements.

    Sharing a gather copies the key blocks that consecutive query blocks have in common once, but attends
    every query block of the group to the whole union. A group of ``m`` query blocks with a union of ``U``
    key blocks holds ``U * block_k * (2 * m * block_q + kv_dim)`` elements (scores weigh twice: they and
    their probabilities exist at once; ``kv_dim`` = key + value width of a head). A strided shard or dense
    heads form groups; a sliding window, whose union grows with the group, stays at single query blocks
    (the measured sizes, memory and times: packages/attention/README.md, "Query-block groups"). A group is
    capped to ``budget`` score elements (``batch_heads`` = batch x heads), one query block at least.
    """
    nq = layout.indices.shape[1]
    bq, bk = layout.block_q, layout.block_k
    best, best_cost, m = 1, int(layout.counts.sum()) * bk * (2 * bq + kv_dim), 2
    while m <= nq:
        lists, listed = _grouped_lists(layout, m)
        _, count = _union(lists, listed)
        if int(count.max()) * m * batch_heads * bq * bk > budget:
            break
        cost = int(count.sum()) * bk * (2 * m * bq + kv_dim)
        if cost < best_cost:
            best, best_cost = m, cost
        m *= 2
    return best


def _grouped_lists(layout: BlockLayout, m: int) -> tuple[Tensor, Tensor]:
    """``layout``'s key-block lists in groups of ``m`` query blocks: indices and validity ``(H, G, m, K)``."""
    H, nq, K = layout.indices.shape
    G = -(-nq // m)
    pad = (0, 0, 0, G * m - nq)
    lists = F.pad(layout.indices, pad).view(H, G, m, K)
    return lists, F.pad(layout.valid, pad, value=False).view(H, G, m, K)


def _union(lists: Tensor, listed: Tensor) -> tuple[Tensor, Tensor]:
    """Ascending distinct listed key blocks of every group: ``(H, G, U)`` (padding repeats 0) and counts ``(H, G)``."""
    H, G, m, K = lists.shape
    big = int(lists.max()) + 1 if lists.numel() else 1
    s = torch.where(listed, lists, big).view(H, G, m * K).sort(-1).values
    first = torch.ones_like(s, dtype=torch.bool)
    first[..., 1:] = s[..., 1:] != s[..., :-1]
    first &= s < big
    count = first.sum(-1)
    U = max(int(count.max()) if count.numel() else 0, 1)
    # distinct values first (stable keeps them ascending), then keep the first U
    order = ((~first).to(torch.int64) * (m * K) + torch.arange(m * K, device=s.device)).argsort(-1)[..., :U]
    union = s.gather(-1, order)
    return torch.where(torch.arange(U, device=s.device) < count[..., None], union, 0), count


def _union_chunk(
    qc: Tensor,
    kp: Tensor,
    vp: Tensor,
    idx: Tensor,
    pair: Tensor,
    q0: int,
    bq: int,
    mask_mod: MaskMod | None,
    key_ok: Tensor,
    scale: float | None,
    backend: str,
) -> Tensor:
    """Groups of query blocks (tokens from ``q0``) against their gathered unions ``idx (H, g, U)``.

    ``pair (H, g, m, U)`` says which union blocks each query block lists. Returns ``(B, H, g * m * bq, Dv)``.
    """
    from polyhead.attention.functional import attention

    B, H, n_tok, D = qc.shape
    _, g, m, U = pair.shape
    bk = kp.shape[3]
    hh = torch.arange(H, device=qc.device)[:, None, None]
    kg = kp[:, hh, idx].view(B, H * g, U * bk, D)
    vg = vp[:, hh, idx].view(B, H * g, U * bk, vp.shape[-1])
    k_tok = (idx[..., None] * bk + torch.arange(bk, device=qc.device)).view(H, g, 1, U * bk)
    allowed = pair[:, :, :, None, :, None].expand(H, g, m, bq, U, bk).reshape(H, g, m * bq, U * bk)
    if mask_mod is not None:
        q_tok = torch.arange(q0, q0 + n_tok, device=qc.device).view(1, g, m * bq, 1)
        allowed = allowed & mask_mod(None, hh[..., None], q_tok, k_tok)
    allowed = allowed & key_ok[:, k_tok]  # (Bk, H, g, m * bq, U * bk)
    o = attention(
        qc.reshape(B, H * g, m * bq, D),
        kg,
        vg,
        mask=allowed.flatten(1, 2),
        scale=scale,
        backend=backend,
    )
    assert isinstance(o, Tensor)  # without need_weights: the output alone
    return o.view(B, H, n_tok, -1)


@dataclass
class TiledLayout:
    """A block layout plus the exact token pattern inside its partial blocks (the Triton kernels' input).

    As in FlexAttention, a listed block is either *full* (every in-range (query, key) pair is visible: the
    kernel needs no element mask) or *partial*. Partial blocks point into a table of distinct tile patterns,
    so a causal or sliding-window layout stores a handful of tiles however long the sequence is, and the
    layout never grows with ``L x S``.

    Attributes:
        indices: ``(Bl, Hl, n_q_blocks, max_k_blocks)`` int32 key-block indices, ascending; ``Bl`` is 1 or the
            batch size and ``Hl`` is 1 or the number of query heads (a size-1 dimension is shared).
        counts: ``(Bl, Hl, n_q_blocks)`` int32 number of listed key blocks per query block.
        tile_ids: ``(Bl, Hl, n_q_blocks, max_k_blocks)`` int32 row of ``tiles`` holding the pattern inside each
            listed block, -1 for a full block; ``None`` when every listed block is full.
        tiles: ``(n_tiles, block_q, block_k)`` bool distinct partial-block patterns (pairs outside ``L x S``
            are True: the kernels mask the sequence bounds themselves); ``None`` with ``tile_ids``.
        block_q, block_k: block sizes in tokens; L, S: query and key lengths.
    """

    indices: Tensor
    counts: Tensor
    tile_ids: Tensor | None
    tiles: Tensor | None
    block_q: int
    block_k: int
    L: int
    S: int

    @property
    def n_q_blocks(self) -> int:
        return self.indices.shape[2]

    @property
    def n_k_blocks(self) -> int:
        return -(-self.S // self.block_k)

    @property
    def density(self) -> float:
        """Fraction of (query block, key block) pairs that are listed."""
        return float(self.counts.sum()) / (self.counts.numel() * self.n_k_blocks)

    @property
    def n_partial(self) -> int:
        """Number of listed blocks that need an element mask."""
        if self.tile_ids is None:
            return 0
        listed = torch.arange(self.indices.shape[-1], device=self.indices.device) < self.counts[..., None]
        return int(((self.tile_ids >= 0) & listed).sum())

    def block_tiles(self) -> Tensor:
        """The pattern inside every listed block, ``(Bl, Hl, n_q_blocks, max_k_blocks, block_q, block_k)`` bool."""
        shape = (*self.indices.shape, self.block_q, self.block_k)
        if self.tile_ids is None:
            return torch.ones(shape, dtype=torch.bool, device=self.indices.device)
        assert self.tiles is not None  # given together with tile_ids
        full = torch.ones(1, self.block_q, self.block_k, dtype=torch.bool, device=self.indices.device)
        table = torch.cat([full, self.tiles.to(full.device)])  # row 0: full block
        return table[self.tile_ids.long() + 1]

    def dense(self) -> Tensor:
        """The attended (query, key) pairs as ``(Bl, Hl, L, S)`` bool (tests and small inputs only)."""
        Bl, Hl, nq, K = self.indices.shape
        bq, bk = self.block_q, self.block_k
        nk = self.n_k_blocks
        blocks = torch.zeros(Bl, Hl, nq, nk, bq, bk, dtype=torch.int32, device=self.indices.device)
        valid = torch.arange(K, device=self.indices.device) < self.counts[..., None]  # (Bl, Hl, nq, K)
        tiles = (self.block_tiles() & valid[..., None, None]).to(torch.int32)
        b, h, i, _ = torch.meshgrid(
            *(torch.arange(n, device=blocks.device) for n in (Bl, Hl, nq, K)), indexing="ij"
        )
        # blocks[b, h, i, kb] += tiles[b, h, i, j] for every listed (i, j); padding entries add zeros
        blocks.index_put_((b, h, i, self.indices.long()), tiles, accumulate=True)
        out = blocks.permute(0, 1, 2, 4, 3, 5) > 0  # (Bl, Hl, nq, bq, nk, bk)
        out = out.reshape(Bl, Hl, nq * bq, nk * bk)
        return out[:, :, : self.L, : self.S]

    def transposed(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per key block, the query blocks that list it: ``(q_blocks, slots, counts)``.

        ``q_blocks`` and ``slots`` are ``(Bl, Hl, n_k_blocks, max_q_blocks)`` int32 (``slots`` is the position
        of the key block in that query block's list, to find its tile); ``counts`` is ``(Bl, Hl, n_k_blocks)``.
        Used by the backward pass that accumulates dK/dV one key block at a time.
        """
        cached = getattr(self, "_transposed", None)
        if cached is not None:
            return cached
        Bl, Hl, nq, K = self.indices.shape
        nk = self.n_k_blocks
        dev = self.indices.device
        valid = torch.arange(K, device=dev) < self.counts[..., None]
        b, h, i, j = (t[valid] for t in torch.meshgrid(
            *(torch.arange(n, device=dev) for n in (Bl, Hl, nq, K)), indexing="ij"))  # fmt: skip
        kb = self.indices.long()[valid]
        group = (b * Hl + h) * nk + kb  # one group per (b, h, key block)
        order = torch.argsort(group * nq + i, stable=True)
        group, i, j = group[order], i[order], j[order]
        counts = torch.bincount(group, minlength=Bl * Hl * nk)
        width = max(int(counts.max()) if counts.numel() else 0, 1)
        start = torch.cumsum(counts, 0) - counts
        pos = torch.arange(group.numel(), device=dev) - start[group]
        q_blocks = torch.zeros(Bl * Hl * nk, width, dtype=torch.int32, device=dev)
        slots = torch.zeros_like(q_blocks)
        q_blocks[group, pos] = i.to(torch.int32)
        slots[group, pos] = j.to(torch.int32)
        out = (
            q_blocks.view(Bl, Hl, nk, width),
            slots.view(Bl, Hl, nk, width),
            counts.view(Bl, Hl, nk).to(torch.int32),
        )
        self._transposed = out
        return out


def _tile_coords(indices: Tensor, block_q: int, block_k: int, q_block0: int = 0) -> tuple[Tensor, Tensor]:
    """Token coordinates of listed blocks: ``q (1, 1, nq, 1, bq, 1)`` and ``k (Bl, Hl, nq, K, 1, bk)``.

    ``indices`` holds the lists of query blocks ``q_block0, q_block0 + 1, ...``.
    """
    dev = indices.device
    qb = torch.arange(q_block0, q_block0 + indices.shape[2], device=dev)
    q = (qb[:, None] * block_q + torch.arange(block_q, device=dev)).view(1, 1, -1, 1, block_q, 1)
    k = indices.long()[..., None, None] * block_k + torch.arange(block_k, device=dev).view(1, block_k)
    return q, k


TileFn = Callable[[int, int, Tensor, Tensor], Tensor]


def _tiled(
    indices: Tensor, counts: Tensor, tile_fn: TileFn, block_q: int, block_k: int, L: int, S: int
) -> TiledLayout:
    """Build a :class:`TiledLayout`, evaluating the pattern a few query blocks at a time.

    ``tile_fn(i0, i1, q, k)`` gives the pattern of the listed blocks of query blocks ``i0:i1`` as a bool tensor
    broadcastable to ``(Bl, Hl, i1 - i0, K, block_q, block_k)``, where ``q``/``k`` are those blocks' token
    coordinates clamped to ``L - 1``/``S - 1`` (so table lookups stay in range). Only the partial blocks'
    distinct patterns are kept.
    """
    indices, counts = indices.to(torch.int32).contiguous(), counts.to(torch.int32).contiguous()
    Bl, Hl, nq, K = indices.shape
    dev = indices.device
    step = max(1, (1 << 24) // max(1, Bl * Hl * K * block_q * block_k))  # ~16M pattern elements at a time
    ids = torch.full(indices.shape, -1, dtype=torch.int64, device=dev)
    tables: list[Tensor] = []
    n_rows = 0
    for i0 in range(0, nq, step):
        i1 = min(nq, i0 + step)
        q, k = _tile_coords(indices[:, :, i0:i1], block_q, block_k, i0)
        tiles = tile_fn(i0, i1, q.clamp(max=L - 1), k.clamp(max=S - 1))
        tiles = (tiles | (q >= L) | (k >= S)).expand(Bl, Hl, i1 - i0, K, block_q, block_k)
        listed = torch.arange(K, device=dev) < counts[:, :, i0:i1, None]
        partial = listed & ~tiles.flatten(-2).all(-1)  # (Bl, Hl, i1 - i0, K)
        if bool(partial.any()):
            table, inverse = torch.unique(tiles[partial], dim=0, return_inverse=True)
            ids[:, :, i0:i1][partial] = inverse + n_rows
            tables.append(table)
            n_rows += table.shape[0]
    if not tables:
        return TiledLayout(indices, counts, None, None, block_q, block_k, L, S)
    # Chunks may repeat each other's tiles: one more pass over the (small) concatenated table.
    table, inverse = torch.unique(torch.cat(tables), dim=0, return_inverse=True)
    tile_ids = torch.where(ids >= 0, inverse[ids.clamp(min=0)], -1).to(torch.int32).contiguous()
    return TiledLayout(indices, counts, tile_ids, table.contiguous(), block_q, block_k, L, S)


def tiled_layout_from_mask_mod(
    mask_mod: MaskMod,
    H: int,
    L: int,
    S: int,
    block_q: int,
    block_k: int,
    *,
    block_mask: Tensor | None = None,
    device: torch.device | None = None,
) -> TiledLayout:
    """Layout of a FlexAttention-style ``mask_mod`` (shared by all heads when it ignores ``h``).

    ``block_mask`` (``(H, nq, nk)`` bool, e.g. a variant's closed-form block rule) skips the exact block scan.
    The tiles are ``mask_mod`` evaluated on the listed blocks only.
    """
    if block_mask is None:
        block_mask = block_mask_from_mask_mod(mask_mod, H, L, S, block_q, block_k, device=device)
    lay = layout_from_block_mask(block_mask, block_q, block_k)
    indices, counts = lay.indices[None], lay.counts[None]  # (1, H, nq, K)
    h = torch.arange(indices.shape[1], device=indices.device).view(1, -1, 1, 1, 1, 1)
    return _tiled(indices, counts, lambda i0, i1, q, k: mask_mod(None, h, q, k), block_q, block_k, L, S)


def tiled_layout_from_pattern(pattern: Tensor, block_q: int, block_k: int) -> TiledLayout:
    """Layout of an explicit ``(Bl, Hl, L, S)`` bool pattern (small inputs, tests)."""
    Bl, Hl, L, S = pattern.shape
    nq, nk = -(-L // block_q), -(-S // block_k)
    padded = torch.nn.functional.pad(pattern, (0, nk * block_k - S, 0, nq * block_q - L))
    tiles_all = padded.view(Bl, Hl, nq, block_q, nk, block_k).permute(0, 1, 2, 4, 3, 5)  # (Bl,Hl,nq,nk,bq,bk)
    block_mask = tiles_all.flatten(-2).any(-1)  # (Bl, Hl, nq, nk)
    lay = layout_from_block_mask(block_mask.view(Bl * Hl, nq, nk), block_q, block_k)
    indices = lay.indices.view(Bl, Hl, nq, -1)
    counts = lay.counts.view(Bl, Hl, nq)

    def tile_fn(i0: int, i1: int, q: Tensor, k: Tensor) -> Tensor:
        idx = indices[:, :, i0:i1, :, None, None].expand(-1, -1, -1, -1, block_q, block_k)
        return torch.gather(tiles_all[:, :, i0:i1], 3, idx)

    return _tiled(indices, counts, tile_fn, block_q, block_k, L, S)


def tiled_layout_from_key_lists(
    key_indices: Tensor, valid: Tensor, S: int, block_q: int, block_k: int
) -> TiledLayout:
    """Layout of per-query key lists (e.g. DMA's top-w keys): ``key_indices, valid (B, H, L, w)``.

    Never builds an ``L x S`` tensor: blocks are found from the listed keys and the tiles are filled by
    scattering each query's keys into its query block's listed key blocks.
    """
    B, H, L, w = key_indices.shape
    nq, nk = -(-L // block_q), -(-S // block_k)
    dev = key_indices.device
    pad = nq * block_q - L
    kidx = torch.nn.functional.pad(key_indices, (0, 0, 0, pad)).view(B, H, nq, block_q * w).long()
    kval = torch.nn.functional.pad(valid, (0, 0, 0, pad)).view(B, H, nq, block_q * w)
    kblk = kidx // block_k
    hits = torch.zeros(B, H, nq, nk, dtype=torch.int32, device=dev).scatter_add_(
        -1, kblk, kval.to(torch.int32)
    )
    lay = layout_from_block_mask((hits > 0).view(B * H, nq, nk), block_q, block_k)
    indices, counts = lay.indices.view(B, H, nq, -1), lay.counts.view(B, H, nq)
    K = indices.shape[-1]
    listed = torch.arange(K, device=dev) < counts[..., None]
    # slot of every key block in its query block's list; padding entries go to a dump column (nk)
    slot_of = torch.full((B, H, nq, nk + 1), -1, dtype=torch.long, device=dev)
    slot_of.scatter_(
        -1, torch.where(listed, indices.long(), nk), torch.arange(K, device=dev).expand(B, H, nq, K)
    )
    slot = torch.gather(slot_of[..., :nk], -1, kblk)  # (B, H, nq, bq * w)
    ok = kval & (slot >= 0)
    q_local = torch.arange(block_q * w, device=dev) // w  # entry r * w + c belongs to query row r
    flat = (slot.clamp(min=0) * block_q + q_local) * block_k + kidx % block_k

    def tile_fn(i0: int, i1: int, q: Tensor, k: Tensor) -> Tensor:
        hit = torch.zeros(B, H, i1 - i0, K * block_q * block_k, dtype=torch.int32, device=dev)
        hit.scatter_add_(
            -1, torch.where(ok[:, :, i0:i1], flat[:, :, i0:i1], 0), ok[:, :, i0:i1].to(torch.int32)
        )
        return (hit > 0).view(B, H, i1 - i0, K, block_q, block_k)

    return _tiled(indices, counts, tile_fn, block_q, block_k, L, S)


def dense_tiled_layout(
    L: int, S: int, block_q: int, block_k: int, *, causal: bool = False, device: torch.device | None = None
) -> TiledLayout:
    """Every key block for every query block (bottom-right causal: only blocks on or below the diagonal).

    The kernel applies the causal rule element-wise itself, so the tiles are left out.
    """
    nq, nk = -(-L // block_q), -(-S // block_k)
    if causal:
        q_hi = (torch.arange(nq, device=device) + 1) * block_q - 1 + (S - L)
        k_lo = torch.arange(nk, device=device) * block_k
        block_mask = (k_lo[None, :] <= q_hi[:, None])[None]
    else:
        block_mask = torch.ones(1, nq, nk, dtype=torch.bool, device=device)
    lay = layout_from_block_mask(block_mask, block_q, block_k)
    return TiledLayout(
        lay.indices[None].to(torch.int32).contiguous(), lay.counts[None].to(torch.int32).contiguous(),
        None, None, block_q, block_k, L, S,
    )  # fmt: skip
