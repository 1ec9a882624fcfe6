"""Kernel report: compile every shipped Triton configuration for sm_80 and sm_90 without a GPU.

    uv run python pipelines/bench/kernel_report.py [--out runs/bench/kernel_report.json] [--quick]

For each kernel (forward, backward dQ, backward dK/dV), dtype (fp16, bf16, fp32) and padded head dim (16, 32,
64, 128) at the default 64 x 64 layout block, with every optional feature on (bias, key padding, tiles,
causal, gate: the worst case for register pressure) and, for the forward at head dims 64 and 128, also with
none, plus the other layout blocks (16, 32, 128) for bf16 at head dim 64, ``triton.compile`` builds the
kernel for ``GPUTarget("cuda", 80|90, 32)`` with the launch settings the runtime uses
(``polyhead.attention.kernels.flash.launch_config``). The PTX is assembled with the ptxas that ships with
triton (``-v``) to read registers and spill bytes; shared memory comes from the compiled metadata; the PTX is
searched for ``mma.sync`` (sm_80 tensor cores) and ``wgmma.mma_async`` (sm_90 warpgroup MMA).

fp32 is shipped up to head dim 64 only (at 128 the dK/dV kernel spills; ``kernels.check`` refuses it and
names ``sdpa``), so fp32 / 128 is not compiled here. Checks: zero spills, shared memory within the architecture's per-block limit (sm_80: 163 KB, sm_90:
227 KB), mma on sm_80 and wgmma in the sm_90 bf16/fp16 forward on 64-row tiles (layout blocks of 16 or 32 query rows
give 16/32-row tiles, which wgmma cannot take: those use mma.sync). fp32 inputs run TF32 tensor-core dots on the
GPU (``ieee`` only under the interpreter). Exit code 1 if a check
fails. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}
DTYPES = {"fp16": "fp16", "bf16": "bf16", "fp32": "fp32"}
ALL_FEATURES = {"HAS_BIAS": True, "HAS_KPM": True, "HAS_TILE": True, "IS_CAUSAL": True}


def _signature(fn, dt: str, constexprs: dict) -> tuple[dict, dict]:
    typed = {"LSE": "*fp32", "Delta": "*fp32", "DBias": "*fp32", "DGate": "*fp32", "Kpm": "*i8", "Tile": "*i8",
             "Idx": "*i32", "Cnt": "*i32", "TileId": "*i32", "TQ": "*i32", "TSlot": "*i32", "TCnt": "*i32",
             "qk_scale": "fp32", "sm_scale": "fp32"}  # fmt: skip
    tensors = {"Q", "K", "V", "Out", "OU", "Bias", "Gate", "DO", "DOU", "DQ", "DK", "DV"}
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name in tensors:
            sig[name] = f"*{dt}"
        else:
            sig[name] = typed.get(name, "i32")
    # What the runtime specialises on for contiguous (B, H, L, D) inputs with D a multiple of 16:
    # 16-byte aligned pointers and row strides divisible by 16.
    aligned = [n for n in fn.arg_names if sig[n].startswith("*") or re.match(r"stride_[qkvo][bhmn]$", n)]
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    return sig, attrs


def compile_one(
    kernel: str, cc: int, dt: str, head_dim: int, block: int, features: dict, candidate: int = 0
) -> dict:
    import torch
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from polyhead.attention.kernels import flash

    fn = {"fwd": flash._fwd_kernel, "bwd_pre": flash._bwd_pre_kernel, "bwd_dq": flash._bwd_dq_kernel,
          "bwd_dkdv": flash._bwd_dkdv_kernel}[kernel]  # fmt: skip
    cons = {"HEAD_DIM": head_dim, "BLOCK_D": head_dim, "BLOCK_M": block, "BLOCK_N": block,
            "PRECISION": "tf32x3", "UPCAST": False,
            "HAS_BIAS": False, "HAS_KPM": False, "HAS_TILE": False, "IS_CAUSAL": False}  # fmt: skip
    cons.update(features)
    if kernel in ("fwd", "bwd_pre"):
        cons["HAS_GATE"] = features.get("HAS_BIAS", False)  # the gate rides with the "all features" build
    if kernel == "bwd_dq":
        cons["BIAS_GRAD"] = cons["HAS_BIAS"]
    if kernel == "bwd_pre":  # reads no scores: only the gate matters
        cons = {k: cons[k] for k in ("HEAD_DIM", "BLOCK_D", "HAS_GATE")}
    torch_dt = getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}.get(dt, "float32"))
    cfg = dict(flash.launch_configs(kernel, torch_dt, block, block, head_dim, cc)[candidate])
    opts = {k: cfg.pop(k) for k in ("num_warps", "num_stages")}
    cons.update(cfg)
    sig, attrs = _signature(fn, dt, cons)
    compiled = triton.compile(ASTSource(fn, sig, cons, attrs), target=GPUTarget("cuda", cc, 32), options=opts)
    ptx = compiled.asm["ptx"]
    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        arch = f"sm_{cc}a" if cc == 90 else f"sm_{cc}"
        info = subprocess.run(
            [str(ptxas), f"-arch={arch}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True, text=True, check=True,
        ).stderr  # fmt: skip
    regs = int(re.search(r"Used (\d+) registers", info).group(1))
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", info)
    return {
        "kernel": kernel, "arch": f"sm_{cc}", "dtype": dt, "head_dim": head_dim, "block": block,
        "features": "all" if features else "none", "candidate": candidate, **opts, **cfg,
        "registers": regs, "spill_stores": int(spill.group(1)), "spill_loads": int(spill.group(2)),
        "shared_bytes": int(compiled.metadata.shared), "smem_limit": SMEM_LIMIT[cc],
        "mma_sync": "mma.sync" in ptx, "wgmma": "wgmma.mma_async" in ptx,
    }  # fmt: skip


KERNELS = ("fwd", "bwd_pre", "bwd_dq", "bwd_dkdv")


def _candidates(kernel: str, cc: int, dt: str, d: int, block: int) -> range:
    import torch

    from polyhead.attention.kernels import flash

    torch_dt = getattr(torch, {"fp16": "float16", "bf16": "bfloat16"}.get(dt, "float32"))
    return range(len(flash.launch_configs(kernel, torch_dt, block, block, d, cc)))


def configurations(quick: bool) -> list[tuple]:
    """(kernel, arch, dtype, head dim, layout block, features, candidate) of every shipped configuration.

    Head dims 16-128 compile to BLOCK_D 16, 32, 64 or 128 (the next power of two), each with every feature
    on; the forward also without features (head dims 64 and 128); the layout blocks 16, 32 and 128 (64 is
    the default) for bf16 at head dim 64. Every autotuning candidate of ``flash.launch_configs`` is compiled.
    """
    dtypes = ["bf16"] if quick else list(DTYPES)
    dims = [64] if quick else [16, 32, 64, 128]
    out = []
    for cc in (80, 90):
        for dt in dtypes:
            for d in dims:
                if dt == "fp32" and d > 64:
                    continue  # not shipped: kernels.check refuses fp32 above head dim 64 (dK/dV spills)
                if d >= 64:
                    out.append(("fwd", cc, dt, d, 64, {}, 0))
                for kernel in KERNELS:
                    for c in _candidates(kernel, cc, dt, d, 64):
                        out.append((kernel, cc, dt, d, 64, dict(ALL_FEATURES), c))
        for block in () if quick else (16, 32, 128):
            for kernel in KERNELS:
                for c in _candidates(kernel, cc, "bf16", 64, block):
                    out.append((kernel, cc, "bf16", 64, block, dict(ALL_FEATURES), c))
    return out


def problems(row: dict) -> list[str]:
    out = []
    if row["spill_stores"] or row["spill_loads"]:
        out.append("spills")
    if row["shared_bytes"] > row["smem_limit"]:
        out.append("shared memory over the limit")
    if row["dtype"] != "fp32":
        if row["arch"] == "sm_80" and not row["mma_sync"] and row["kernel"] != "bwd_pre":
            out.append("no mma.sync")
        # wgmma works on 64-row warpgroup tiles: kernels on smaller layout blocks (16, 32) cannot use it.
        # The rows of a dot's first operand: queries in the forward and dQ, keys in dK/dV (scores transposed).
        rows = {"fwd": "SUB_M", "bwd_dq": "SUB_M", "bwd_dkdv": "SUB_N"}.get(row["kernel"])
        if row["arch"] == "sm_90" and rows and row[rows] >= 64 and not row["wgmma"]:
            out.append(f"no wgmma in {row['kernel']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/kernel_report.json"))
    ap.add_argument("--quick", action="store_true", help="bf16, head dim 64 only")
    ns = ap.parse_args()
    try:
        import triton  # noqa: F401
    except ImportError:
        print("kernel report: triton is not installed; nothing to compile")
        return 0
    rows = []
    hdr = (f"{'kernel':>9} {'arch':>6} {'dtype':>5} {'D':>4} {'block':>5} {'feat':>5} {'cand':>4} {'sub':>6} "
           f"{'warps':>5} {'stg':>3} {'regs':>5} {'spill':>6} {'smem KB':>8} {'mma':>4} {'wgmma':>6}  check")  # fmt: skip
    print(hdr)
    for kernel, cc, dt, d, block, feat, cand in configurations(ns.quick):
        r = compile_one(kernel, cc, dt, d, block, feat, cand)
        r["problems"] = problems(r)
        rows.append(r)
        print(
            f"{kernel:>9} {r['arch']:>6} {dt:>5} {d:>4} {block:>5} {r['features']:>5} {cand:>4} "
            f"{str(r['SUB_M']) + 'x' + str(r.get('SUB_N', '-')):>6} {r['num_warps']:>5} {r['num_stages']:>3} "
            f"{r['registers']:>5} {r['spill_stores'] + r['spill_loads']:>6} {r['shared_bytes'] / 1024:>8.1f} "
            f"{'yes' if r['mma_sync'] else 'no':>4} {'yes' if r['wgmma'] else 'no':>6}  "
            f"{'ok' if not r['problems'] else ', '.join(r['problems'])}",
            flush=True,
        )
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(rows, indent=2) + "\n")
    bad = [r for r in rows if r["problems"]]
    print(f"\n{len(rows)} configurations, {len(bad)} with problems; wrote {ns.out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
