"""Benchmark: every CPU attention path here: the fused kernels (``backend="cpu"``) against math and SDPA.

    uv run python pipelines/bench/cpu_attention.py [--threads 1] [--out runs/bench/cpu_attention.json]
    ATEN_CPU_CAPABILITY=avx2 uv run python pipelines/bench/cpu_attention.py   # as on an AVX2-only CPU

The paths compared: the unfused ``math`` path (``polyhead.attention.functional.math_attention``, eager
PyTorch ops), PyTorch's ``scaled_dot_product_attention`` (``sdpa``), and each fused kernel
``polyhead.attention.cpu`` built here: ``cpu:avx512`` (AVX-512 intrinsics, where the CPU has AVX-512) and
``cpu:portable`` (written over ``at::vec::Vectorized``, compiled for the capability PyTorch reports). The
CPU model, the capability and ``auto``'s measured choice are printed and recorded.

Forward + backward wall time (best of ``--rounds`` rounds of ``--iters`` calls, after a warm-up) on shapes
from AutoInt's field attention (batch 1024 x 2 heads, 39 keys, head dim 8) up to 1024 keys, in bfloat16 and
float32, with the heads laid out as a projection gives them ((B, L, H, D) memory, transposed). The output
gradient is random; glibc's allocator is tuned as for training (``polyhead.train.tune_cpu_allocator``).
``auto``'s own choice is measured on two probe shapes (``polyhead.attention.cpu.choice``); this table shows
the whole range. Prints it and writes JSON.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from polyhead.attention import cpu
from polyhead.attention.functional import math_attention
from polyhead.train import tune_cpu_allocator

# (B, H, L=S, D)
SHAPES = [(1024, 2, 39, 8), (256, 4, 64, 16), (64, 8, 128, 32), (16, 8, 256, 64), (2, 8, 1024, 64)]
UNFUSED = {
    "math": lambda q, k, v: math_attention(q, k, v)[0],
    "sdpa": F.scaled_dot_product_attention,
}


def paths() -> dict:
    """The unfused paths and every fused kernel built on this machine (``cpu:<kernel>``)."""
    fused = {f"cpu:{name}": functools.partial(cpu.short_attention, kernel=name) for name in cpu.kernels()}
    return {**UNFUSED, **fused}


def _cpuinfo(key: str) -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), "")


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_vector_flags() -> list[str]:
    """The CPU's vector extensions that matter here (what the hardware has; PyTorch's capability may be set lower)."""
    have = set(_cpuinfo("flags").split())
    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "asimd", "sve"]
    return [f for f in wanted if f in have]


def time_ms(fn, shape: tuple[int, int, int, int], dtype: torch.dtype, iters: int, rounds: int) -> float:
    B, H, L, D = shape
    q, k, v = (torch.randn(B, L, H, D, dtype=dtype).transpose(1, 2).requires_grad_() for _ in range(3))
    grad = torch.randn(B, H, L, D, dtype=dtype)

    def run() -> None:
        fn(q, k, v).backward(grad)

    run()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(iters):
            run()
        best = min(best, (time.perf_counter() - t0) / iters * 1000)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="runs/bench/cpu_attention.json")
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    tune_cpu_allocator()  # as in training: large temporaries are reused, not page-faulted in on every call
    backends = paths()
    fused = [b for b in backends if b.startswith("cpu:")]
    auto = cpu.choice()
    print(
        f"CPU: {cpu_model()} ({' '.join(cpu_vector_flags()) or 'no vector flags listed'}); "
        f"PyTorch capability {cpu.capability()}; fused kernels built: "
        f"{', '.join(fused) or 'none'}; auto's choice: {auto['kernel'] or 'unfused'} up to {auto['max_keys']} keys"
    )
    for fn in backends.values():  # first-call costs (thread pools, code pages) outside the table
        time_ms(fn, SHAPES[0], torch.bfloat16, 1, 1)
    rows = []
    print(f"forward + backward ms, {ns.threads} thread(s), best of {ns.rounds} x {ns.iters}")
    print(
        f"{'B, H, L=S, D':<22}{'dtype':<10}"
        + "".join(f"{b:>14}" for b in backends)
        + "".join(f"{'speedup ' + b.removeprefix('cpu:'):>18}" for b in fused)
    )
    for shape in SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            ms = {name: time_ms(fn, shape, dtype, ns.iters, ns.rounds) for name, fn in backends.items()}
            unfused = min(ms[b] for b in UNFUSED)
            speedup = {b: unfused / ms[b] for b in fused}
            rows.append(
                {"shape": shape, "dtype": str(dtype).removeprefix("torch."), "ms": ms, "speedup": speedup}
            )
            print(
                f"{shape!s:<22}{rows[-1]['dtype']:<10}"
                + "".join(f"{ms[b]:>14.1f}" for b in backends)
                + "".join(f"{speedup[b]:>18.2f}" for b in fused)
            )
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": ns.threads,
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_flags": cpu_vector_flags(),
        "capability": cpu.capability(),
        "fused_kernels": fused,
        "auto_choice": {"kernel": auto["kernel"], "max_keys": auto["max_keys"]},
    }
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
