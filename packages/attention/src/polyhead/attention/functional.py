"""The single dispatch point for attention math: ``attention(q, k, v, ...)``.

Backends:
    ``math``: pure torch, materialises the ``(B, H, L, S)`` scores and can return the weights. It is the
        reference oracle every other backend is tested against.
    ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient / CPU fused).
    ``flex``: FlexAttention with a ``BlockMask`` (GPU path for structured masks and biases; no backward
        on CPU).
    ``triton``: polyhead's own block-sparse kernels (CUDA only; see ``polyhead.attention.kernels``).
    ``cpu``: polyhead's fused CPU kernel for many short sequences (AVX-512 or portable, float32/bfloat16; no mask,
        bias, causal flag or GQA; see ``polyhead.attention.cpu``).
    ``auto``: the fastest backend that is correct for the device, dtype and features requested.

Shapes: ``q`` is ``(B, H, L, D)``, ``k`` and ``v`` are ``(B, Hkv, S, D)`` with ``H % Hkv == 0`` (GQA).
``mask`` is a bool key-padding mask ``(B, S)`` or a bool attention mask broadcastable to
``(B, H, L, S)`` (True = attend). ``bias`` is an additive float bias broadcastable to ``(B, H, L, S)``.
Query rows that can see no key at all produce zeros (and zero weights), never NaN.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "math", "sdpa", "flex", "triton", "cpu")


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, n = [], 1
    for size in reversed(shape):
        strides.append(n)
        n *= max(size, 1)
    return tuple(reversed(strides))


class _SplitLast(torch.autograd.Function):
    """``x.split(sizes, -1)`` for a contiguous ``x`` whose backward takes the parts' gradients as they are when
    they already are the adjacent parts of one contiguous tensor of ``x``'s shape (the fused CPU kernel returns
    them so for q, k and v split from one projection), instead of concatenating them into a new one."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: tuple[int, ...]) -> tuple[Tensor, ...]:  # type: ignore[override]
        ctx.sizes, ctx.shape, ctx.dtype, ctx.device = sizes, tuple(x.shape), x.dtype, x.device
        return tuple(x.split(list(sizes), -1))

    @staticmethod
    def backward(ctx, *grads: Tensor | None) -> tuple[Tensor, None]:  # type: ignore[override]
        shape = ctx.shape
        strides = _contiguous_strides(shape)
        first = grads[0]
        if first is not None and all(g is not None for g in grads):
            start, storage = first.storage_offset(), first.untyped_storage().data_ptr()
            offsets = [start + sum(ctx.sizes[:i]) for i in range(len(grads))]
            if all(
                g is not None
                and g.stride() == strides
                and g.dtype == first.dtype
                and g.untyped_storage().data_ptr() == storage
                and g.storage_offset() == offset
                for g, offset in zip(grads, offsets)
            ):
                return first.as_strided(shape, strides, start), None
        parts = [
            g if g is not None else torch.zeros(*shape[:-1], size, dtype=ctx.dtype, device=ctx.device)
            for g, size in zip(grads, ctx.sizes)
        ]
        return torch.cat(parts, -1), None


def split_last(x: Tensor, sizes: list[int]) -> tuple[Tensor, ...]:
    """``x.split(sizes, -1)`` (views); where the parts' gradients come back as adjacent parts of one tensor of
    ``x``'s layout, as the fused CPU attention kernel returns those of q, k and v split from one projection,
    the backward uses that tensor instead of concatenating the parts."""
    if (
        x.device.type != "cpu"  # only the CPU kernel returns adjacent gradients
        or not x.is_contiguous()
        or not (torch.is_grad_enabled() and x.requires_grad)
        or torch.compiler.is_compiling()  # traced graphs: the plain split (no storage checks on fake tensors)
    ):
        return tuple(x.split(sizes, -1))
    return cast(tuple[Tensor, ...], _SplitLast.apply(x, tuple(sizes)))


