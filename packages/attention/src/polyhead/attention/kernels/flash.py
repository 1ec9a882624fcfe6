"""Block-sparse FlashAttention-2 in Triton: forward, backward (dQ, dK/dV, d bias) and a fused output gate.

Dao 2023, "FlashAttention-2: Faster Attention with Better Parallelism and Work Partitioning"
(arXiv:2307.08691): one program per (query block, batch x head) streams the key blocks listed for it in a
:class:`~polyhead.attention.layouts.TiledLayout` with an online softmax (base-2 exponent, fp32 state), so the
``L x S`` score matrix never exists. Inside a listed block the exact pattern comes from the layout's tiles,
the key-padding mask, the (bottom-right aligned) causal rule and the sequence bounds. An additive bias
(``(B|1, H|1, L|1, S)``, any broadcast) is read only for the listed blocks; its gradient is accumulated with
atomics into a float32 buffer of the bias's own shape. GQA maps query head ``h`` to key/value head
``h // (H / Hkv)``. The per-head output gate (Mixture-of-Head weighting) multiplies the normalised output in
the epilogue; with a gate the ungated output is kept for the backward pass (dgate = rowsum(dO * O_ungated)).

Backward follows FlashAttention-2 (Dao 2023, section 3.1): a pre-pass kernel computes ``delta = rowsum(dO_u *
O_u)`` (and, with a gate, ``dgate`` and the ungated ``dO_u``); one program per query tile computes dQ (and d
bias) over the listed key blocks; one program per key tile and key/value head computes dK and dV over the
query blocks that list it (the layout walked transposed), looping over the query heads of the GQA group, with
the scores formed transposed (keys x queries, as in triton's fused-attention tutorial) so that no computed
register tile is transposed before a product. Scores are recomputed from the saved log-sum-exp. How this
differs from the paper's kernels: block-sparse layouts with partial tiles, the bias gradient, the gate, and
per-architecture tiles: 64-row wgmma tiles on sm_90, smaller mma.sync tiles on sm_80, where register pressure
allows nothing larger without spills; each kernel times its candidate settings once per shape class on the
GPU and caches the fastest (:func:`launch_configs`, :func:`tuned_choices`).

This module imports triton; import it only through :mod:`polyhead.attention.kernels`, which checks first.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.errors import OutOfResources

from polyhead.attention.layouts import TiledLayout

LOG2E = 1.4426950408889634


@triton.jit
def _mask(
    s, qi, ki, b, h, L, S, causal_shift, j,
    Bias, stride_bb, stride_bh, stride_bm, stride_bn,
    Kpm, stride_mb,
    tid_ptr, Tile,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, HAS_TILE: tl.constexpr, IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    """Bias and mask of a tile of scores ``s`` (base-2 units) -> (scores, -inf where not attended; the mask).

    ``qi`` and ``ki`` are the query and key indices as broadcastable 2-D grids: ``(M, 1)`` and ``(1, N)``
    for a ``(queries, keys)`` tile, ``(1, M)`` and ``(N, 1)`` for the transposed ``(keys, queries)`` tile of
    the dK/dV kernel, so one function serves both orientations.
    """
    valid = (ki < S) & (qi < L)
    if HAS_BIAS:
        bptr = Bias + b * stride_bb + h * stride_bh + qi * stride_bm + ki * stride_bn
        s += tl.load(bptr, mask=valid, other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_KPM:
        keep = tl.load(Kpm + b * stride_mb + ki, mask=ki < S, other=0)
        valid = valid & (keep != 0)
    if IS_CAUSAL:
        valid = valid & (ki <= qi + causal_shift)
    if HAS_TILE:
        # the listed block's row in the table of distinct partial tiles; -1 = full block (nothing loaded)
        tid = tl.load(tid_ptr + j).to(tl.int64)
        # position inside the layout block (the kernels work on sub-tiles of it)
        in_tile = (qi % BLOCK_M) * BLOCK_N + (ki % BLOCK_N)
        t = tl.load(Tile + tid * (BLOCK_M * BLOCK_N) + in_tile, mask=(in_tile >= 0) & (tid >= 0), other=1)
        valid = valid & (t != 0)
    s = tl.where(valid, s, float("-inf"))
    return s, valid


@triton.jit
def _fwd_kernel(
    Q, K, V, Out, OU, LSE, Bias, Kpm, Gate, Idx, Cnt, TileId, Tile,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    stride_bb, stride_bh, stride_bm, stride_bn,
    stride_mb,
    stride_gb, stride_gh,
    stride_ib, stride_ih, stride_iq,
    stride_cb, stride_ch,
    H, GROUP, L, S, causal_shift, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, HAS_GATE: tl.constexpr, HAS_TILE: tl.constexpr,
    IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, SUB_N: tl.constexpr,
    SUB_M: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)  # a SUB_M slice of query block qblock
    pid_bh = tl.program_id(1)
    qblock = pid_m // (BLOCK_M // SUB_M)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * SUB_M + tl.arange(0, SUB_M)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d[None, :] < HEAD_DIM
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :],
                mask=(offs_m[:, None] < L) & dmask, other=0.0)  # fmt: skip
    if UPCAST:
        q = q.to(tl.float32)
    m_i = tl.full([SUB_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([SUB_M], dtype=tl.float32)
    acc = tl.zeros([SUB_M, BLOCK_D], dtype=tl.float32)
    cnt = tl.load(Cnt + b * stride_cb + h * stride_ch + qblock)
    idx_ptr = Idx + b * stride_ib + h * stride_ih + qblock * stride_iq
    tid_ptr = TileId + b * stride_ib + h * stride_ih + qblock * stride_iq
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    for j in range(0, cnt):
        kb = tl.load(idx_ptr + j)
        for sub in range(0, BLOCK_N // SUB_N):
            offs_n = kb * BLOCK_N + sub * SUB_N + tl.arange(0, SUB_N)
            kv_mask = (offs_n[:, None] < S) & dmask
            k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
            if UPCAST:
                k, v = k.to(tl.float32), v.to(tl.float32)
            s, valid = _mask(
                tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale,
                offs_m[:, None], offs_n[None, :], b, h, L, S, causal_shift, j,
                Bias, stride_bb, stride_bh, stride_bm, stride_bn, Kpm, stride_mb, tid_ptr, Tile,
                HAS_BIAS, HAS_KPM, HAS_TILE, IS_CAUSAL, BLOCK_M, BLOCK_N,
            )  # fmt: skip
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.math.exp2(s - m_safe[:, None])
            alpha = tl.math.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
    has = l_i > 0
    out = acc / tl.where(has, l_i, 1.0)[:, None]
    lse = tl.where(has, (m_i + tl.math.log2(tl.where(has, l_i, 1.0))) / 1.4426950408889634, float("-inf"))
    row_ok = offs_m < L
    tl.store(LSE + pid_bh * L + offs_m, lse, mask=row_ok)
    o_off = b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    if HAS_GATE:
        tl.store(OU + o_off, out.to(OU.dtype.element_ty), mask=row_ok[:, None] & dmask)
        g = tl.load(Gate + b * stride_gb + h * stride_gh + offs_m, mask=row_ok, other=0.0).to(tl.float32)
        out = out * g[:, None]
    tl.store(Out + o_off, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & dmask)


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, Delta, DQ, Bias, DBias, Kpm, Idx, Cnt, TileId, Tile,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    stride_bb, stride_bh, stride_bm, stride_bn,
    stride_db, stride_dh, stride_dm, stride_dn,
    stride_mb,
    stride_ib, stride_ih, stride_iq,
    stride_cb, stride_ch,
    H, GROUP, L, S, causal_shift, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, BIAS_GRAD: tl.constexpr, HAS_KPM: tl.constexpr, HAS_TILE: tl.constexpr,
    IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, SUB_N: tl.constexpr,
    SUB_M: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)  # a SUB_M slice of query block qblock
    pid_bh = tl.program_id(1)
    qblock = pid_m // (BLOCK_M // SUB_M)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    offs_m = pid_m * SUB_M + tl.arange(0, SUB_M)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d[None, :] < HEAD_DIM
    row_ok = offs_m < L
    q_off = b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :]
    q = tl.load(Q + q_off, mask=row_ok[:, None] & dmask, other=0.0)
    do = tl.load(DO + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
                 mask=row_ok[:, None] & dmask, other=0.0)  # fmt: skip
    if UPCAST:
        q, do = q.to(tl.float32), do.to(tl.float32)
    lse = tl.load(LSE + pid_bh * L + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
    lse = tl.where(lse == float("-inf"), 0.0, lse)
    delta = tl.load(Delta + pid_bh * L + offs_m, mask=row_ok, other=0.0)
    dq = tl.zeros([SUB_M, BLOCK_D], dtype=tl.float32)
    cnt = tl.load(Cnt + b * stride_cb + h * stride_ch + qblock)
    idx_ptr = Idx + b * stride_ib + h * stride_ih + qblock * stride_iq
    tid_ptr = TileId + b * stride_ib + h * stride_ih + qblock * stride_iq
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    for j in range(0, cnt):
        kb = tl.load(idx_ptr + j)
        for sub in range(0, BLOCK_N // SUB_N):
            offs_n = kb * BLOCK_N + sub * SUB_N + tl.arange(0, SUB_N)
            kv_mask = (offs_n[:, None] < S) & dmask
            k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kv_mask, other=0.0)
            v = tl.load(v_base + offs_n[:, None] * stride_vn + offs_d[None, :], mask=kv_mask, other=0.0)
            if UPCAST:
                k, v = k.to(tl.float32), v.to(tl.float32)
            s, valid = _mask(
                tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale,
                offs_m[:, None], offs_n[None, :], b, h, L, S, causal_shift, j,
                Bias, stride_bb, stride_bh, stride_bm, stride_bn, Kpm, stride_mb, tid_ptr, Tile,
                HAS_BIAS, HAS_KPM, HAS_TILE, IS_CAUSAL, BLOCK_M, BLOCK_N,
            )  # fmt: skip
            p = tl.math.exp2(s - lse[:, None])
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])  # d(score) in natural units
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
            if BIAS_GRAD:
                dptr = (
                    DBias
                    + b * stride_db
                    + h * stride_dh
                    + offs_m[:, None] * stride_dm
                    + offs_n[None, :] * stride_dn
                )
                tl.atomic_add(dptr, ds, mask=valid)
    dq = dq * sm_scale
    tl.store(DQ + q_off, dq.to(DQ.dtype.element_ty), mask=row_ok[:, None] & dmask)


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, Delta, DK, DV, Bias, Kpm, TQ, TSlot, TCnt, TileId, Tile,
    stride_qb, stride_qh, stride_qm,
    stride_kb, stride_kh, stride_kn,
    stride_vb, stride_vh, stride_vn,
    stride_ob, stride_oh, stride_om,
    stride_bb, stride_bh, stride_bm, stride_bn,
    stride_mb,
    stride_ib, stride_ih, stride_ik,
    stride_cb, stride_ch,
    stride_tb, stride_th, stride_tq,
    H, HKV, GROUP, L, S, causal_shift, qk_scale, sm_scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_BIAS: tl.constexpr, HAS_KPM: tl.constexpr, HAS_TILE: tl.constexpr,
    IS_CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr, SUB_M: tl.constexpr,
    SUB_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)  # a SUB_N slice of key block pid_n // (BLOCK_N // SUB_N)
    pid_bh = tl.program_id(1)
    b = pid_bh // HKV
    hk = pid_bh % HKV
    kblock = pid_n // (BLOCK_N // SUB_N)
    offs_n = pid_n * SUB_N + tl.arange(0, SUB_N)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d[None, :] < HEAD_DIM
    dmaskT = offs_d[:, None] < HEAD_DIM
    kv_mask = (offs_n[:, None] < S) & dmask
    k_off = b * stride_kb + hk * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :]
    v_off = b * stride_vb + hk * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :]
    k = tl.load(K + k_off, mask=kv_mask, other=0.0)
    v = tl.load(V + v_off, mask=kv_mask, other=0.0)
    if UPCAST:
        k, v = k.to(tl.float32), v.to(tl.float32)
    dk = tl.zeros([SUB_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([SUB_N, BLOCK_D], dtype=tl.float32)
    for g in range(0, GROUP):
        h = hk * GROUP + g
        cnt = tl.load(TCnt + b * stride_cb + h * stride_ch + kblock)
        tq_ptr = TQ + b * stride_ib + h * stride_ih + kblock * stride_ik
        ts_ptr = TSlot + b * stride_ib + h * stride_ih + kblock * stride_ik
        for t in range(0, cnt):
            qb = tl.load(tq_ptr + t)
            j = tl.load(ts_ptr + t)
            for sub in range(0, BLOCK_M // SUB_M):
                offs_m = qb * BLOCK_M + sub * SUB_M + tl.arange(0, SUB_M)
                row_ok = offs_m < L
                # q is loaded transposed, (BLOCK_D, SUB_M): the scores are computed as (keys, queries) so no
                # computed register tile is ever transposed (FlashAttention-2's dK/dV loop, as in triton's
                # fused-attention tutorial)
                qT = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[None, :] * stride_qm + offs_d[:, None],
                             mask=row_ok[None, :] & dmaskT, other=0.0)  # fmt: skip
                do = tl.load(DO + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :],
                             mask=row_ok[:, None] & dmask, other=0.0)  # fmt: skip
                if UPCAST:
                    qT, do = qT.to(tl.float32), do.to(tl.float32)
                lse = tl.load(LSE + (b * H + h) * L + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
                lse = tl.where(lse == float("-inf"), 0.0, lse)
                delta = tl.load(Delta + (b * H + h) * L + offs_m, mask=row_ok, other=0.0)
                tid_ptr = TileId + b * stride_tb + h * stride_th + qb * stride_tq
                sT, validT = _mask(
                    tl.dot(k, qT, input_precision=PRECISION) * qk_scale,
                    offs_m[None, :], offs_n[:, None], b, h, L, S, causal_shift, j,
                    Bias, stride_bb, stride_bh, stride_bm, stride_bn, Kpm, stride_mb, tid_ptr, Tile,
                    HAS_BIAS, HAS_KPM, HAS_TILE, IS_CAUSAL, BLOCK_M, BLOCK_N,
                )  # fmt: skip
                pT = tl.math.exp2(sT - lse[None, :])  # (SUB_N, SUB_M)
                dv += tl.dot(pT.to(do.dtype), do, input_precision=PRECISION)
                dpT = tl.dot(v, tl.trans(do), input_precision=PRECISION)
                dsT = pT * (dpT - delta[None, :])
                dk += tl.dot(dsT.to(qT.dtype), tl.trans(qT), input_precision=PRECISION)
    tl.store(DK + k_off, (dk * sm_scale).to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + v_off, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _bwd_pre_kernel(
    DO, OU, Gate, DOU, Delta, DGate,
    stride_ob, stride_oh, stride_om,
    stride_gb, stride_gh,
    H, L,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, HAS_GATE: tl.constexpr, SUB_M: tl.constexpr,
):  # fmt: skip
    """FlashAttention-2's backward pre-pass: ``delta = rowsum(dO_u * O_u)`` per query, fp32; with a gate also
    ``dgate = rowsum(dO * O_u)`` and the ungated output gradient ``dO_u = dO * gate`` (rounded to the input
    dtype, as the dQ and dK/dV kernels read it)."""
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * SUB_M + tl.arange(0, SUB_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < L
    m2 = row_ok[:, None] & (offs_d[None, :] < HEAD_DIM)
    off = b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :]
    do = tl.load(DO + off, mask=m2, other=0.0).to(tl.float32)
    ou = tl.load(OU + off, mask=m2, other=0.0).to(tl.float32)
    if HAS_GATE:
        tl.store(DGate + pid_bh * L + offs_m, tl.sum(do * ou, 1), mask=row_ok)
        g = tl.load(Gate + b * stride_gb + h * stride_gh + offs_m, mask=row_ok, other=0.0).to(tl.float32)
        do_u = (do * g[:, None]).to(DOU.dtype.element_ty)
        tl.store(DOU + off, do_u, mask=m2)
        do = do_u.to(tl.float32)
    tl.store(Delta + pid_bh * L + offs_m, tl.sum(do * ou, 1), mask=row_ok)


# ---- host side ----------------------------------------------------------------------------------------


def _empty_like(t: Tensor, dtype: torch.dtype | None = None, shape: tuple[int, ...] | None = None) -> Tensor:
    """Every kernel output is allocated here (uninitialised; the tests poison it with NaN)."""
    return torch.empty(shape or t.shape, dtype=dtype or t.dtype, device=t.device)


def _as4d(t: Tensor) -> Tensor:
    return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))


def _strides4(t: Tensor | None) -> tuple[int, int, int, int]:
    return (0, 0, 0, 0) if t is None else tuple(t.stride())  # type: ignore[return-value]


def _layout_args(layout: TiledLayout, B: int, H: int, device: torch.device) -> tuple:
    """Index lists, counts and tile ids (one shape, so one set of strides; 0 where shared) and the tile table."""
    idx, cnt = layout.indices.to(device), layout.counts.to(device)
    s_ib = idx.stride(0) if idx.shape[0] == B else 0
    s_ih = idx.stride(1) if idx.shape[1] == H else 0
    s_cb = cnt.stride(0) if cnt.shape[0] == B else 0
    s_ch = cnt.stride(1) if cnt.shape[1] == H else 0
    if layout.tile_ids is not None and layout.tiles is not None:
        tile_ids = layout.tile_ids.to(device)
        # bool -> int8 is a view (same bytes); the kernels read the table as bytes
        tiles = layout.tiles.to(device).contiguous().view(torch.int8)
    else:
        tile_ids = torch.empty(1, dtype=torch.int32, device=device)
        tiles = torch.empty(1, dtype=torch.int8, device=device)
    return idx, cnt, tile_ids, tiles, (s_ib, s_ih, idx.stride(2)), (s_cb, s_ch)


def _transposed_args(layout: TiledLayout, B: int, H: int, device: torch.device) -> tuple:
    tq, ts, tc = (t.to(device) for t in layout.transposed())
    s_ib = tq.stride(0) if tq.shape[0] == B else 0
    s_ih = tq.stride(1) if tq.shape[1] == H else 0
    s_cb = tc.stride(0) if tc.shape[0] == B else 0
    s_ch = tc.stride(1) if tc.shape[1] == H else 0
    return tq, ts, tc, (s_ib, s_ih, tq.stride(2)), (s_cb, s_ch)


# Candidate launch settings per kernel (the first is the default: the interpreter, CUDA-graph capture and
# devices where timing fails use it); on CUDA the backward times its candidates once per shape class and
# caches the fastest (``_pick``). Every candidate is compiled by the kernel report
# (pipelines/bench/kernel_report.py) for sm_80 and sm_90 with every feature on and has zero spills there.
# The backward follows FlashAttention-2 with per-architecture tiles: on sm_90, 64-row wgmma tiles in dQ
# (64 queries x 64/32 keys) and dK/dV (64 keys x 32/16 queries, scores computed transposed); on sm_80
# (mma.sync keeps operands and accumulators in registers, and the bias/tile/padding masks need their own) the
# largest tiles that compile without spills: dQ 32 x 64/32, dK/dV 64 x 16 (32 x 16 at head dim 128).
# fp32 (3xTF32: three dots per product) keeps 16 x 16 tiles. The forward keeps its single setting.
_BWD_CANDIDATES: dict[tuple[str, bool, bool], list[tuple[int, int, int, int]]] = {
    # (kernel, sm_90 or newer, head dim > 64): [(num_warps, num_stages, SUB_M, SUB_N), ...]
    ("bwd_dq", True, False): [(4, 2, 64, 64), (4, 3, 64, 32)],
    ("bwd_dq", True, True): [(8, 2, 64, 64), (8, 3, 64, 32)],
    ("bwd_dq", False, False): [(8, 3, 32, 64), (4, 3, 32, 32)],
    ("bwd_dq", False, True): [(8, 3, 32, 64), (8, 3, 32, 32)],
    ("bwd_dkdv", True, False): [(8, 2, 32, 64), (8, 2, 16, 64)],
    ("bwd_dkdv", True, True): [(8, 2, 32, 64), (8, 2, 16, 64)],
    ("bwd_dkdv", False, False): [(8, 1, 16, 64), (8, 2, 16, 32)],
    ("bwd_dkdv", False, True): [(8, 2, 16, 32), (8, 1, 16, 32)],
}


def launch_configs(
    kernel: str, dtype: torch.dtype, block_m: int, block_n: int, head_dim: int, arch: int = 80
) -> list[dict[str, int]]:
    """Candidate ``num_warps``/``num_stages``/sub-tile settings of ``kernel`` ("fwd", "bwd_pre", "bwd_dq",
    "bwd_dkdv") for this dtype, layout block, head dim and compute capability (``arch``, e.g. 90)."""
    if kernel not in ("fwd", "bwd_pre", "bwd_dq", "bwd_dkdv"):
        raise ValueError(f"unknown kernel {kernel!r}")
    wide = head_dim > 64
    if kernel == "bwd_pre":
        cands = [{"num_warps": 4, "num_stages": 1, "SUB_M": 64}]
    elif dtype == torch.float32:
        stages = {"fwd": 2, "bwd_dq": 1 if head_dim <= 16 else 3, "bwd_dkdv": 1 if head_dim <= 16 else 2}[
            kernel
        ]
        cands = [{"num_warps": 4, "num_stages": stages, "SUB_M": 16, "SUB_N": 16}]
    elif kernel == "fwd":
        cands = [{"num_warps": 8 if wide else 4, "num_stages": 3, "SUB_M": 64, "SUB_N": 64}]
    else:
        cands = [
            {"num_warps": w, "num_stages": st, "SUB_M": sm, "SUB_N": sn}
            for w, st, sm, sn in _BWD_CANDIDATES[(kernel, arch >= 90, wide)]
        ]
    out = []
    for c in cands:
        c = dict(c)
        c["SUB_M"] = min(c["SUB_M"], block_m)
        if "SUB_N" in c:
            c["SUB_N"] = min(c["SUB_N"], block_n)
        # Where the kernel report found spills after the tiles shrank or the sub-tile loop grew (ptxas's
        # allocation is sensitive to both): sm_80 dQ on tiles of <= 32 x 32 spilled 8 B with 8 warps at
        # head dims <= 64 (and 24 B with 4 warps at 128); sm_90 dQ on layout blocks of 128 spilled 292 B
        # with 4 warps and 2 stages, not with 8 warps.
        if kernel == "bwd_dq" and arch < 90 and head_dim <= 64 and c["SUB_M"] * c["SUB_N"] <= 1024:
            c["num_warps"] = 4
        if kernel == "bwd_dq" and arch >= 90 and dtype != torch.float32 and block_n > c["SUB_N"] == 64:
            c["num_warps"] = 8
        if c not in out:
            out.append(c)
    return out


def launch_config(
    kernel: str, dtype: torch.dtype, block_m: int, block_n: int, head_dim: int, arch: int = 80
) -> dict[str, int]:
    """The default (first) candidate of :func:`launch_configs`."""
    return dict(launch_configs(kernel, dtype, block_m, block_n, head_dim, arch)[0])


# (kernel, arch, dtype, BLOCK_D, block_m, block_n, features, length bucket) -> chosen settings
_TUNED: dict[tuple, dict[str, int]] = {}
_TUNE_TIMES: dict[tuple, list[tuple[dict[str, int], float]]] = {}


def tuned_choices() -> list[dict]:
    """What the autotuner chose so far in this process, with each candidate's time (ms): for reports."""
    return [
        {"key": [str(x) for x in key], "chosen": _TUNED[key], "timed_ms": [[c, t] for c, t in times]}
        for key, times in _TUNE_TIMES.items()
    ]


