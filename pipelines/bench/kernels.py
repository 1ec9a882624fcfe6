"""Benchmark: polyhead's Triton block-sparse attention vs SDPA (flash) and FlexAttention on CUDA.

    uv run python pipelines/bench/kernels.py [--lengths 1024,4096,16384,32768] [--dtype bf16] [--reps 30]

For each sequence length and pattern (dense causal; S2 strided shards, shifted per head, + local blocks at
two densities; sliding window + sinks), times forward and forward+backward with CUDA events (warm-up first, median of ``--reps`` runs,
inputs rotated over 3 copies so no run reuses a cached operand) for:

- ``triton``: ``polyhead.attention.kernels.attention`` with the pattern's :class:`TiledLayout`;
- ``flex``: ``torch.nn.attention.flex_attention`` (compiled) with the same ``mask_mod`` as a ``BlockMask`` at
  FlexAttention's default 128 x 128 blocks;
- ``sdpa``: ``F.scaled_dot_product_attention`` with the flash backend (dense causal only: SDPA cannot skip
  blocks, so for sparse patterns it is the dense-causal cost, the baseline a user replaces).

TFLOP/s count only the attended blocks (4 * B * H * attended_blocks * block^2 * D forward, 3.5x that for
forward + backward: the backward is 2.5 forwards), so sparse and dense runs are comparable. Ratios are against SDPA at the same length.
On a machine without CUDA it says so and exits 0. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def _time(fn, reps: int) -> float:
    start = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for _ in range(3):
        fn(0)
    torch.cuda.synchronize()
    for i in range(reps):
        start[i].record()
        fn(i)
        end[i].record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(start, end)) / 1e3


def _patterns(L: int, block: int):
    from polyhead.attention.variants.duo import streaming_mask_mod
    from polyhead.attention.variants.s2 import s2_mask_mod

    return {
        "dense-causal": lambda b, h, q, k: k <= q,
        "s2-stride4": s2_mask_mod(block_size=block, local_blocks=4, vert_stride=4, head_step=1, causal=True),
        "s2-stride16": s2_mask_mod(
            block_size=block, local_blocks=4, vert_stride=16, head_step=1, causal=True
        ),
        "window+sinks": streaming_mask_mod(4 * block, 16 * block),
    }


def _bench_length(L: int, ns: argparse.Namespace, dtype: torch.dtype, flex, rows: list[dict]) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask

    from polyhead.attention import kernels
    from polyhead.attention.layouts import tiled_layout_from_mask_mod

    B, H, D, blk = ns.batch, ns.heads, ns.head_dim, ns.block
    qs = [torch.randn(B, H, L, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3)]
    ks = [torch.randn(B, H, L, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3)]
    vs = [torch.randn(B, H, L, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3)]
    do = torch.randn(B, H, L, D, device="cuda", dtype=dtype)

    def sdpa_fwd(i: int) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(
                qs[i % 3], ks[i % 3], vs[i % 3], is_causal=True
            )

    def fwd_bwd(fn):
        # autograd.grad, not backward(): no .grad accumulation kernels in the timed region
        return lambda i: torch.autograd.grad(fn(i), (qs[i % 3], ks[i % 3], vs[i % 3]), do)

    t_sdpa = _time(sdpa_fwd, ns.reps)
    t_sdpa_fb = _time(fwd_bwd(sdpa_fwd), ns.reps)
    for name, mm in _patterns(L, blk).items():
        Hl = H if name.startswith("s2") else 1  # S2 shifts its strided shards per head
        layout = tiled_layout_from_mask_mod(mm, Hl, L, L, blk, blk, device=torch.device("cuda"))
        attended = int(layout.counts.sum()) * B * (H // layout.counts.shape[1])
        flops = 4 * attended * blk * blk * D
        # FlexAttention at its own block size (its H100 kernels need 128-row blocks): the same pairs attended
        bm = create_block_mask(mm, None, Hl if Hl > 1 else None, L, L, device="cuda")
        impls = {
            "triton": lambda i, layout=layout: kernels.attention(
                qs[i % 3], ks[i % 3], vs[i % 3], block_mask=layout
            ),
            "flex": lambda i, bm=bm: flex(qs[i % 3], ks[i % 3], vs[i % 3], block_mask=bm),
        }
        if name == "dense-causal":
            impls["sdpa"] = sdpa_fwd
        for impl, fn in impls.items():
            t_f = t_sdpa if impl == "sdpa" else _time(fn, ns.reps)
            t_fb = t_sdpa_fb if impl == "sdpa" else _time(fwd_bwd(fn), ns.reps)
            row = {"L": L, "pattern": name, "density": layout.density, "impl": impl, "fwd_s": t_f,
                   "fwd_tflops": flops / t_f / 1e12, "fb_s": t_fb, "fb_tflops": 3.5 * flops / t_fb / 1e12,
                   "speedup_vs_sdpa_fb": t_sdpa_fb / t_fb}  # fmt: skip
            rows.append(row)
            print(f"{L:>6} {name:>13} {layout.density:>8.3f} {impl:>7} {1e3 * t_f:>8.2f} {row['fwd_tflops']:>9.1f} "
                  f"{1e3 * t_fb:>8.2f} {row['fb_tflops']:>9.1f} {row['speedup_vs_sdpa_fb']:>10.2f}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="1024,4096,16384,32768")
    ap.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/kernels.json"))
    ns = ap.parse_args()
    if not torch.cuda.is_available():
        print("kernels benchmark: no CUDA device on this machine; nothing to time (run it on a GPU).")
        return 0
    from torch.nn.attention.flex_attention import flex_attention

    dtype = torch.bfloat16 if ns.dtype == "bf16" else torch.float16
    flex = torch.compile(flex_attention, dynamic=False)
    rows: list[dict] = []
    print(f"{'L':>6} {'pattern':>13} {'density':>8} {'impl':>7} {'fwd ms':>8} {'fwd TF/s':>9} {'f+b ms':>8} "
          f"{'f+b TF/s':>9} {'x sdpa f+b':>10}")  # fmt: skip
    for L in (int(x) for x in ns.lengths.split(",")):
        _bench_length(L, ns, dtype, flex, rows)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=2) + "\n")
    print(f"wrote {ns.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