def _check(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, bias: Tensor | None, backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be 4-D (B, H, L, D); got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    B, H, L, D = q.shape
    if k.shape[0] != B or v.shape[0] != B or k.shape[2] != v.shape[2] or k.shape[1] != v.shape[1]:
        raise ValueError(
            f"k and v must be (B={B}, Hkv, S, D) and agree; got k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if k.shape[-1] != D:
        raise ValueError(f"k head dim must equal q head dim {D}, got {k.shape[-1]}")
    if H % k.shape[1] != 0:
        raise ValueError(f"number of query heads ({H}) must be a multiple of key/value heads ({k.shape[1]})")
    S = k.shape[2]
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor (True = attend), got dtype {mask.dtype}")
        if mask.dim() == 2:
            if tuple(mask.shape) != (B, S):
                raise ValueError(f"key-padding mask must have shape ({B}, {S}), got {tuple(mask.shape)}")
        elif mask.dim() != 4 or mask.shape[-1] != S or mask.shape[-2] not in (1, L):
            raise ValueError(
                f"mask must be (B, S) = ({B}, {S}) or broadcastable to (B, H, L, S) = ({B}, {H}, {L}, {S}), "
                f"got {tuple(mask.shape)}"
            )
    if bias is not None and (bias.dim() > 4 or bias.shape[-1] not in (1, S)):
        raise ValueError(
            f"bias must be broadcastable to (B, H, L, S) = ({B}, {H}, {L}, {S}), got {tuple(bias.shape)}"
        )


def _bool_mask(mask: Tensor | None, causal: bool, L: int, S: int, device: torch.device) -> Tensor | None:
    """Combine key padding, explicit and causal masks into one bool mask broadcastable to (B, H, L, S)."""
    if mask is not None and mask.dim() == 2:
        mask = mask[:, None, None, :]  # (B, 1, 1, S)
    if causal:
        # Bottom-right aligned, as in FlashAttention: query i sees keys j <= i + (S - L).
        tri = torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=S - L)
        mask = tri if mask is None else mask & tri
    return mask


def _expand_kv(k: Tensor, v: Tensor, num_heads: int) -> tuple[Tensor, Tensor]:
    rep = num_heads // k.shape[1]
    if rep == 1:
        return k, v
    return k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)


def _softmax(scores: Tensor) -> Tensor:
    """Softmax over keys; half-precision scores are normalised in float32 (as SDPA does) and cast back."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        return torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
    return torch.softmax(scores, dim=-1)


def math_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None = None,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Reference attention. Returns ``(output (B, H, L, D), weights (B, H, L, S))``."""
    B, H, L, D = q.shape
    S = k.shape[2]
    k, v = _expand_kv(k, v, H)
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    keep = _bool_mask(mask, causal, L, S, q.device)
    if bias is None and keep is None:
        # Nothing masked: every row has finite scores, so no empty-row handling (the row max, two masked
        # fills) is needed; scaling q costs L x D multiplies instead of L x S.
        weights = _softmax(torch.matmul(q * scale, k.transpose(-2, -1)))
        return torch.matmul(weights, v), weights
    scores = torch.matmul(q, k.transpose(-2, -1)) * scale  # (B, H, L, S)
    if bias is not None:
        scores = scores + bias
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    # Rows with no visible key: softmax over all -inf is NaN; define them as zero weights.
    row_max = scores.amax(dim=-1, keepdim=True)
    empty = torch.isneginf(row_max)
    scores = scores.masked_fill(empty, 0.0)
    weights = _softmax(scores)
    if keep is not None:
        weights = weights.masked_fill(empty, 0.0)
    return torch.matmul(weights, v), weights


