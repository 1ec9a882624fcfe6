"""Benchmark: polyhead's Triton block-sparse attention vs FlexAttention and SDPA (flash) on CUDA.

    uv run python pipelines/bench/kernels.py [--suite core|coverage|all] [--lengths 4096,16384] [--reps 20]
        [--out runs/bench/kernels.json] [--write-table PATH] [--dry-run]

Each *setting* (batch, heads, head dim, dtype, key padding) is timed on *patterns* at each length:

- 1-D: dense causal; S2 strided shards (shifted per head) + 4 local blocks at strides 4 and 16; causal
  sliding window (16 blocks) + 4 sink blocks;
- 2-D (tokens of a square ``sqrt(L) x sqrt(L)`` image, row-major): HaloNet (blocks of 8 with a halo of 4) and
  MaxViT block and grid attention (window 8).

``--suite core`` is issue 22's acceptance set (B 1, H 16, D 64, bf16, the four 1-D patterns at 4096 and 16384);
``coverage`` adds head dim 128 and fp16 (dense causal, S2 stride 4; L 16384), batch 4 with key padding (dense
causal, S2 stride 4, window + sinks; L 4096) and the HaloNet and MaxViT layouts (L 16384); ``all`` both.
Forward and forward + backward are timed with CUDA events (3 warm-ups, which also run the backward's
autotuning, then the median of ``--reps``; inputs rotated over 3 copies; gradients by ``autograd.grad``) for:

- ``triton``: ``polyhead.attention.kernels.attention`` with the pattern's :class:`TiledLayout` (64 blocks);
- ``flex``: compiled ``flex_attention`` with the same ``mask_mod`` (key padding folded into it) as a
  ``BlockMask`` at FlexAttention's default 128 x 128 blocks;
- ``sdpa``: ``F.scaled_dot_product_attention`` (flash backend; with key padding a boolean mask, which SDPA
  serves with another backend), dense causal only: SDPA cannot skip blocks.

TFLOP/s count the attended layout blocks (4 * B * H * blocks * 64^2 * D forward, 3.5x that for forward +
backward: the backward is 2.5 forwards) and are also given as a fraction of the device's bf16/fp16
matrix-product peak, measured in the same run (``torch.mm`` at 8192^3, median of 20). Each pattern row also
says what ``auto`` (``functional.select_backend``, with the measured table as shipped when the run started)
picks for a forward-only and a forward + backward call, and how far that is from the fastest.
``--write-table PATH`` writes the measured table (``polyhead/attention/kernels/measured.json`` format) with
this device's entry replaced by this run's rows. ``--dry-run`` lists the planned runs and exits (no CUDA
needed: CI checks the arguments). Without CUDA (and without ``--dry-run``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PATTERNS_1D = ("dense-causal", "s2-stride4", "s2-stride16", "window+sinks")
PATTERNS_2D = ("halo", "maxvit-block", "maxvit-grid")
BLOCK = 64


@dataclass(frozen=True)
class Setting:
    batch: int
    heads: int
    head_dim: int
    dtype: str
    key_padding: bool
    lengths: tuple[int, ...]
    patterns: tuple[str, ...]


def plan(suite: str, lengths: tuple[int, ...] | None) -> list[Setting]:
    """The settings of a suite; ``lengths`` overrides every setting's lengths."""
    core = [Setting(1, 16, 64, "bf16", False, (4096, 16384), PATTERNS_1D)]
    # a dense and a sparse pattern per variation (FlexAttention compiles once per pattern and shape: the
    # whole suite has to fit a few minutes of GPU time)
    coverage = [
        Setting(1, 16, 128, "bf16", False, (16384,), ("dense-causal", "s2-stride4")),
        Setting(1, 16, 64, "fp16", False, (16384,), ("dense-causal", "s2-stride4")),
        Setting(4, 16, 64, "bf16", True, (4096,), ("dense-causal", "s2-stride4", "window+sinks")),
        # 128 x 128 image tokens: HaloNet and MaxViT layouts (dense causal at this setting is in the core)
        Setting(1, 16, 64, "bf16", False, (16384,), PATTERNS_2D),
    ]
    chosen = {"core": core, "coverage": coverage, "all": core + coverage}[suite]
    if lengths:
        chosen = [Setting(**{**asdict(s), "lengths": lengths}) for s in chosen]
    for s in chosen:
        for L in s.lengths:
            if set(s.patterns) & set(PATTERNS_2D) and math.isqrt(L) ** 2 != L:
                raise SystemExit(f"kernels bench: the 2-D layouts need a square length, got {L}")
    return chosen


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


