"""Fused CPU attention for many short sequences: one pass per (batch, head) with everything in L1.

Two implementations of the same algorithm, compiled on first use with ``torch.utils.cpp_extension`` (a C++
compiler and ``ninja``, a dependency of this package; cached under ``TORCH_EXTENSIONS_DIR``):

- ``avx512``: ``short_attention.cpp``, hand-written AVX-512 intrinsics (``torch.ops.polyhead_cpu``); only
  where PyTorch reports the ``AVX512`` capability;
- ``portable``: ``short_attention_portable.cpp``, written once over ATen's ``at::vec::Vectorized<float>``
  and compiled for the capability PyTorch reports (``AVX512``, ``AVX2``, else ``DEFAULT``: scalar code the
  compiler vectorises, NEON on ARM), the way PyTorch builds its own CPU kernels
  (``torch.ops.polyhead_cpu_portable``). ``ATEN_CPU_CAPABILITY=avx2`` on an AVX-512 machine builds and runs
  the AVX2 variant, as it makes PyTorch's own kernels run theirs.

Which path ``functional.attention(backend="auto")`` takes on CPU is measured once per machine
(:func:`choice`: forward + backward of each fused kernel against the better of ``math`` and ``sdpa`` at
AutoInt's shape and at 128 keys, float32) and cached in ``~/.cache/polyhead/cpu_attention.json`` (keyed by
CPU model, capability, torch version and the kernels' sources), so ``auto`` never takes a fused path that
is slower on the machine at hand. Where no fused kernel can be built (no compiler, ``POLYHEAD_CPU_KERNELS=0``)
one line says why and ``auto`` keeps the other backends.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("short_attention.cpp")
PORTABLE_SOURCE = Path(__file__).with_name("short_attention_portable.cpp")
GRADS_HEADER = Path(__file__).with_name("short_attention_grads.h")  # included by both
# OpenMP: without it at::parallel_for (an OpenMP pragma in ATen's headers) runs serially.
OPENMP = ["-fopenmp"]
AVX512_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mfma"]
# Per PyTorch capability: the -m flags and the macros that select at::vec's specialisation.
CAPABILITY_FLAGS = {
    "AVX512": [*AVX512_FLAGS, "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
    "DEFAULT": ["-DCPU_CAPABILITY=DEFAULT"],
}
CACHE = Path(os.environ.get("POLYHEAD_CACHE", Path.home() / ".cache" / "polyhead")) / "cpu_attention.json"
# (B, H, L=S, D): AutoInt's field attention and the longest sequences auto sends to a fused kernel.
PROBES = [(256, 2, 39, 8), (32, 4, 128, 32)]


def capability() -> str:
    """PyTorch's CPU capability as this package builds for it (``AVX512``, ``AVX2`` or ``DEFAULT``)."""
    cap = torch.backends.cpu.get_cpu_capability()
    return cap if cap in CAPABILITY_FLAGS else "DEFAULT"


def _load(name: str, source: Path, cflags: list[str]) -> None:
    # cpp_extension warns at import that there is no CUDA runtime; these builds are CPU-only.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import cpp_extension

    try:  # the ninja wheel's binary, for interpreters started without the environment's bin/ on PATH
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    except ImportError:
        pass
    cpp_extension.load(
        name=name,
        sources=[str(source)],
        extra_cflags=["-O3", *cflags, *OPENMP],
        extra_ldflags=OPENMP,
        is_python_module=False,
        verbose=False,
    )


@functools.cache
def kernels() -> tuple[str, ...]:
    """The fused kernels built and loaded here (builds them on the first call): ``avx512``, ``portable``."""
    if os.environ.get("POLYHEAD_CPU_KERNELS", "1") == "0":
        log.warning("polyhead: fused CPU attention off (POLYHEAD_CPU_KERNELS=0); using the unfused path")
        return ()
    cap, built, errors = capability(), [], []
    if cap == "AVX512":
        try:
            _load("polyhead_cpu_short_attention", SOURCE, AVX512_FLAGS)
            built.append("avx512")
        except Exception as err:  # a failed build: say why once, keep the other kernel
            errors.append(f"avx512: {err}")
    try:
        _load(f"polyhead_cpu_short_attention_portable_{cap.lower()}", PORTABLE_SOURCE, CAPABILITY_FLAGS[cap])
        built.append("portable")
    except Exception as err:
        errors.append(f"portable ({cap}): {err}")
    if not built:
        first = str(errors[0]).strip().splitlines()[0] if errors else "no kernel"
        log.warning("polyhead: fused CPU attention kernel unavailable (%s); using the unfused path", first)
    return tuple(built)


def available() -> bool:
    """Whether a fused kernel is built and loaded (builds it on the first call)."""
    return bool(kernels())


def _ops(kernel: str) -> Any:  # a torch.ops namespace
    return torch.ops.polyhead_cpu if kernel == "avx512" else torch.ops.polyhead_cpu_portable


class _ShortAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, kernel: str) -> Tensor:  # type: ignore[override]
        out, weights = _ops(kernel).short_attention_forward(q, k, v, scale)
        ctx.save_for_backward(q, k, v, weights)
        ctx.scale, ctx.kernel = scale, kernel
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable  # no double backward: the kernel's backward has no derivative
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:  # type: ignore[override]
        q, k, v, weights = ctx.saved_tensors
        if grad.stride(-1) != 1:
            grad = grad.contiguous()
        dq, dk, dv = _ops(ctx.kernel).short_attention_backward(q, k, v, weights, grad, ctx.scale)
        return dq, dk, dv, None, None