def _sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None,
    mask: Tensor | None,
    causal: bool,
    scale: float | None,
) -> Tensor:
    B, H, L, _ = q.shape
    S = k.shape[2]
    gqa = k.shape[1] != H
    keep = _bool_mask(mask, causal and (bias is not None or mask is not None or L != S), L, S, q.device)
    attn_mask: Tensor | None = keep
    is_causal = causal and attn_mask is None
    if bias is not None:
        b = bias.to(q.dtype)
        attn_mask = b if keep is None else b.masked_fill(~keep, float("-inf"))
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale, enable_gqa=gqa
    )
    if keep is not None:
        # SDPA yields NaN (or garbage) for rows that see no key; make them zero like the oracle.
        any_key = keep.any(dim=-1, keepdim=True)
        out = out.masked_fill(~any_key, 0.0)
    return out


def _flex(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    bias: Tensor | None,
    mask: Tensor | None,
    block_mask: Any,
    causal: bool,
    scale: float | None,
) -> Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    B, H, L, _ = q.shape
    S = k.shape[2]
    keep = _bool_mask(mask, causal, L, S, q.device)
    score_mod = None
    if bias is not None or keep is not None:
        b = None if bias is None else bias.expand(B, H, L, S)
        kp = None if keep is None else keep.expand(B, H, L, S)

        def score_mod(score, b_i, h_i, q_i, k_i):
            if b is not None:
                score = score + b[b_i, h_i, q_i, k_i]
            if kp is not None:
                score = torch.where(kp[b_i, h_i, q_i, k_i], score, -float("inf"))
            return score

    # Without return_lse / return_aux, flex_attention returns the output alone; torch annotates the union of
    # all its return modes (no overloads), so the type is stated here.
    out = cast(
        Tensor,
        flex_attention(
            q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale, enable_gqa=k.shape[1] != H
        ),
    )
    return torch.nan_to_num(out, nan=0.0) if keep is not None or block_mask is not None else out


def _is_tiled_layout(block_mask: Any) -> bool:
    from polyhead.attention.layouts import TiledLayout

    return isinstance(block_mask, TiledLayout)


def _block_mask_dense(block_mask: Any, B: int, H: int, L: int, S: int, device: torch.device) -> Tensor:
    """Evaluate a FlexAttention BlockMask's ``mask_mod`` (or a kernel TiledLayout) on the full grid (math oracle only)."""
    if _is_tiled_layout(block_mask):
        return block_mask.dense().to(device).expand(B, H, L, S)
    b = torch.arange(B, device=device)[:, None, None, None]
    h = torch.arange(H, device=device)[None, :, None, None]
    qi = torch.arange(L, device=device)[None, None, :, None]
    ki = torch.arange(S, device=device)[None, None, None, :]
    return block_mask.mask_mod(b, h, qi, ki).expand(B, H, L, S)


def _triton_supported(q: Tensor, bias: Tensor | None, block_mask: Any, mask: Tensor | None = None) -> bool:
    if not q.is_cuda:
        return False
    try:
        from polyhead.attention import kernels
    except ImportError:
        return False
    supported = getattr(kernels, "supports", None)
    return bool(supported and supported(q, bias=bias, block_mask=block_mask, mask=mask))


# On CPU, SDPA's fused kernel is slow in half precision for short key sequences, where the plain product is
# faster; in float32 the two are close and SDPA wins on longer ones, so float32 keeps SDPA. The measured
# crossover (the README's "Backends" section, pipelines/bench/cpu_attention.py) sets the bound.
CPU_HALF_MATH_MAX_KEYS = 256
# polyhead's fused CPU kernel (``cpu``) beats the better of math and SDPA up to this many keys and falls
# behind beyond (measured ratios per key count: the README's "Backends" section).
CPU_FUSED_MAX_KEYS = 128


def _cpu_fused_ok(
    q: Tensor,
    *,
    bias: Tensor | None,
    mask: Tensor | None,
    block_mask: Any,
    causal: bool,
    kv_heads: int | None,
) -> bool:
    if q.device.type != "cpu" or q.dtype not in (torch.float32, torch.bfloat16):
        return False
    if torch.compiler.is_compiling():
        return False  # the kernel's ops have no fake-tensor rules: traced graphs use math/sdpa
    if bias is not None or mask is not None or block_mask is not None or causal or kv_heads != q.shape[1]:
        return False
    from polyhead.attention import cpu

    return cpu.available()