def matmul_peak_tflops(dtype: torch.dtype, n: int = 8192, reps: int = 20) -> float:
    """Measured dense matrix-product throughput of this device (TFLOP/s) at ``n^3``."""
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 / _time(lambda i: torch.mm(a, b), reps) / 1e12


def _mask_mod(name: str, L: int, device: torch.device):
    """(mask_mod, heads the pattern varies over: None = shared) of a benchmark pattern."""
    from polyhead.attention.variants.duo import streaming_mask_mod
    from polyhead.attention.variants.halo import halo_mask_mod
    from polyhead.attention.variants.s2 import s2_mask_mod
    from polyhead.attention.windows import group_coords

    if name == "dense-causal":
        return (lambda b, h, q, k: k <= q), False
    if name.startswith("s2-stride"):
        stride = int(name.removeprefix("s2-stride"))
        mm = s2_mask_mod(block_size=BLOCK, local_blocks=4, vert_stride=stride, head_step=1, causal=True)
        return mm, True  # S2 shifts its strided shards per head
    if name == "window+sinks":
        return streaming_mask_mod(4 * BLOCK, 16 * BLOCK), False
    side = math.isqrt(L)
    if name == "halo":
        return halo_mask_mod(side, side, 8, 4), False
    if name.startswith("maxvit-"):
        gid, _ = group_coords(side, side, 8, name.removeprefix("maxvit-"), device)
        return (lambda b, h, q, k: gid[q] == gid[k]), False
    raise ValueError(f"unknown pattern {name!r}")


def _auto(feats_row: dict, grad: bool, table: dict, device_name: str, cap: tuple[int, int]) -> str:
    from polyhead.attention.kernels import measured

    feats = {"S": feats_row["L"], "bias": False, "gqa": False, **feats_row}
    got = measured.choose(
        feats,
        grad=grad,
        candidates=("triton", "flex"),
        device_name=device_name,
        capability=cap,
        table=table,
    )
    return got or "flex"


