"""Benchmark: CPU forward+backward time and peak memory of every attention variant vs dense SDPA.

    uv run python pipelines/bench/attention.py [--lengths 256 1024 4096] [--long 16384] [--variants ...]

For each variant and sequence length L (2-D variants use an sqrt(L) x sqrt(L) grid), one fresh
subprocess builds the module (dim 64, 4 heads, the paper's default windows; float32, batch 1, ``auto``
backend, i.e. the memory-efficient path) and measures:

- **time**: median wall time of forward + backward over several runs after a warm-up;
- **peak memory**: the growth of the process's peak resident set size (``ru_maxrss``) during one
  forward + backward, relative to the process after model and input creation. CPU PyTorch has no
  allocator statistics; a fresh process per case makes the high-water mark attributable to that case.

Ratios are against ``mha`` through SDPA measured in the same run at the same L. At ``--long`` L (default
16384) the windowed/strided variants also run, and are compared with dense SDPA given the explicit
``(L, L)`` mask that a generic implementation would need; the target is less than 1/4 of its memory.
Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LINEAR_MEMORY = ["halo", "multi_axis", "lsda", "s2", "dma"]
DIM, HEADS = 64, 4


def _case(name: str, L: int, repeats: int) -> dict:
    """Runs inside the subprocess."""
    import torch

    from polyhead.attention import create_attention, get_attention_class
    from polyhead.attention.functional import attention

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    side = math.isqrt(L)
    if name == "dense_explicit_mask":
        # What a generic implementation needs for a windowed pattern: the mha module (same projections)
        # with SDPA given the explicit (L, L) mask (HaloNet's pattern here).
        from polyhead.attention.variants.halo import halo_pattern

        m = create_attention("mha", dim=DIM, num_heads=HEADS)
        x = torch.randn(1, L, DIM, requires_grad=True)
        keep = halo_pattern(side, side, 8, 3)[None, None]

        def run() -> torch.Tensor:
            q = m.q_proj(x).view(1, L, HEADS, -1).transpose(1, 2)
            k = m.k_proj(x).view(1, L, HEADS, -1).transpose(1, 2)
            v = m.v_proj(x).view(1, L, HEADS, -1).transpose(1, 2)
            o = attention(q, k, v, mask=keep, backend="sdpa")
            return m.out_proj(o.transpose(1, 2).reshape(1, L, DIM))

        params: list = [x, *m.parameters()]
    else:
        cls = get_attention_class(name)
        m = create_attention(name, dim=DIM, num_heads=HEADS)
        if name == "mha":
            m.backend = "sdpa"
        x = torch.randn(1, L, DIM, requires_grad=True)
        shape = (side, side) if cls.needs_shape else None
        if cls.needs_shape and side * side != L:
            raise ValueError(f"{name} needs a square grid; L={L} is not a square")

        def run() -> torch.Tensor:
            return m(x, shape=shape).output

        params = [x, *m.parameters()]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = run()
    out.float().square().mean().backward()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    times = []
    for _ in range(repeats):
        for p in params:
            p.grad = None
        t0 = time.perf_counter()
        run().float().square().mean().backward()
        times.append(time.perf_counter() - t0)
    return {"variant": name, "L": L, "time_s": statistics.median(times), "peak_mb": max(peak_kb, 0) / 1024}


def _measure(name: str, L: int, repeats: int, timeout: int) -> dict:
    cmd = [sys.executable, __file__, "--_case", name, str(L), str(repeats)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"variant": name, "L": L, "error": f"timeout after {timeout}s"}
    if res.returncode != 0:
        return {
            "variant": name,
            "L": L,
            "error": res.stderr.strip().splitlines()[-1] if res.stderr else "failed",
        }
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="*", default=[256, 1024, 4096])
    ap.add_argument("--long", type=int, default=16384, help="L for the linear-memory variants (0 to skip)")
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--out", default="runs/bench/attention.json")
    ap.add_argument("--_case", nargs=3, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._case:
        name, L, repeats = ns._case
        print(json.dumps(_case(name, int(L), int(repeats))))
        return

    from polyhead.attention import list_attention

    variants = ns.variants or list_attention()
    rows = []
    for L in ns.lengths:
        base = _measure("mha", L, ns.repeats, ns.timeout)
        rows.append({**base, "baseline": "mha/sdpa"})
        for name in variants:
            if name == "mha":
                continue
            r = _measure(name, L, ns.repeats, ns.timeout)
            if "error" not in r and "error" not in base:
                r["time_ratio"] = r["time_s"] / base["time_s"]
                r["mem_ratio"] = r["peak_mb"] / max(base["peak_mb"], 1e-6)
            rows.append(r)
            print(json.dumps(r), flush=True)
    if ns.long:
        L = ns.long
        dense = _measure("dense_explicit_mask", L, 1, ns.timeout)
        base = _measure("mha", L, 1, ns.timeout)
        rows += [{**dense, "baseline": "dense sdpa + explicit mask"}, {**base, "baseline": "mha/sdpa"}]
        for name in [v for v in LINEAR_MEMORY if v in variants]:
            r = _measure(name, L, 1, ns.timeout)
            if "error" not in r and "error" not in dense:
                r["mem_vs_dense_mask"] = r["peak_mb"] / max(dense["peak_mb"], 1e-6)
                r["under_quarter"] = r["mem_vs_dense_mask"] < 0.25
                if "error" not in base:
                    r["time_ratio"] = r["time_s"] / base["time_s"]
            rows.append(r)
            print(json.dumps(r), flush=True)

    print(
        f"\n{'variant':<20}{'L':>7}{'time ms':>11}{'peak MB':>10}{'t/mha':>8}{'mem/mha':>9}{'mem/dense+mask':>16}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['variant']:<20}{r['L']:>7}  error: {r['error']}")
            continue
        tr = f"{r['time_ratio']:.2f}" if "time_ratio" in r else "-"
        mr = f"{r['mem_ratio']:.2f}" if "mem_ratio" in r else "-"
        dm = (
            f"{r['mem_vs_dense_mask']:.3f}" + (" ok" if r.get("under_quarter") else " FAIL")
            if "mem_vs_dense_mask" in r
            else "-"
        )
        print(
            f"{r['variant']:<20}{r['L']:>7}{1000 * r['time_s']:>11.1f}{r['peak_mb']:>10.1f}{tr:>8}{mr:>9}{dm:>16}"
        )
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"machine": platform.platform(), "processor": platform.processor(), "dim": DIM, "heads": HEADS}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