def _cpu_fused_max_keys() -> int:
    # Measured once per machine (polyhead.attention.cpu.choice): 0 where no fused kernel beats math/sdpa.
    from polyhead.attention import cpu

    return cpu.choice()["max_keys"]


def _cuda_block_mask_backend(
    q: Tensor,
    *,
    bias: Tensor | None,
    mask: Tensor | None,
    block_mask: Any,
    kv_len: int,
    kv_heads: int,
    requires_grad: bool,
    triton_ok: bool,
    device_name: str,
    capability: tuple[int, int],
    table: dict | None = None,
) -> str:
    """``triton``, ``flex`` or ``math`` for a block-mask call on a CUDA device (device given, so CPU tests can
    ask about any device)."""
    if _is_tiled_layout(block_mask):
        # a kernel TiledLayout is not a FlexAttention BlockMask: without the kernel only the oracle serves it
        return "triton" if triton_ok else "math"
    if not triton_ok or torch.compiler.is_compiling():
        # (under torch.compile the mask's features would need a device sync: FlexAttention, the default)
        return "flex"
    from polyhead.attention.kernels import measured

    feats = measured.call_features(
        q,
        kv_len=kv_len,
        kv_heads=kv_heads,
        block_mask=block_mask,
        key_padding=mask is not None,
        bias=bias is not None,
    )
    best = measured.choose(
        feats,
        grad=requires_grad,
        candidates=("triton", "flex"),
        device_name=device_name,
        capability=(int(capability[0]), int(capability[1])),
        table=table,
    )
    # No measured row fits (another device, pattern, dtype, feature set): FlexAttention, the conservative
    # default (the kernel's backward measured far slower than FlexAttention's, its forward only somewhat
    # faster: KERNELS.md).
    return best or "flex"