def _bench(s: Setting, L: int, ns: argparse.Namespace, flex, peak: float, shipped: dict) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import and_masks, create_block_mask

    from polyhead.attention import kernels
    from polyhead.attention.kernels import measured
    from polyhead.attention.layouts import tiled_layout_from_mask_mod

    dev = torch.device("cuda")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[s.dtype]
    B, H, D = s.batch, s.heads, s.head_dim
    g = torch.Generator(device=dev).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, device=dev, dtype=dtype, generator=g).requires_grad_()

    qs, ks, vs = ([randn(B, H, L, D) for _ in range(3)] for _ in range(3))
    do = torch.randn(B, H, L, D, device=dev, dtype=dtype, generator=g)
    kpm = None
    if s.key_padding:  # each sequence keeps its first 50-100 % keys
        lens = torch.randint(L // 2, L + 1, (B,), device=dev, generator=g)
        kpm = torch.arange(L, device=dev)[None, :] < lens[:, None]
    device_name, cap = torch.cuda.get_device_name(), torch.cuda.get_device_capability()

    def fwd_bwd(fn):
        # autograd.grad, not backward(): no .grad accumulation kernels in the timed region
        return lambda i: torch.autograd.grad(fn(i), (qs[i % 3], ks[i % 3], vs[i % 3]), do)

    rows = []
    for name in s.patterns:
        mm, per_head = _mask_mod(name, L, dev)
        Hl = H if per_head else 1
        layout = tiled_layout_from_mask_mod(mm, Hl, L, L, BLOCK, BLOCK, device=dev)
        attended = int(layout.counts.sum()) * B * (H // layout.counts.shape[1])
        flops = 4 * attended * BLOCK * BLOCK * D
        flex_mm = mm
        if kpm is not None:

            def pad_mod(b, h, q, k, kpm=kpm):
                return kpm[b, k]

            flex_mm = and_masks(mm, pad_mod)
        bm = create_block_mask(
            flex_mm, B if kpm is not None else None, Hl if per_head else None, L, L, device=dev
        )
        feats = {"L": L, "pattern": name, "head_dim": D, "dtype": s.dtype, "key_padding": s.key_padding,
                 **measured.block_mask_features(bm)}  # fmt: skip
        impls = {
            "triton": lambda i, layout=layout: kernels.attention(
                qs[i % 3], ks[i % 3], vs[i % 3], block_mask=layout, mask=kpm
            ),
            "flex": lambda i, bm=bm: flex(qs[i % 3], ks[i % 3], vs[i % 3], block_mask=bm),
        }
        if name == "dense-causal":
            if kpm is None:

                def sdpa(i):
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        return torch.nn.functional.scaled_dot_product_attention(
                            qs[i % 3], ks[i % 3], vs[i % 3], is_causal=True
                        )
            else:
                keep = kpm[:, None, None, :] & torch.ones(L, L, dtype=torch.bool, device=dev).tril()

                def sdpa(i, keep=keep):
                    return torch.nn.functional.scaled_dot_product_attention(
                        qs[i % 3], ks[i % 3], vs[i % 3], attn_mask=keep
                    )

            impls["sdpa"] = sdpa
        ms = {"fwd": {}, "fwd_bwd": {}}
        for impl, fn in impls.items():
            t_f = _time(fn, ns.reps)
            t_fb = _time(fwd_bwd(fn), ns.reps)
            ms["fwd"][impl], ms["fwd_bwd"][impl] = 1e3 * t_f, 1e3 * t_fb
            row = {**asdict(s), "lengths": None, "patterns": None, **feats, "layout_density": layout.density,
                   "impl": impl, "fwd_ms": 1e3 * t_f, "fb_ms": 1e3 * t_fb,
                   "fwd_tflops": flops / t_f / 1e12, "fb_tflops": 3.5 * flops / t_fb / 1e12}  # fmt: skip
            row["fwd_frac_peak"] = row["fwd_tflops"] / peak
            row["fb_frac_peak"] = row["fb_tflops"] / peak
            rows.append(row)
            print(f"{s.dtype:>5} {B:>2} {D:>4} {'kpm' if kpm is not None else '':>3} {L:>6} {name:>13} "
                  f"{layout.density:>7.3f} {impl:>7} {row['fwd_ms']:>8.3f} {row['fwd_tflops']:>8.1f} "
                  f"{row['fwd_frac_peak']:>6.1%} {row['fb_ms']:>8.3f} {row['fb_tflops']:>8.1f} "
                  f"{row['fb_frac_peak']:>6.1%}", flush=True)  # fmt: skip
        summary = {**feats, "batch": B, "heads": H, "ms": ms, "summary": True}
        for mode, grad in (("fwd", False), ("fwd_bwd", True)):
            choice = _auto(feats, grad, shipped, device_name, cap)
            best = min(ms[mode].values())
            summary[f"auto_{mode}"] = choice
            summary[f"auto_{mode}_vs_best"] = ms[mode][choice] / best
        rows.append(summary)
        print(f"{'':>38} auto: fwd -> {summary['auto_fwd']} ({summary['auto_fwd_vs_best']:.2f}x best), "
              f"fwd+bwd -> {summary['auto_fwd_bwd']} ({summary['auto_fwd_bwd_vs_best']:.2f}x best)")  # fmt: skip
    return rows


def table_entry(rows: list[dict], command: str, device: str, capability: tuple[int, int]) -> dict:
    """This run's entry of the measured table (``kernels/measured.json``): one row per pattern summary."""
    keep = ("L", "pattern", "head_dim", "dtype", "key_padding", "block_density", "per_head", "batch", "ms")
    return {
        "device": device,
        "capability": list(capability),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "source": "pipelines/bench/kernels.py --write-table",
        "rows": [{k: r[k] for k in keep} for r in rows if r.get("summary")],
    }


def merged_table(base: dict, entry: dict, *, merge: bool) -> dict:
    """``base`` with ``entry``'s device replaced by ``entry``; with ``merge``, that device's rows in ``base``
    that ``entry`` did not measure again are kept (a table the same command line wrote before, e.g. by the
    core suite, then the coverage suite); without it (the shipped table), they are dropped."""
    old = next((t for t in base.get("tables", []) if t["device"] == entry["device"]), None)
    if merge and old is not None:
        key = ("L", "pattern", "head_dim", "dtype", "key_padding")
        mine = {tuple(r[k] for k in key) for r in entry["rows"]}
        kept = [r for r in old["rows"] if tuple(r[k] for k in key) not in mine]
        entry = {**entry, "rows": kept + entry["rows"], "command": f"{old['command']}; {entry['command']}"}
    tables = [t for t in base.get("tables", []) if t["device"] != entry["device"]]
    return {**base, "tables": [*tables, entry]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=("core", "coverage", "all"), default="core")
    ap.add_argument("--lengths", default=None, help="comma-separated; overrides every setting's lengths")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/kernels.json"))
    ap.add_argument("--write-table", type=Path, default=None, help="write the measured table here")
    ap.add_argument("--dry-run", action="store_true", help="list the planned runs and exit")
    ns = ap.parse_args(argv)
    if ns.reps < 1:
        ap.error(f"--reps must be >= 1, got {ns.reps}")
    try:
        lengths = tuple(int(x) for x in ns.lengths.split(",")) if ns.lengths else None
    except ValueError:
        ap.error(f"--lengths must be comma-separated integers, got {ns.lengths!r}")
    if lengths and any(n < BLOCK for n in lengths):
        ap.error(f"--lengths must be at least {BLOCK}, got {ns.lengths!r}")
    settings = plan(ns.suite, lengths)
    if ns.dry_run:
        for s in settings:
            for L in s.lengths:
                print(f"B={s.batch} H={s.heads} D={s.head_dim} {s.dtype} key_padding={s.key_padding} L={L}: "
                      f"{', '.join(s.patterns)} x (triton, flex{', sdpa' if 'dense-causal' in s.patterns else ''})")  # fmt: skip
        return 0
    if not torch.cuda.is_available():
        print("kernels benchmark: no CUDA device on this machine; nothing to time (run it on a GPU).")
        return 0
    from torch.nn.attention.flex_attention import flex_attention

    from polyhead.attention.kernels import flash, measured

    shipped = measured.load_table()
    flex = torch.compile(flex_attention, dynamic=False)
    peaks = {dt: matmul_peak_tflops(getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[dt]))
             for dt in sorted({s.dtype for s in settings})}  # fmt: skip
    print(f"{torch.cuda.get_device_name()}: matrix-product peak (measured) "
          + ", ".join(f"{dt} {p:.0f} TFLOP/s" for dt, p in peaks.items()))  # fmt: skip
    print(f"{'dtype':>5} {'B':>2} {'D':>4} {'pad':>3} {'L':>6} {'pattern':>13} {'density':>7} {'impl':>7} "
          f"{'fwd ms':>8} {'TF/s':>8} {'%peak':>6} {'f+b ms':>8} {'TF/s':>8} {'%peak':>6}")  # fmt: skip
    command = "python pipelines/bench/kernels.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def write(rows: list[dict], done: bool) -> None:
        # after every length, so a run stopped by a time limit still leaves what it measured
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        ns.out.write_text(json.dumps({
            "device": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()),
            "torch": torch.__version__, "command": command, "complete": done, "matmul_peak_tflops": peaks,
            "autotuned": flash.tuned_choices(), "rows": rows,
        }, indent=2) + "\n")  # fmt: skip
        if ns.write_table:
            entry = table_entry(
                rows, command, torch.cuda.get_device_name(), torch.cuda.get_device_capability()
            )
            table = merged_table(base, entry, merge=base is not shipped)
            ns.write_table.parent.mkdir(parents=True, exist_ok=True)
            ns.write_table.write_text(json.dumps(table, indent=2) + "\n")

    base = shipped
    if ns.write_table and ns.write_table.exists():
        base = json.loads(ns.write_table.read_text())
    rows: list[dict] = []
    for s in settings:
        for L in s.lengths:
            rows += _bench(s, L, ns, flex, peaks[s.dtype], shipped)
            write(rows, done=False)
    write(rows, done=True)
    print(f"wrote {ns.out}" + (f" and the measured table {ns.write_table}" if ns.write_table else ""))
    worst = max(
        (r[f"auto_{m}_vs_best"] for r in rows if r.get("summary") for m in ("fwd", "fwd_bwd")), default=1
    )
    print(f"auto (shipped table) vs the fastest backend: worst {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
