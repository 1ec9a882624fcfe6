"""Benchmark: the fused CPU attention kernel (``backend="cpu"``) against the math and SDPA backends.

    uv run python pipelines/bench/cpu_attention.py [--threads 1] [--out runs/bench/cpu_attention.json]

Forward + backward wall time (best of ``--rounds`` rounds of ``--iters`` calls, after a warm-up) on shapes
from AutoInt's field attention (batch 1024 x 2 heads, 39 keys, head dim 8) up to 1024 keys, in bfloat16 and
float32, with the heads laid out as a projection gives them ((B, L, H, D) memory, transposed). The output
gradient is random; glibc's allocator is tuned as for training (``polyhead.train.tune_cpu_allocator``).
``functional.CPU_FUSED_MAX_KEYS`` (where ``auto`` stops choosing the kernel) comes from
this table. Prints it and writes JSON.
"""

from __future__ import annotations

import argparse
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
BACKENDS = {
    "math": lambda q, k, v: math_attention(q, k, v)[0],
    "sdpa": F.scaled_dot_product_attention,
    "cpu": cpu.short_attention,
}


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
    if not cpu.available():
        raise SystemExit("the fused CPU kernel is not available here (needs AVX-512 and a C++ compiler)")
    torch.set_num_threads(ns.threads)
    tune_cpu_allocator()  # as in training: large temporaries are reused, not page-faulted in on every call
    for fn in BACKENDS.values():  # first-call costs (thread pools, code pages) outside the table
        time_ms(fn, SHAPES[0], torch.bfloat16, 1, 1)
    rows = []
    print(f"forward + backward ms, {ns.threads} thread(s), best of {ns.rounds} x {ns.iters}")
    print(
        f"{'B, H, L=S, D':<22}{'dtype':<10}"
        + "".join(f"{b:>9}" for b in BACKENDS)
        + f"{'best other / cpu':>18}"
    )
    for shape in SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            ms = {name: time_ms(fn, shape, dtype, ns.iters, ns.rounds) for name, fn in BACKENDS.items()}
            speedup = min(ms["math"], ms["sdpa"]) / ms["cpu"]
            rows.append(
                {"shape": shape, "dtype": str(dtype).removeprefix("torch."), "ms": ms, "speedup": speedup}
            )
            print(
                f"{shape!s:<22}{rows[-1]['dtype']:<10}"
                + "".join(f"{ms[b]:>9.1f}" for b in BACKENDS)
                + f"{speedup:>18.2f}"
            )
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "threads": ns.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
