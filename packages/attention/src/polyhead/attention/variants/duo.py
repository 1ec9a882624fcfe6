"""DuoAttention: retrieval heads with a full KV cache, streaming heads with sinks + a recent window.

Xiao et al., "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads"
(ICLR 2025, arXiv:2410.10819; reference mit-han-lab/duo-attention). Every head has a gate
``alpha_h in [0, 1]``. During the short gate optimisation the head output is
``alpha_h * full_attention + (1 - alpha_h) * streaming_attention`` where streaming attention sees only
the first ``sink`` tokens and the ``recent`` most recent ones (paper: 64 and 256); the loss is the MSE to
the full-attention hidden states plus ``0.05 * L1(alpha)`` (:func:`duo_gate_loss`). At deployment
(:meth:`DuoAttention.deploy`) heads with ``alpha > threshold`` become retrieval heads (full KV cache) and
the rest streaming heads, whose cache stays constant in size however long the sequence grows
(:class:`DuoKVCache`, :meth:`DuoAttention.prefill`, :meth:`DuoAttention.step`).

Attention is causal (decoder self-attention). Streaming attention on the ``sdpa`` path gathers only the
sink and window blocks (:func:`polyhead.attention.layouts.block_sparse_attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.layouts import MaskMod, block_sparse_attention, dense_pattern, layout_from_block_mask
from polyhead.attention.registry import register_attention


def streaming_mask_mod(sink: int, recent: int, q_offset: int = 0) -> MaskMod:
    """Causal sinks + recent window: key j visible to query i iff ``j <= i`` and (``j < sink`` or ``i - j < recent``)."""

    def mask_mod(b, h, q_idx, kv_idx):
        qi = q_idx + q_offset
        return (kv_idx <= qi) & ((kv_idx < sink) | (qi - kv_idx < recent))

    return mask_mod


def streaming_block_mask(
    n_q_blocks: int, n_k_blocks: int, block: int, sink: int, recent: int, device: torch.device | None = None
) -> Tensor:
    """``(1, nq, nk)`` bool: blocks holding any visible pair of :func:`streaming_mask_mod` (queries end-aligned)."""
    shift = (n_k_blocks - n_q_blocks) * block
    q_lo = torch.arange(n_q_blocks, device=device)[:, None] * block + shift  # first query token of the block
    q_hi = q_lo + block - 1
    k_lo = torch.arange(n_k_blocks, device=device)[None, :] * block
    k_hi = k_lo + block - 1
    causal = k_lo <= q_hi
    sink_hit = k_lo < sink
    window_hit = k_hi > q_lo - recent  # some key within `recent` of some query of the block
    return (causal & (sink_hit | window_hit))[None]


def duo_gate_loss(
    mixed: Tensor, full: Tensor, alphas: Tensor | list[Tensor], l1_weight: float = 0.05
) -> Tensor:
    """DuoAttention gate objective: ``MSE(mixed, full) + l1_weight * mean |alpha|`` over all gates."""
    a = torch.cat([t.flatten() for t in alphas]) if isinstance(alphas, (list, tuple)) else alphas.flatten()
    return F.mse_loss(mixed, full.detach()) + l1_weight * a.abs().mean()


@dataclass
class DuoKVCache:
    """KV cache of one DuoAttention layer for incremental decoding.

    Retrieval heads keep every key/value; streaming heads keep at most ``sink`` sink tokens and
    ``recent`` recent tokens. Tensors are ``(B, heads_of_that_kind, T, Dh)``.
    """

    retrieval: Tensor
    k_full: Tensor
    v_full: Tensor
    k_sink: Tensor
    v_sink: Tensor
    k_recent: Tensor
    v_recent: Tensor
    length: int

    def nbytes(self, kind: str = "all") -> int:
        """Bytes held: ``all``, ``retrieval`` or ``streaming`` heads."""
        full = self.k_full.nbytes + self.v_full.nbytes
        stream = self.k_sink.nbytes + self.v_sink.nbytes + self.k_recent.nbytes + self.v_recent.nbytes
        return {"all": full + stream, "retrieval": full, "streaming": stream}[kind]


@register_attention("duo")
class DuoAttention(AttentionBase):
    """DuoAttention (causal self-attention).

    Args:
        dim: token width.
        num_heads: heads.
        sink: attention-sink tokens kept by streaming heads (paper: 64).
        recent: recent-window tokens kept by streaming heads (paper: 256).
        block_size: block size of the block-sparse streaming path.
        backend: ``math`` (oracle), ``sdpa``, ``auto``.
        causal: must be True (accepted so that a causal site can pass ``causal=True`` as to any variant).
    """

    supports_cross = False
    supports_causal = True
    supports_bidirectional = False
    retrieval: Tensor  # registered buffer: (num_heads,) bool retrieval-head mask once deployed, else empty

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        sink: int = 64,
        recent: int = 256,
        block_size: int = 64,
        backend: str = "auto",
        causal: bool = True,
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if causal is not True:
            raise ValueError(
                f"DuoAttention is causal only (streaming heads keep past tokens); got causal={causal!r}"
            )
        if sink < 0 or recent < 1 or block_size < 1:
            raise ValueError(
                f"need sink >= 0, recent >= 1, block_size >= 1; got {sink}, {recent}, {block_size}"
            )
        self.sink, self.recent, self.block_size, self.backend = sink, recent, block_size, backend
        self.causal = True
        self.alpha = nn.Parameter(torch.ones(num_heads))  # gates start at 1 (all heads full), as in the paper
        self.register_buffer("retrieval", torch.zeros(0, dtype=torch.bool))  # empty = not deployed
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    @property
    def deployed(self) -> bool:
        return self.retrieval.numel() == self.num_heads

    def deploy(self, threshold: float = 0.5) -> Tensor:
        """Fix retrieval heads (``alpha > threshold``) and streaming heads; returns the retrieval mask."""
        self.retrieval = (self.alpha.detach() > threshold).to(self.retrieval.device)
        return self.retrieval

    def gates(self) -> Tensor:
        """Per-head weight of full attention: the clamped alphas, or 0/1 once deployed."""
        if self.deployed:
            return self.retrieval.to(self.alpha.dtype)
        return self.alpha.clamp(0.0, 1.0)

    def explicit_streaming_pattern(self, L: int, device: torch.device | None = None) -> Tensor:
        """``(L, L)`` bool of the streaming heads' pattern."""
        return dense_pattern(streaming_mask_mod(self.sink, self.recent), 1, L, L, device)[0]

    def _streaming(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        B, H, L, _ = q.shape
        bs = self.block_size
        n = -(-L // bs)
        layout = layout_from_block_mask(
            streaming_block_mask(n, n, bs, self.sink, self.recent, q.device).expand(H, n, n).contiguous(),
            bs,
            bs,
        )
        return block_sparse_attention(
            q,
            k,
            v,
            layout,
            streaming_mask_mod(self.sink, self.recent),
            key_padding=mask,
            backend=self.backend,
        )

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        q, k, v = self.split_heads(self.qkv(x), 3)
        g = self.gates()[None, :, None, None]
        w = None
        if need_weights or self.backend == "math":
            o_full, w_full = attention(q, k, v, mask=mask, causal=True, backend="math", need_weights=True)
            keep = self.explicit_streaming_pattern(L, x.device)[None, None]
            if mask is not None:
                keep = keep & mask[:, None, None, :]
            o_stream, w_stream = attention(q, k, v, mask=keep, backend="math", need_weights=True)
            w = g * w_full + (1 - g) * w_stream
        else:
            o_full = attention(q, k, v, mask=mask, causal=True, backend=self.backend)
            o_stream = self._streaming(q, k, v, mask)
        o = g * o_full + (1 - g) * o_stream
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)

    # ---- incremental decoding -------------------------------------------------------------------
    def _split(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return t[:, self.retrieval], t[:, ~self.retrieval]

    def prefill(self, x: Tensor) -> tuple[Tensor, DuoKVCache]:
        """Run the deployed layer on a prompt ``(B, L, dim)`` and build its cache."""
        if not self.deployed:
            raise ValueError(
                "call deploy(threshold) before decoding: retrieval/streaming heads are not fixed yet"
            )
        out = self(x).output
        B, L, _ = x.shape
        _, k, v = self.split_heads(self.qkv(x), 3)
        kf, ks = self._split(k)
        vf, vs = self._split(v)
        n_sink = min(self.sink, L)
        start = max(n_sink, L - (self.recent - 1))  # the next query (position L) sees L - j < recent
        cache = DuoKVCache(
            self.retrieval,
            kf,
            vf,
            ks[:, :, :n_sink],
            vs[:, :, :n_sink],
            ks[:, :, start:],
            vs[:, :, start:],
            L,
        )
        return out, cache

    def empty_cache(
        self, batch: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> DuoKVCache:
        if not self.deployed:
            raise ValueError(
                "call deploy(threshold) before decoding: retrieval/streaming heads are not fixed yet"
            )
        dtype = dtype or self.qkv.weight.dtype
        device = device or self.qkv.weight.device
        nr = int(self.retrieval.sum())
        ns = self.num_heads - nr
        z = lambda h: torch.zeros(batch, h, 0, self.head_dim, device=device, dtype=dtype)  # noqa: E731
        return DuoKVCache(self.retrieval, z(nr), z(nr), z(ns), z(ns), z(ns), z(ns), 0)

    def step(self, x_t: Tensor, cache: DuoKVCache) -> tuple[Tensor, DuoKVCache]:
        """Decode one token ``(B, 1, dim)`` against ``cache``; returns ``(output (B, 1, dim), new cache)``."""
        if x_t.dim() != 3 or x_t.shape[1] != 1 or x_t.shape[-1] != self.dim:
            raise ValueError(f"x_t must have shape (B, 1, {self.dim}), got {tuple(x_t.shape)}")
        B = x_t.shape[0]
        q, k, v = self.split_heads(self.qkv(x_t), 3)
        qf, qs = self._split(q)
        kf, ks = self._split(k)
        vf, vs = self._split(v)
        k_full, v_full = torch.cat([cache.k_full, kf], 2), torch.cat([cache.v_full, vf], 2)
        pos = cache.length
        if pos < self.sink:
            k_sink, v_sink = torch.cat([cache.k_sink, ks], 2), torch.cat([cache.v_sink, vs], 2)
            k_recent, v_recent = cache.k_recent, cache.v_recent
        else:
            k_sink, v_sink = cache.k_sink, cache.v_sink
            k_recent = torch.cat([cache.k_recent, ks], 2)[:, :, -self.recent :]
            v_recent = torch.cat([cache.v_recent, vs], 2)[:, :, -self.recent :]
        o = torch.empty(B, self.num_heads, 1, self.head_dim, device=x_t.device, dtype=q.dtype)
        if qf.shape[1]:
            o_full = attention(qf, k_full, v_full, backend=self.backend)
            assert isinstance(o_full, Tensor)  # without need_weights: the output alone
            o[:, self.retrieval] = o_full
        if qs.shape[1]:
            ks_all, vs_all = torch.cat([k_sink, k_recent], 2), torch.cat([v_sink, v_recent], 2)
            o_stream = attention(qs, ks_all, vs_all, backend=self.backend)
            assert isinstance(o_stream, Tensor)
            o[:, ~self.retrieval] = o_stream
        o = self.gate_heads(o).transpose(1, 2).reshape(B, 1, self.dim)
        new = DuoKVCache(self.retrieval, k_full, v_full, k_sink, v_sink, k_recent, v_recent, pos + 1)
        return self.out_proj(o), new
