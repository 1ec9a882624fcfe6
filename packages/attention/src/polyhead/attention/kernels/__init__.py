"""polyhead's Triton kernels: fused block-sparse FlashAttention-2 (forward + backward) with bias, GQA, key
padding, causal masking and a per-head output gate (see :mod:`polyhead.attention.kernels.flash`).

This module imports on any machine: triton is imported only when a kernel runs (or when
:func:`supports` is asked about a CUDA tensor). Entry points:

- :func:`attention`: the ``triton`` backend of :func:`polyhead.attention.functional.attention`, plus
  ``gate=`` (MoH weighting fused into the epilogue) and ``layout=`` (a :class:`TiledLayout`);
- :func:`supports`: whether the kernel can serve these inputs (``auto`` asks it on CUDA);
- :func:`check`: the same rules, raising a ``ValueError`` that names the backend to use instead;
- :func:`to_tiled_layout`: a FlexAttention ``BlockMask`` or a :class:`TiledLayout` -> the kernel's layout.

On CPU the kernels run under ``TRITON_INTERPRET=1`` (slow; the tests use tiny shapes); without it,
``attention`` on CPU tensors raises and points to ``sdpa``/``flex``/``math``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import torch
from torch import Tensor

from polyhead.attention.layouts import TiledLayout, dense_tiled_layout, layout_from_block_mask

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
HEAD_DIMS = (16, 128)  # inclusive range, multiples of 8
FP32_MAX_HEAD_DIM = 64  # fp32 dK/dV at head dim 128 spills registers (kernel report): not shipped
BLOCKS = (16, 32, 64, 128)

__all__ = [
    "BLOCKS",
    "DTYPES",
    "HEAD_DIMS",
    "TiledLayout",
    "attention",
    "check",
    "supports",
    "to_tiled_layout",
]


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def check(
    q: Tensor,
    k: Tensor | None = None,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    block_mask: Any = None,
    gate: Tensor | None = None,
) -> None:
    """Raise ``ValueError`` (naming the backend to use instead) if the kernel cannot serve these inputs."""
    if not triton_available():
        raise ValueError(
            "backend 'triton' needs the triton package (pip install triton); use 'sdpa' or 'flex'"
        )
    if not (q.is_cuda or _interpreting()):
        raise ValueError("backend 'triton' needs CUDA tensors; use 'sdpa' (or 'math') on CPU")
    if q.dtype not in DTYPES:
        raise ValueError(f"backend 'triton' supports float16/bfloat16/float32, got {q.dtype}; use 'math'")
    if k is not None and (k.dtype != q.dtype):
        raise ValueError(
            f"backend 'triton' needs q, k, v of one dtype, got {q.dtype} and {k.dtype}; use 'sdpa'"
        )
    D = q.shape[-1]
    if not (HEAD_DIMS[0] <= D <= HEAD_DIMS[1]) or D % 8:
        raise ValueError(
            f"backend 'triton' supports head dims {HEAD_DIMS[0]}-{HEAD_DIMS[1]} in steps of 8, got {D}; "
            "use 'sdpa' (dense) or 'flex' (block masks)"
        )
    if q.dtype == torch.float32 and D > FP32_MAX_HEAD_DIM:
        raise ValueError(
            f"backend 'triton' supports float32 up to head dim {FP32_MAX_HEAD_DIM} (got {D}); "
            "use bfloat16/float16 inputs or 'sdpa'"
        )
    if mask is not None and mask.dim() != 2:
        raise ValueError(
            "backend 'triton' takes key-padding masks (B, S); express other patterns as a block_mask/layout, "
            "or use 'flex' or 'math' for an explicit (B, H, L, S) mask"
        )
    B, H, L = q.shape[:3]
    if mask is not None and k is not None and tuple(mask.shape) != (B, k.shape[2]):
        raise ValueError(f"key-padding mask must be (B, S) = ({B}, {k.shape[2]}), got {tuple(mask.shape)}")
    if bias is not None and bias.dim() > 4:
        raise ValueError(f"bias must have at most 4 dims (B, H, L, S), got {tuple(bias.shape)}; use 'math'")
    if gate is not None and (gate.dim() != 3 or any(g not in (1, n) for g, n in zip(gate.shape, (B, H, L)))):
        raise ValueError(
            f"gate must be broadcastable to (B, H, L) = ({B}, {H}, {L}), got {tuple(gate.shape)}"
        )
    if block_mask is not None:
        bq, bk = _block_sizes(block_mask)
        if bq not in BLOCKS or bk not in BLOCKS:
            raise ValueError(
                f"backend 'triton' supports block sizes {BLOCKS}, got ({bq}, {bk}); "
                "rebuild the layout with one of them or use 'flex'"
            )
        if isinstance(block_mask, TiledLayout):
            Bl, Hl = block_mask.indices.shape[:2]
            S = k.shape[2] if k is not None else block_mask.S
            if Bl not in (1, B) or Hl not in (1, H) or block_mask.L != L or block_mask.S != S:
                raise ValueError(
                    f"layout shape (Bl={Bl}, Hl={Hl}, L={block_mask.L}, S={block_mask.S}) does not fit "
                    f"q (B={B}, H={H}, L={L}) and S={S}; rebuild it or use 'flex'"
                )


def _block_sizes(block_mask: Any) -> tuple[int, int]:
    if isinstance(block_mask, TiledLayout):
        return block_mask.block_q, block_mask.block_k
    size = getattr(block_mask, "BLOCK_SIZE", None)
    if size is None:
        raise ValueError(
            f"block_mask must be a TiledLayout or a FlexAttention BlockMask, got {type(block_mask).__name__}"
        )
    return int(size[0]), int(size[1])


def supports(
    q: Tensor, *, bias: Tensor | None = None, block_mask: Any = None, mask: Tensor | None = None
) -> bool:
    """True if :func:`attention` can serve these inputs on this machine (CUDA and triton present)."""
    if not q.is_cuda:
        return False
    try:
        check(q, bias=bias, mask=mask, block_mask=block_mask)
    except ValueError:
        return False
    return True


def to_tiled_layout(block_mask: Any, B: int, H: int, L: int, S: int) -> TiledLayout:
    """A FlexAttention ``BlockMask`` (its partial and full block lists + ``mask_mod``) -> :class:`TiledLayout`."""
    if isinstance(block_mask, TiledLayout):
        return block_mask
    from polyhead.attention.layouts import _tiled

    bq, bk = _block_sizes(block_mask)
    nq, nk = -(-L // bq), -(-S // bk)
    kv_num, kv_idx = block_mask.kv_num_blocks, block_mask.kv_indices
    Bl, Hl = kv_num.shape[:2]
    listed = torch.zeros(Bl, Hl, nq, nk + 1, dtype=torch.bool, device=kv_num.device)
    parts = [(kv_num, kv_idx)]
    if getattr(block_mask, "full_kv_num_blocks", None) is not None:
        parts.append((block_mask.full_kv_num_blocks, block_mask.full_kv_indices))
    for num, idx in parts:
        idx = idx[:, :, :nq].long()
        ok = torch.arange(idx.shape[-1], device=idx.device) < num[:, :, :nq, None]
        listed.scatter_(-1, torch.where(ok, idx, nk), True)
    lay = layout_from_block_mask(listed[..., :nk].reshape(Bl * Hl, nq, nk), bq, bk)
    indices, counts = lay.indices.view(Bl, Hl, nq, -1), lay.counts.view(Bl, Hl, nq)
    b = torch.arange(Bl, device=indices.device).view(-1, 1, 1, 1, 1, 1)
    h = torch.arange(Hl, device=indices.device).view(1, -1, 1, 1, 1, 1)
    return _tiled(indices, counts, lambda i0, i1, qt, kt: block_mask.mask_mod(b, h, qt, kt), bq, bk, L, S)


def _default_block(n: int) -> int:
    return 64 if n >= 64 else max(16, 1 << (max(n, 1) - 1).bit_length())


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    block_mask: Any = None,
    causal: bool = False,
    scale: float | None = None,
    gate: Tensor | None = None,
    return_lse: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Fused block-sparse attention: q ``(B, H, L, D)``, k/v ``(B, Hkv, S, D)`` -> ``(B, H, L, D)``.

    Args:
        bias: additive scores, broadcastable to ``(B, H, L, S)`` (any size-1 dims); differentiable.
        mask: key padding ``(B, S)`` bool, True = attend.
        block_mask: a :class:`TiledLayout` or a FlexAttention ``BlockMask``; ``None`` = dense.
        causal: bottom-right aligned causal rule (query i sees keys j <= i + S - L), applied in-kernel.
        gate: per-head output weights ``(B, H, L)`` multiplied into the output (MoH); differentiable.
        return_lse: also return the log-sum-exp of each query's attended scores (scale and bias included),
            ``(B, H, L)`` float32, -inf where a query sees no key; it carries no gradient.

    Queries that see no key get a zero output.
    """
    check(q, k, bias=bias, mask=mask, block_mask=block_mask, gate=gate)
    from polyhead.attention.kernels.flash import flash_attention

    B, H, L, _ = q.shape
    S = k.shape[2]
    if block_mask is None:
        layout = dense_tiled_layout(
            L, S, _default_block(L), _default_block(S), causal=causal, device=q.device
        )
    else:
        layout = to_tiled_layout(block_mask, B, H, L, S)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    if gate is not None:
        gate = gate.expand(B, H, L).to(q.dtype).contiguous()
    out, lse = flash_attention(
        q, k, v, layout, bias=bias, key_padding=mask, gate=gate, causal=causal, scale=scale
    )
    return (out, lse) if return_lse else out
