"""Benchmark: CPU forward+backward time and peak memory of every attention variant vs dense SDPA.

    uv run python pipelines/bench/attention.py [--lengths 256 1024 4096] [--long 16384] [--variants ...]

For each variant and sequence length L (2-D variants use an sqrt(L) x sqrt(L) grid), one fresh
subprocess builds the module (dim 64, 4 heads, the paper's default windows; float32, batch 1, ``auto``
backend, i.e. the memory-efficient path) and measures:

- **time**: median wall time of forward + backward over several runs after a warm-up;
- **peak memory**: the growth of the process's peak resident set size during one forward + backward,
  relative to the process after model and input creation. CPU PyTorch has no allocator statistics; a
  fresh process per case makes the high-water mark attributable to that case. Before the measured pass
  the same module runs one forward + backward on a small input (L = 256), so that one-time costs that do
  not depend on L (Python modules imported on first use, e.g. ``torch.utils.checkpoint`` pulls in about
  150 MB of ``torch._dynamo``; thread pools; kernel code pages) are not charged to the case; the peak is
  then reset (``/proc/self/clear_refs``, Linux) and its growth measured. ``--cold`` skips the warm-up
  (the measurement used before, which charges those one-time costs to each case). Memory and time are
  measured in separate processes: the memory process runs with ``MALLOC_MMAP_THRESHOLD_=131072``, so
  glibc serves every block >= 128 KiB by its own mmap and returns it when freed. With glibc's default
  adaptive threshold, freed medium-sized blocks stay in its heaps and per-thread arenas and peak RSS
  depends on the order of allocations more than on the memory in use (``--glibc-default`` measures that
  way instead). The timing process uses the default allocator.

Ratios are against ``mha`` through SDPA measured in the same run at the same L. At ``--long`` L (default
16384) the windowed/strided variants also run, and are compared with dense SDPA given the explicit
``(L, L)`` mask that a generic implementation would need; the target is less than 1/4 of its memory.
Writes JSON (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LINEAR_MEMORY = ["halo", "multi_axis", "lsda", "s2", "dma"]
DIM, HEADS = 64, 4


WARMUP_L = 256
MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial default, fixed for the memory process


def _rss_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(field + r":\s+(\d+) kB", f.read())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def _reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _case(name: str, L: int, repeats: int, warmup: bool = True, what: str = "memory") -> dict:
    """Runs inside the subprocess: ``what`` is ``memory`` (one measured pass) or ``time`` (``repeats`` runs)."""
    import torch

    from polyhead.attention import create_attention, get_attention_class
    from polyhead.attention.functional import attention

    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if name == "dense_explicit_mask":
        # What a generic implementation needs for a windowed pattern: the mha module (same projections)
        # with SDPA given the explicit (L, L) mask (HaloNet's pattern here).
        from polyhead.attention.variants.halo import halo_pattern

        m = create_attention("mha", dim=DIM, num_heads=HEADS)

        def make_run(n: int):
            side = math.isqrt(n)
            x = torch.randn(1, n, DIM, requires_grad=True)
            keep = halo_pattern(side, side, 8, 3)[None, None]

            def run() -> torch.Tensor:
                q = m.q_proj(x).view(1, n, HEADS, -1).transpose(1, 2)
                k = m.k_proj(x).view(1, n, HEADS, -1).transpose(1, 2)
                v = m.v_proj(x).view(1, n, HEADS, -1).transpose(1, 2)
                o = attention(q, k, v, mask=keep, backend="sdpa")
                return m.out_proj(o.transpose(1, 2).reshape(1, n, DIM))

            return run, x

    else:
        cls = get_attention_class(name)
        m = create_attention(name, dim=DIM, num_heads=HEADS)
        if name == "mha":
            m.backend = "sdpa"

        def make_run(n: int):
            side = math.isqrt(n)
            if cls.needs_shape and side * side != n:
                raise ValueError(f"{name} needs a square grid; L={n} is not a square")
            shape = (side, side) if cls.needs_shape else None
            x = torch.randn(1, n, DIM, requires_grad=True)

            def run() -> torch.Tensor:
                return m(x, shape=shape).output

            return run, x

    if warmup:
        run_small, _ = make_run(WARMUP_L)
        run_small().float().square().mean().backward()
        del run_small
    run, x = make_run(L)
    params = [x, *m.parameters()]

    def step() -> None:
        for p in params:
            p.grad = None
        run().float().square().mean().backward()

    def timed() -> list[float]:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        return times

    def peak_growth_mb() -> float:
        if _reset_peak() and _rss_mb("VmHWM") is not None:
            before = _rss_mb("VmRSS")
            step()
            return _rss_mb("VmHWM") - before
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no reset: growth of ru_maxrss (kB)
        step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    if what == "memory":
        threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_")
        return {
            "variant": name,
            "L": L,
            "peak_mb": max(peak_growth_mb(), 0.0),
            "allocator": f"MALLOC_MMAP_THRESHOLD_={threshold}" if threshold else "glibc default",
        }
    return {"variant": name, "L": L, "time_s": statistics.median(timed())}


def _run_case(name: str, L: int, repeats: int, timeout: int, flags: list[str], what: str, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--_case", name, str(L), str(repeats), "--_what", what, *flags]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"{what}: timeout after {timeout}s"}
    if res.returncode != 0:
        return {"error": f"{what}: " + (res.stderr.strip().splitlines()[-1] if res.stderr else "failed")}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _measure(name: str, L: int, repeats: int, timeout: int, flags: list[str]) -> dict:
    """Peak memory (own process, large blocks mmapped unless ``--glibc-default``) and time (own process)."""
    mem_env = dict(os.environ)
    if "--glibc-default" not in flags:
        mem_env["MALLOC_MMAP_THRESHOLD_"] = str(MMAP_THRESHOLD)
    mem = _run_case(name, L, repeats, timeout, flags, "memory", mem_env)
    tim = _run_case(name, L, repeats, timeout, flags, "time", dict(os.environ))
    out = {"variant": name, "L": L, **mem, **tim}
    if "error" in mem or "error" in tim:
        out["error"] = "; ".join(r["error"] for r in (mem, tim) if "error" in r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="*", default=[256, 1024, 4096])
    ap.add_argument("--long", type=int, default=16384, help="L for the linear-memory variants (0 to skip)")
    ap.add_argument("--variants", nargs="+", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--long-repeats", type=int, default=1, help="timed runs per case at --long L")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--out", default="runs/bench/attention.json")
    ap.add_argument("--cold", action="store_true", help="no warm-up pass: charge one-time costs to each case")
    ap.add_argument(
        "--glibc-default",
        action="store_true",
        help="measure memory under glibc's adaptive mmap threshold (peak RSS then includes freed blocks it keeps)",
    )
    ap.add_argument("--_case", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_what", default="memory", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._case:
        name, L, repeats = ns._case
        print(json.dumps(_case(name, int(L), int(repeats), warmup=not ns.cold, what=ns._what)))
        return

    from polyhead.attention import list_attention

    variants = ns.variants or list_attention()
    flags = (["--cold"] if ns.cold else []) + (["--glibc-default"] if ns.glibc_default else [])
    rows = []
    for L in ns.lengths:
        base = _measure("mha", L, ns.repeats, ns.timeout, flags)
        rows.append({**base, "baseline": "mha/sdpa"})
        for name in variants:
            if name == "mha":
                continue
            r = _measure(name, L, ns.repeats, ns.timeout, flags)
            if "error" not in r and "error" not in base:
                r["time_ratio"] = r["time_s"] / base["time_s"]
                if base["peak_mb"] >= 1.0:  # below 1 MB the baseline's growth is noise, not a denominator
                    r["mem_ratio"] = r["peak_mb"] / base["peak_mb"]
            rows.append(r)
            print(json.dumps(r), flush=True)
    if ns.long:
        L = ns.long
        dense = _measure("dense_explicit_mask", L, ns.long_repeats, ns.timeout, flags)
        base = _measure("mha", L, ns.long_repeats, ns.timeout, flags)
        rows += [{**dense, "baseline": "dense sdpa + explicit mask"}, {**base, "baseline": "mha/sdpa"}]
        for name in [v for v in LINEAR_MEMORY if v in variants]:
            r = _measure(name, L, ns.long_repeats, ns.timeout, flags)
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
    meta = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "dim": DIM,
        "heads": HEADS,
        "warmup_L": None if ns.cold else WARMUP_L,
        "memory_allocator": "glibc default"
        if ns.glibc_default
        else f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD}",
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