def short_attention(
    q: Tensor, k: Tensor, v: Tensor, scale: float | None = None, *, kernel: str | None = None
) -> Tensor:
    """``softmax(q k^T * scale) v`` for ``q (B, H, L, D)``, ``k (B, H, S, D)``, ``v (B, H, S, Dv)`` on CPU.

    float32 or bfloat16 (mixed inputs are promoted; computation is float32), no mask or bias. The output is a
    ``(B, H, L, Dv)`` view of a ``(B, L, H, Dv)`` tensor. ``kernel``: ``avx512`` or ``portable`` (default:
    the measured :func:`choice`, else the first built). Needs :func:`available`.
    """
    built = kernels()
    if kernel is None:
        kernel = choice()["kernel"] or (built[0] if built else None)
    if kernel not in built:
        raise RuntimeError(f"fused CPU attention kernel {kernel!r} is not built here (built: {list(built)})")
    dtype = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    q, k, v = (t.to(dtype) if t.stride(-1) == 1 else t.to(dtype).contiguous() for t in (q, k, v))
    return _ShortAttention.apply(q, k, v, q.shape[-1] ** -0.5 if scale is None else scale, kernel)


def _fingerprint() -> str:
    cpu = platform.processor() or platform.machine()
    try:  # the model name tells two x86 machines apart; platform.processor() often just says x86_64
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    src = hashlib.sha256(
        b"".join(p.read_bytes() for p in (SOURCE, PORTABLE_SOURCE, GRADS_HEADER))
    ).hexdigest()[:12]
    return f"{cpu}|{capability()}|torch {torch.__version__}|{src}|threads {torch.get_num_threads()}"


def _time_ms(fn, shape: tuple[int, int, int, int], iters: int = 3) -> float:
    # The first `auto` dispatch may come from a validation step or a prediction (no_grad/inference mode):
    # the probe times forward + backward, so it needs autograd whatever the caller's mode.
    with torch.inference_mode(False), torch.enable_grad():
        return _time_fwd_bwd_ms(fn, shape, iters)


def _time_fwd_bwd_ms(fn, shape: tuple[int, int, int, int], iters: int) -> float:
    B, H, L, D = shape
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, L, H, D, generator=g).transpose(1, 2).requires_grad_() for _ in range(3))
    grad = torch.randn(B, H, L, D, generator=g)
    fn(q, k, v).backward(grad)  # warm-up (allocations, first-touch)
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        fn(q, k, v).backward(grad)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def measure() -> dict:
    """Forward + backward time of each fused kernel and of the unfused backends at :data:`PROBES`."""
    import torch.nn.functional as F

    from polyhead.attention.functional import math_attention

    paths = {
        "math": lambda q, k, v: math_attention(q, k, v)[0],
        "sdpa": F.scaled_dot_product_attention,
        **{name: functools.partial(short_attention, kernel=name) for name in kernels()},
    }
    times = {
        f"{L}x{D}": {p: round(_time_ms(fn, (B, H, L, D)), 3) for p, fn in paths.items()}
        for B, H, L, D in PROBES
    }
    # The fused kernel that wins the most probes, and the longest probe up to which it beats both unfused paths.
    best_kernel, max_keys = None, 0
    for name in kernels():
        wins = [
            L
            for (_, _, L, D) in PROBES
            if times[f"{L}x{D}"][name] < min(times[f"{L}x{D}"]["math"], times[f"{L}x{D}"]["sdpa"])
        ]
        faster = all(times[k][name] <= min(times[k][o] for o in kernels()) for k in times)
        keys = 0
        for _, _, L, _ in PROBES:  # contiguous from the shortest probe
            if L not in wins:
                break
            keys = L
        if keys > max_keys or (keys == max_keys and keys and faster):
            best_kernel, max_keys = name, keys
    return {"kernel": best_kernel, "max_keys": 128 if max_keys >= PROBES[-1][2] else max_keys, "ms": times}


@functools.cache
def choice() -> dict:
    """The measured choice for ``auto`` on this machine: ``{"kernel": name | None, "max_keys": int, "ms": ...}``.

    Read from the cache file when it holds this machine's fingerprint, else measured (about a second) and
    written there. A measurement taken while the machine was busy (1-minute load average at least its core
    count) is cached as provisional (``"busy": load``): processes started while the machine stays busy use
    it too, so they all train with the same kernel (a resumed run matches its first part), and the first
    process that finds the machine idle measures again and replaces it. ``kernel`` None: no fused kernel is
    faster here; ``auto`` keeps math/sdpa.
    """
    if not kernels():
        return {"kernel": None, "max_keys": 0, "ms": {}}
    key = _fingerprint()
    try:
        cached = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        cached = {}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = load >= (os.cpu_count() or 1)
    entry = cached.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("kernel") in (None, *kernels())
        and (busy or "busy" not in entry)
    ):
        return entry
    result = measure()
    if busy:
        # Timed while other work held every core (a test run, a training job): the fused kernels' threads
        # then lose most (a busy measurement once chose no kernel at 2.2x slower), so the entry is marked
        # and an idle process measures again.
        log.info("polyhead: CPU attention choice measured at load %.1f; cached as provisional", load)
        result = {**result, "busy": round(load, 2)}
    cached[key] = result
    try:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cached, indent=1))
        tmp.replace(CACHE)
    except OSError as err:  # a read-only home: measured again next time
        log.info("polyhead: cannot cache the CPU attention choice in %s (%s)", CACHE, err)
    return result
