"""Fused CPU attention for many short sequences (``short_attention.cpp``, AVX-512).

The C++ source is compiled on first use with ``torch.utils.cpp_extension`` (a C++ compiler and ``ninja``,
a dependency of this package; about 10 s once on the 2-core CI machine, then cached under
``TORCH_EXTENSIONS_DIR``) and registered as ``torch.ops.polyhead_cpu``. Where it cannot be built (no
AVX-512, no compiler, ``POLYHEAD_CPU_KERNELS=0``), :func:`available` is False and ``functional.attention``
keeps its other CPU backends.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("short_attention.cpp")
# The flags the source needs: AVX-512 F/VL/BW/DQ intrinsics (torch reports "AVX512" only where all are
# present), and OpenMP, without which at::parallel_for (an OpenMP pragma in ATen's headers) runs serially.
CFLAGS = ["-O3", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma", "-fopenmp"]
LDFLAGS = ["-fopenmp"]


@functools.cache
def available() -> bool:
    """Whether the fused kernel is built and loaded (builds it on the first call)."""
    if os.environ.get("POLYHEAD_CPU_KERNELS", "1") == "0":
        return False
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return False
    try:
        _build()
    except Exception as err:  # no compiler, no ninja, a failed build: fall back, say why once
        log.warning("polyhead: fused CPU attention kernel unavailable (%s); using the unfused path", err)
        return False
    return True


def _build() -> None:
    # cpp_extension warns at import that there is no CUDA runtime; this build is CPU-only.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    try:  # the ninja wheel's binary, for interpreters started without the environment's bin/ on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    cpp_extension.load(
        name="polyhead_cpu_short_attention",
        sources=[str(SOURCE)],
        extra_cflags=CFLAGS,
        extra_ldflags=LDFLAGS,
        is_python_module=False,
        verbose=False,
    )


class _ShortAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        out, weights = torch.ops.polyhead_cpu.short_attention_forward(q, k, v, scale)
        ctx.save_for_backward(q, k, v, weights)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable  # no double backward: the kernel's backward has no derivative
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:  # type: ignore[override]
        q, k, v, weights = ctx.saved_tensors
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        dq, dk, dv = torch.ops.polyhead_cpu.short_attention_backward(q, k, v, weights, grad, ctx.scale)
        return dq, dk, dv, None


def short_attention(q: Tensor, k: Tensor, v: Tensor, scale: float | None = None) -> Tensor:
    """``softmax(q k^T * scale) v`` for ``q (B, H, L, D)``, ``k (B, H, S, D)``, ``v (B, H, S, Dv)`` on CPU.

    float32 or bfloat16 (mixed inputs are promoted; computation is float32), no mask or bias. The output is a
    ``(B, H, L, Dv)`` view of a ``(B, L, H, Dv)`` tensor. Needs :func:`available`.
    """
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = (t.to(dtype) if t.stride(-1) == 1 else t.to(dtype).contiguous() for t in (q, k, v))
    return _ShortAttention.apply(q, k, v, q.shape[-1] ** -0.5 if scale is None else scale)