def _pick(key: tuple, cands: list[dict[str, int]], run, device: torch.device) -> dict[str, int]:
    """The cached choice for ``key``, else time every candidate once (CUDA) and cache the fastest.

    ``run(cfg)`` launches the kernel with one candidate; it must be safe to repeat (the caller resets any
    buffer the kernel accumulates into after tuning).
    """
    if key in _TUNED:
        return _TUNED[key]
    if len(cands) == 1 or device.type != "cuda" or torch.cuda.is_current_stream_capturing():
        return cands[0]
    from triton.testing import do_bench

    times = []
    for c in cands:
        try:
            times.append((c, float(do_bench(lambda c=c: run(c), warmup=2, rep=10))))
        except OutOfResources:  # e.g. less shared memory than sm_80/sm_90
            continue
    if not times:
        raise RuntimeError(f"no launch setting of {key[0]} fits this device: {cands}")
    best = min(times, key=lambda ct: ct[1])[0]
    _TUNED[key], _TUNE_TIMES[key] = best, times
    return best


def _arch(device: torch.device) -> int:
    """Compute capability as an int (90 for sm_90); 80 off the GPU (the interpreter ignores launch settings)."""
    if device.type != "cuda":
        return 80
    major, minor = torch.cuda.get_device_capability(device)
    return 10 * major + minor


