"""HaloNet blocked local self-attention with halos.

Vaswani et al., "Scaling Local Self-Attention for Parameter Efficient Visual Backbones" (CVPR 2021,
arXiv:2103.12731). The grid is cut into non-overlapping ``b x b`` query blocks; each block attends to the
``(b + 2h)^2`` window around it (the block plus a halo of ``h`` tokens on every side; b = 8, h = 3 in the
paper). Positions are encoded with relative logits ``q . (r_row[dy] + r_col[dx])`` for the key offset
``(dy, dx)`` from the query, as in HaloNet/timm. Keys outside the grid (zero padding) are masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.layouts import recompute_in_backward
from polyhead.attention.registry import register_attention
from polyhead.attention.windows import chunk_ranges, padded_size, row_chunks


def halo_pattern(H: int, W: int, block: int, halo: int, device: torch.device | None = None) -> Tensor:
    """``(L, L)`` bool: key (Y, X) is in the halo window of the block holding query (y, x)."""
    y, x = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    y, x = y.flatten(), x.flatten()
    y0, x0 = (y // block) * block - halo, (x // block) * block - halo  # window origin per query
    win = block + 2 * halo
    ok_y = (y[None, :] >= y0[:, None]) & (y[None, :] < y0[:, None] + win)
    ok_x = (x[None, :] >= x0[:, None]) & (x[None, :] < x0[:, None] + win)
    return ok_y & ok_x


def halo_mask_mod(H: int, W: int, block: int, halo: int):
    """FlexAttention ``mask_mod(b, h, q_idx, kv_idx)`` of :func:`halo_pattern` on row-major tokens."""

    def mask_mod(b, h, q_idx, kv_idx):
        qy, qx = q_idx // W, q_idx % W
        ky, kx = kv_idx // W, kv_idx % W
        y0, x0 = (qy // block) * block - halo, (qx // block) * block - halo
        win = block + 2 * halo
        return (ky >= y0) & (ky < y0 + win) & (kx >= x0) & (kx < x0 + win)

    return mask_mod


@register_attention("halo")
class HaloAttention(AttentionBase):
    """HaloNet attention.

    Args:
        dim: token width.
        num_heads: heads.
        block_size: query block b.
        halo_size: halo h.
        backend: ``math`` (oracle), ``sdpa`` or ``flex`` (per-block windows), ``auto``.
    """

    backends = ("math", "sdpa", "flex")
    supports_cross = False
    needs_shape = True
    example_shape = (16, 16)

    def __init__(
        self, *, dim: int, num_heads: int, block_size: int = 8, halo_size: int = 3, backend: str = "auto"
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if block_size < 1 or halo_size < 0:
            raise ValueError(f"block_size must be >= 1 and halo_size >= 0, got {block_size}, {halo_size}")
        self.block, self.halo, self.backend = block_size, halo_size, backend
        self.win = block_size + 2 * halo_size
        n_rel = 2 * (block_size + halo_size) - 1
        self.rel_row = nn.Parameter(torch.randn(n_rel, self.head_dim) * self.head_dim**-0.5)
        self.rel_col = nn.Parameter(torch.randn(n_rel, self.head_dim) * self.head_dim**-0.5)
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def _rel_logits(self, q: Tensor, idx_row: Tensor, idx_col: Tensor) -> Tensor:
        """``q . (r_row[dy] + r_col[dx])``: q ``(..., Lq, Dh)``, indices ``(Lq, Lk)`` -> ``(..., Lq, Lk)``."""
        lr = torch.matmul(q, self.rel_row.T)  # (..., Lq, n_rel)
        lc = torch.matmul(q, self.rel_col.T)
        shape = (*q.shape[:-1], idx_row.shape[-1])
        return lr.gather(-1, idx_row.expand(shape)) + lc.gather(-1, idx_col.expand(shape))

    def _blocked(self, q: Tensor, kv: Tensor, mask: Tensor | None, Hh: int, Ww: int) -> Tensor:
        """Each ``b x b`` query block against its ``(b + 2h)^2`` window, a few block rows at a time.

        ``q (B, L, C)``, ``kv (B, L, 2C)`` -> ``(B, L, C)``. The projections are zero-padded once (queries to
        whole blocks, keys by the halo on every side); each chunk of block rows unfolds its own windows,
        relative logits and scores, and is recomputed in backward, so memory is ``O(L * dim)`` plus one
        chunk (never the ``(b + 2h)^2 / b^2`` duplicated windows of the whole grid).
        """
        B, L, C = q.shape
        Nh, Dh, b, h, win = self.num_heads, self.head_dim, self.block, self.halo, self.win
        Wp = padded_size(Ww, b)
        nby, nbx = -(-Hh // b), Wp // b
        n = len(chunk_ranges(nby, B * nbx * Nh * b * b * win * win))
        rows = -(-nby // n)  # block rows per chunk (the grid is padded to n * rows block rows)
        Hp = n * rows * b
        qg = q.view(B, Hh, Ww, C)
        if (Hp, Wp) != (Hh, Ww):
            qg = F.pad(qg, (0, 0, 0, Wp - Ww, 0, Hp - Hh))
        kvg = F.pad(kv.view(B, Hh, Ww, 2 * C), (0, 0, h, Wp - Ww + h, h, Hp - Hh + h))  # zeros outside
        ok = (
            torch.ones(B, Hh, Ww, dtype=torch.bool, device=q.device) if mask is None else mask.view(B, Hh, Ww)
        )
        ok = F.pad(ok, (h, Wp - Ww + h, h, Hp - Hh + h), value=False)  # (B, Hp + 2h, Wp + 2h)

        eye = torch.eye(win, dtype=q.dtype, device=q.device)
        onehot = torch.cat(
            [eye.repeat_interleave(win, 0), eye.repeat(win, 1)], dim=-1
        )  # (win*win, 2 win): e_Y, e_X
        rel = torch.arange(win, device=q.device)[None, :] - torch.arange(b, device=q.device)[:, None] + b - 1

        def chunk(qc: Tensor, kvc: Tensor, okc: Tensor, rel_row: Tensor, rel_col: Tensor) -> Tensor:
            # Relative logits as extra dot-product dimensions: q . r_row[Y - y + b - 1] is the query's row of
            # per-window-row logits dotted with the key's one-hot window row e_Y (likewise for columns), so no
            # (b*b, win*win) bias exists and SDPA runs its fused kernel. Keys and values share one buffer
            # [k | e_Y | e_X], [v | e_Y | e_X]: the fused kernel wants one head dim, and the output dims past
            # Dh (weights times one-hots) are dropped.
            q6 = qc.view(B, rows, b, nbx, b, Nh, Dh).permute(0, 1, 3, 2, 4, 5, 6)  # (B, r, nbx, y, x, H, Dh)
            lr = torch.einsum("brnyxhd,ywd->brnyxhw", q6, rel_row[rel]) * Dh**0.5  # by key window row
            lc = torch.einsum("brnyxhd,xwd->brnyxhw", q6, rel_col[rel]) * Dh**0.5  # by key window column
            n = B * rows * nbx
            qa = torch.cat([q6, lr, lc], dim=-1).view(n, b * b, Nh, Dh + 2 * win).transpose(1, 2)
            kw = kvc.unfold(1, win, b).unfold(2, win, b)  # (B, r, nbx, 2C, win, win), a view
            kw = kw.permute(0, 1, 2, 4, 5, 3).reshape(n, win * win, 2, Nh, Dh)  # a view where possible
            kva = torch.cat([kw, onehot[None, :, None, None, :].expand(n, -1, 2, Nh, -1)], dim=-1)
            ka, va = kva[:, :, 0].transpose(1, 2), kva[:, :, 1].transpose(1, 2)  # (N, H, win*win, Dh + 2 win)
            key_ok = okc.unfold(1, win, b).unfold(2, win, b).reshape(n, 1, 1, win * win)
            o = attention(qa, ka, va, mask=key_ok, scale=Dh**-0.5, backend=self.backend)
            assert isinstance(o, Tensor)  # without need_weights: the output alone
            o = o[..., :Dh]
            return o.transpose(1, 2).reshape(B, rows, nbx, b, b, C).permute(0, 1, 3, 2, 4, 5)

        chunks = zip(
            row_chunks(qg, 1, rows * b, n),
            row_chunks(kvg, 1, rows * b, n, 2 * h),
            row_chunks(ok, 1, rows * b, n, 2 * h),
            strict=True,
        )
        outs = [
            recompute_in_backward(chunk, qc, kvc, okc, self.rel_row, self.rel_col) for qc, kvc, okc in chunks
        ]
        o = torch.cat(outs, dim=1).reshape(B, Hp, Wp, C)  # (B, n*rows, b, nbx, b, C) -> grid
        if (Hp, Wp) != (Hh, Ww):
            o = o[:, :Hh, :Ww]
        return o.reshape(B, L, C)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        Hh, Ww = int(shape[0]), int(shape[1])
        Nh, Dh, b, h = self.num_heads, self.head_dim, self.block, self.halo
        off = b - 1 + h  # relative offset dy = Y - y maps to table row dy + off
        q = self.q_proj(x)
        kv = self.kv_proj(x)
        if need_weights or self.backend == "math":
            qh = q.view(B, L, Nh, Dh).transpose(1, 2)
            k, v = kv.view(B, L, 2, Nh, Dh).permute(2, 0, 3, 1, 4)
            y, xx = torch.meshgrid(
                torch.arange(Hh, device=x.device), torch.arange(Ww, device=x.device), indexing="ij"
            )
            y, xx = y.flatten(), xx.flatten()
            n_rel = self.rel_row.shape[0]
            idx_r = (y[None, :] - y[:, None] + off).clamp(0, n_rel - 1)
            idx_c = (xx[None, :] - xx[:, None] + off).clamp(0, n_rel - 1)
            bias = self._rel_logits(qh, idx_r, idx_c)  # (B, H, L, L)
            keep = halo_pattern(Hh, Ww, b, h, x.device)[None, None]
            if mask is not None:
                keep = keep & mask[:, None, None, :]
            o, w = attention(
                qh, k, v, bias=bias, mask=keep, scale=Dh**-0.5, backend="math", need_weights=True
            )
            o = o.transpose(1, 2).reshape(B, L, Nh * Dh)
        else:
            w = None
            o = self._blocked(q, kv, mask, Hh, Ww)  # (B, L, C)
        o = self.gate_heads(o.view(B, L, Nh, Dh).transpose(1, 2)).transpose(1, 2).reshape(B, L, self.dim)
        return AttentionOutput(self.out_proj(o), w)