def select_backend(
    q: Tensor,
    *,
    bias: Tensor | None,
    mask: Tensor | None,
    block_mask: Any,
    need_weights: bool,
    kv_len: int | None = None,
    causal: bool = False,
    kv_heads: int | None = None,
    requires_grad: bool | None = None,
) -> str:
    """The backend ``auto`` resolves to for these inputs (``kv_len``: the number of keys S; ``kv_heads``:
    key/value heads; ``requires_grad``: whether this call's backward will run, ``None`` = autograd is on
    and ``q`` requires grad).

    A FlexAttention ``BlockMask`` on CUDA goes to the Triton kernel only where the measured table
    (``polyhead.attention.kernels.measured``) says it is faster for this call's mode (forward only or forward
    + backward); otherwise, and for devices and patterns the table does not describe, to FlexAttention.
    """
    if need_weights:
        return "math"
    if (
        kv_len is not None
        and kv_len <= CPU_FUSED_MAX_KEYS
        and _cpu_fused_ok(q, bias=bias, mask=mask, block_mask=block_mask, causal=causal, kv_heads=kv_heads)
        and kv_len <= _cpu_fused_max_keys()
    ):
        return "cpu"
    if (
        block_mask is None
        and not q.is_cuda
        and q.dtype in (torch.bfloat16, torch.float16)
        and kv_len is not None
        and kv_len <= CPU_HALF_MATH_MAX_KEYS
    ):
        return "math"
    # The Triton kernel only where it skips blocks: on dense inputs SDPA beat it on an H100, with or without
    # key padding and bias (figures in packages/attention/KERNELS.md).
    if block_mask is not None and q.is_cuda:
        if requires_grad is None:
            requires_grad = torch.is_grad_enabled() and q.requires_grad
        return _cuda_block_mask_backend(
            q,
            bias=bias,
            mask=mask,
            block_mask=block_mask,
            kv_len=q.shape[2] if kv_len is None else kv_len,
            kv_heads=q.shape[1] if kv_heads is None else kv_heads,
            requires_grad=requires_grad,
            triton_ok=_triton_supported(q, bias, block_mask, mask),
            device_name=torch.cuda.get_device_name(q.device),
            capability=torch.cuda.get_device_capability(q.device),
        )
    if block_mask is not None:
        # FlexAttention has no backward on CPU; the math oracle is the correct CPU fallback. A kernel
        # TiledLayout is not a FlexAttention BlockMask: without the kernel, only the oracle can serve it.
        return "flex" if q.is_cuda and not _is_tiled_layout(block_mask) else "math"
    return "sdpa"


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
    backend: str = "auto",
    need_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Scaled dot-product attention dispatched to a backend.

    Returns the output ``(B, H, L, D)``; with ``need_weights=True`` returns ``(output, weights)`` and
    only the ``math`` backend (or ``auto``) can serve it.
    """
    _check(q, k, v, mask, bias, backend)
    if backend == "auto":
        backend = select_backend(
            q,
            bias=bias,
            mask=mask,
            block_mask=block_mask,
            need_weights=need_weights,
            kv_len=k.shape[2],
            causal=causal,
            kv_heads=k.shape[1],
            requires_grad=torch.is_grad_enabled()
            and any(t is not None and t.requires_grad for t in (q, k, v, bias)),
        )
        if backend == "triton" and not (q.dtype == k.dtype == v.dtype):
            # Mixed dtypes (e.g. a float32 query from float32 positional biases against bfloat16 keys under
            # autocast): the kernel needs one dtype; SDPA/flex are autocast-aware and equally exact.
            backend = "sdpa" if block_mask is None else "flex"
    if need_weights and backend != "math":
        raise ValueError(f"need_weights=True needs backend 'math' or 'auto', got {backend!r}")
    B, H, L, _ = q.shape
    S = k.shape[2]
    if backend == "math":
        if block_mask is not None:
            dense = _block_mask_dense(block_mask, B, H, L, S, q.device)
            if mask is None:
                mask = dense
            else:
                keep = _bool_mask(mask, False, L, S, q.device)
                assert keep is not None  # a given mask comes back (reshaped to 4-D), never None
                mask = dense & keep
        out, weights = math_attention(q, k, v, bias=bias, mask=mask, causal=causal, scale=scale)
        return (out, weights) if need_weights else out
    if backend == "sdpa":
        if block_mask is not None:
            raise ValueError(
                "backend 'sdpa' cannot take a block_mask; use 'flex' (GPU), 'triton' (CUDA) or 'math'"
            )
        return _sdpa(q, k, v, bias=bias, mask=mask, causal=causal, scale=scale)
    if backend == "cpu":
        if not _cpu_fused_ok(
            q, bias=bias, mask=mask, block_mask=block_mask, causal=causal, kv_heads=k.shape[1]
        ):
            raise ValueError(
                "backend 'cpu' (fused short-sequence kernel) needs float32 or bfloat16 CPU tensors, no mask, bias, "
                "block mask or causal flag, as many key/value heads as query heads, and the kernel built "
                "(a C++ compiler; polyhead.attention.cpu.available()); use 'math' or 'sdpa'"
            )
        from polyhead.attention import cpu

        return cpu.short_attention(q, k, v, scale=scale)
    if backend == "flex":
        if _is_tiled_layout(block_mask):
            raise ValueError(
                "backend 'flex' takes a FlexAttention BlockMask, got a kernel TiledLayout; use 'triton' or 'math'"
            )
        return _flex(q, k, v, bias=bias, mask=mask, block_mask=block_mask, causal=causal, scale=scale)
    # backend == "triton"
    if not q.is_cuda:
        raise ValueError("backend 'triton' needs CUDA tensors; use 'sdpa' or 'math' on CPU")
    from polyhead.attention import kernels

    return kernels.attention(q, k, v, bias=bias, mask=mask, block_mask=block_mask, causal=causal, scale=scale)