def _upcast(dtype: torch.dtype) -> bool:
    # triton 3.6's interpreter multiplies bfloat16 operands of tl.dot wrongly (errors ~1e10 on a 16 x 16
    # product of unit normals): under the interpreter, bf16 tiles are upcast to fp32 before the dots.
    return dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET", "0") == "1"


def _precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision for fp32 operands (16-bit operands ignore it).

    fp32 inputs: 3xTF32 on the GPU (tensor cores, about fp32 accuracy; plain TF32 lost to torch's fp32
    reference by 3x on an H100, and ieee FMA dots spill registers at these tiles); exact ieee dots under the
    interpreter.
    """
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "ieee"
    return "tf32x3"


class FlashBlockSparse(torch.autograd.Function):
    """Autograd wrapper: inputs as validated by :func:`polyhead.attention.kernels.attention`."""

    @staticmethod
    def forward(ctx, q, k, v, bias, kpm, gate, layout, causal, scale):  # type: ignore[override]
        B, H, L, D = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        bias4 = None if bias is None else _as4d(bias).expand(B, H, L, S)  # a view: stride 0 where broadcast
        bm, bn = layout.block_q, layout.block_k
        o = _empty_like(q)
        ou = _empty_like(q) if gate is not None else o
        lse = _empty_like(q, torch.float32, (B, H, L))
        idx, cnt, tile_ids, tiles, s_i, s_c = _layout_args(layout, B, H, q.device)
        fwd_cfg = launch_config("fwd", q.dtype, bm, bn, D, _arch(q.device))
        grid = (layout.n_q_blocks * (bm // fwd_cfg["SUB_M"]), B * H)
        dummy = q.new_empty(1)
        _fwd_kernel[grid](
            q, k, v, o, ou, lse,
            bias4 if bias is not None else dummy, kpm if kpm is not None else dummy,
            gate if gate is not None else dummy, idx, cnt, tile_ids, tiles,
            q.stride(0), q.stride(1), q.stride(2),
            k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2),
            o.stride(0), o.stride(1), o.stride(2),
            *_strides4(bias4),
            kpm.stride(0) if kpm is not None else 0,
            *(gate.stride()[:2] if gate is not None else (0, 0)),
            *s_i, *s_c,
            H, H // Hkv, L, S, S - L, scale * LOG2E,
            HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK_M=bm, BLOCK_N=bn,
            HAS_BIAS=bias is not None, HAS_KPM=kpm is not None, HAS_GATE=gate is not None,
            HAS_TILE=layout.tile_ids is not None, IS_CAUSAL=causal, PRECISION=_precision(q.dtype), UPCAST=_upcast(q.dtype),
            **fwd_cfg,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, bias, kpm, gate, ou, lse)
        ctx.layout, ctx.causal, ctx.scale = layout, causal, scale
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    def backward(ctx, do, _dlse):  # type: ignore[override]
        q, k, v, bias, kpm, gate, ou, lse = ctx.saved_tensors
        layout, causal, scale = ctx.layout, ctx.causal, ctx.scale
        B, H, L, D = q.shape
        Hkv, S = k.shape[1], k.shape[2]
        bm, bn = layout.block_q, layout.block_k
        arch = _arch(q.device)
        BLOCK_D = max(16, triton.next_power_of_2(D))
        do = do.contiguous()
        dummy = q.new_empty(1)
        # pre-pass: delta (and, with a gate, dgate and the ungated dO); ou and do are both contiguous
        delta = _empty_like(q, torch.float32, (B, H, L))
        dgate = _empty_like(q, torch.float32, (B, H, L)) if gate is not None else None
        do_u = _empty_like(q) if gate is not None else do
        pre_cfg = launch_config("bwd_pre", q.dtype, bm, bn, D, arch)
        _bwd_pre_kernel[(triton.cdiv(L, pre_cfg["SUB_M"]), B * H)](
            do, ou, gate if gate is not None else dummy, do_u, delta, dgate if gate is not None else dummy,
            do.stride(0), do.stride(1), do.stride(2),
            *(gate.stride()[:2] if gate is not None else (0, 0)),
            H, L, HEAD_DIM=D, BLOCK_D=BLOCK_D, HAS_GATE=gate is not None, **pre_cfg,
        )  # fmt: skip
        bias4 = None if bias is None else _as4d(bias).expand(B, H, L, S)
        bias_grad = bias is not None and ctx.needs_input_grad[3]
        if bias_grad:
            # float32 buffer of the bias's own shape; its broadcast view has stride 0 where the bias is
            # shared, so the kernel's atomic adds sum over those dimensions.
            dbias_buf = torch.zeros(_as4d(bias).shape, device=q.device, dtype=torch.float32)
            dbias = dbias_buf.expand(B, H, L, S)
        dq, dk, dv = _empty_like(q), _empty_like(k), _empty_like(v)
        idx, cnt, tile_ids, tiles, s_i, s_c = _layout_args(layout, B, H, q.device)
        common = dict(
            HEAD_DIM=D, BLOCK_D=BLOCK_D, BLOCK_M=bm, BLOCK_N=bn,
            HAS_BIAS=bias is not None, HAS_KPM=kpm is not None, HAS_TILE=layout.tile_ids is not None,
            IS_CAUSAL=causal, PRECISION=_precision(q.dtype), UPCAST=_upcast(q.dtype),
        )  # fmt: skip
        # autotuning key: what changes the best tiles (features, GQA, the length's power of two)
        key = (arch, q.dtype, BLOCK_D, bm, bn, bias is not None, kpm is not None,
               layout.tile_ids is not None, causal, H // Hkv, triton.next_power_of_2(max(L, S)))  # fmt: skip

        def run_dq(cfg: dict[str, int]) -> None:
            _bwd_dq_kernel[(layout.n_q_blocks * (bm // cfg["SUB_M"]), B * H)](
                q, k, v, do_u, lse, delta, dq,
                bias4 if bias is not None else dummy, dbias if bias_grad else dummy,
                kpm if kpm is not None else dummy, idx, cnt, tile_ids, tiles,
                q.stride(0), q.stride(1), q.stride(2),
                k.stride(0), k.stride(1), k.stride(2),
                v.stride(0), v.stride(1), v.stride(2),
                do_u.stride(0), do_u.stride(1), do_u.stride(2),
                *_strides4(bias4), *_strides4(dbias if bias_grad else None),
                kpm.stride(0) if kpm is not None else 0,
                *s_i, *s_c,
                H, H // Hkv, L, S, S - L, scale * LOG2E, scale,
                BIAS_GRAD=bias_grad, **common, **cfg,
            )  # fmt: skip

        dq_cands = launch_configs("bwd_dq", q.dtype, bm, bn, D, arch)
        tuned = ("bwd_dq", *key) not in _TUNED and len(dq_cands) > 1
        dq_cfg = _pick(("bwd_dq", *key), dq_cands, run_dq, q.device)
        if bias_grad and tuned and q.is_cuda:
            dbias_buf.zero_()  # the timing runs added into it
        run_dq(dq_cfg)
        tq, ts, tc, s_ti, s_tc = _transposed_args(layout, B, H, q.device)

        def run_dkdv(cfg: dict[str, int]) -> None:
            _bwd_dkdv_kernel[(layout.n_k_blocks * (bn // cfg["SUB_N"]), B * Hkv)](
                q, k, v, do_u, lse, delta, dk, dv,
                bias4 if bias is not None else dummy, kpm if kpm is not None else dummy,
                tq, ts, tc, tile_ids, tiles,
                q.stride(0), q.stride(1), q.stride(2),
                k.stride(0), k.stride(1), k.stride(2),
                v.stride(0), v.stride(1), v.stride(2),
                do_u.stride(0), do_u.stride(1), do_u.stride(2),
                *_strides4(bias4),
                kpm.stride(0) if kpm is not None else 0,
                *s_ti, *s_tc, *s_i,
                H, Hkv, H // Hkv, L, S, S - L, scale * LOG2E, scale,
                **common, **cfg,
            )  # fmt: skip

        dkdv_cfg = _pick(
            ("bwd_dkdv", *key), launch_configs("bwd_dkdv", q.dtype, bm, bn, D, arch), run_dkdv, q.device
        )
        run_dkdv(dkdv_cfg)
        dbias_out = dbias_buf.reshape(bias.shape).to(bias.dtype) if bias_grad else None
        dgate_out = dgate.to(gate.dtype) if gate is not None else None
        return dq, dk, dv, dbias_out, None, dgate_out, None, None, None


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: TiledLayout,
    *,
    bias: Tensor | None = None,
    key_padding: Tensor | None = None,
    gate: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the kernels (inputs already validated): q ``(B, H, L, D)``, k/v ``(B, Hkv, S, D)``.

    Returns the output ``(B, H, L, D)`` and the natural log-sum-exp of the attended scores ``(B, H, L)``
    float32 (-inf for a query that sees no key; not differentiable).
    """
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    kpm = None if key_padding is None else key_padding.to(torch.int8).contiguous()
    return FlashBlockSparse.apply(q, k, v, bias, kpm, gate, layout, causal, scale)
