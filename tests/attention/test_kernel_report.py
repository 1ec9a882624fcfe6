"""The kernel report compiles every shipped Triton configuration for sm_80 and sm_90 on this (GPU-less)
machine: zero spills, shared memory within limits, mma.sync on sm_80 and wgmma in the sm_90 16-bit forward."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

REPORT = Path(__file__).parents[2] / "pipelines" / "bench" / "kernel_report.py"


@pytest.mark.slow
def test_every_shipped_configuration_compiles_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPORT), "--out", str(out)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    # every padded head dim of every dtype (fp32 up to 64), every layout block, both architectures
    assert {(r["arch"], r["dtype"], r["head_dim"]) for r in rows} == {
        (a, dt, d) for a in ("sm_80", "sm_90") for dt in ("fp16", "bf16", "fp32") for d in (16, 32, 64, 128)
    } - {("sm_80", "fp32", 128), ("sm_90", "fp32", 128)}
    assert {r["block"] for r in rows} == {16, 32, 64, 128}
    assert {r["kernel"] for r in rows} == {"fwd", "bwd_pre", "bwd_dq", "bwd_dkdv"}
    # every autotuning candidate of every kernel is compiled, forward and backward
    from polyhead.attention.kernels import flash

    for r in rows:
        torch_dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[r["dtype"]]
        cands = flash.launch_configs(
            r["kernel"], torch_dt, r["block"], r["block"], r["head_dim"], int(r["arch"][3:])
        )
        compiled = {
            x["candidate"]
            for x in rows
            if all(x[k] == r[k] for k in ("kernel", "arch", "dtype", "head_dim", "block", "features"))
        }
        assert compiled == set(range(len(cands))), r
    assert any(r["kernel"] == "bwd_dkdv" and r["arch"] == "sm_90" and r["candidate"] == 1 for r in rows)
    for r in rows:
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r
        assert r["shared_bytes"] <= r["smem_limit"], r
    for r in rows:
        if r["dtype"] in ("fp16", "bf16") and r["kernel"] != "bwd_pre":
            # wgmma takes 64-row warpgroup tiles (the first operand's rows: queries in the forward and dQ,
            # keys in dK/dV): smaller tiles (layout blocks of 16/32) run mma.sync on sm_90
            rows_ = r["SUB_N"] if r["kernel"] == "bwd_dkdv" else r["SUB_M"]
            wgmma = r["arch"] == "sm_90" and rows_ >= 64
            assert r["wgmma"] if wgmma else r["mma_sync"], r
            if r["arch"] == "sm_90" and r["block"] >= 64 and r["kernel"] != "fwd":
                assert r["wgmma"], r  # the sm_90 backward runs on wgmma at the default 64 blocks


def test_benchmark_says_no_cuda_and_exits_0() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the benchmark would run")
    bench = REPORT.parent / "kernels.py"
    proc = subprocess.run([sys.executable, str(bench)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "no CUDA device" in proc.stdout


def test_benchmark_plan_covers_issue_22_without_a_gpu() -> None:
    """--dry-run lists the planned runs on any machine; bad arguments exit 2 with one line."""
    bench = REPORT.parent / "kernels.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--suite", "all", "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    core = [x for x in lines if x.startswith("B=1 H=16 D=64 bf16 key_padding=False")]
    assert any("L=16384: dense-causal, s2-stride4, s2-stride16, window+sinks" in x for x in core)
    assert any(x.startswith("B=1 H=16 D=128 bf16") and "s2-stride4" in x for x in lines)
    assert any(x.startswith("B=1 H=16 D=64 fp16") and "s2-stride4" in x for x in lines)
    assert any(x.startswith("B=4 H=16 D=64 bf16 key_padding=True") and "s2-stride4" in x for x in lines)
    assert any("halo, maxvit-block, maxvit-grid" in x for x in lines)
    for bad in (["--lengths", "4096,x"], ["--lengths", "1000", "--suite", "coverage"]):
        proc = subprocess.run([sys.executable, str(bench), *bad, "--dry-run"], capture_output=True, text=True)
        assert proc.returncode != 0 and proc.stderr.strip(), bad


def test_gpu_check_script_parses() -> None:
    script = REPORT.parents[1] / "gpu_check.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    assert "--suite core" in text and "--suite coverage" in text and "test_dispatch.py -m gpu" in text


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("kernels_bench", REPORT.parent / "kernels.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_table_round_trip_drives_the_rule() -> None:
    """What --write-table writes from the benchmark's summary rows is what the dispatch rule reads."""
    from polyhead.attention.kernels import measured

    bench = _bench_module()

    def summary(L, pattern, density, per_head, fb_triton):
        return {"summary": True, "L": L, "pattern": pattern, "head_dim": 64, "dtype": "bf16",
                "key_padding": False, "block_density": density, "per_head": per_head, "batch": 1,
                "ms": {"fwd": {"triton": 1.0, "flex": 2.0}, "fwd_bwd": {"triton": fb_triton, "flex": 4.0}}}  # fmt: skip

    core = [summary(16384, "s2-stride4", 0.2636, True, 3.0), {"impl": "triton", "summary": False}]
    shipped = measured.load_table()
    entry = bench.table_entry(core, "cmd core", "NVIDIA H200", (9, 0))
    table = bench.merged_table(shipped, entry, merge=False)
    (h200,) = [t for t in table["tables"] if t["device"] == "NVIDIA H200"]
    assert [r["pattern"] for r in h200["rows"]] == ["s2-stride4"]  # the shipped H200 rows are replaced
    feats = {"L": 16384, "S": 16384, "head_dim": 64, "dtype": "bf16", "key_padding": False, "bias": False,
             "gqa": False, "block_density": 0.25, "per_head": True}  # fmt: skip
    kw = {
        "candidates": ("triton", "flex"),
        "device_name": "NVIDIA H200",
        "capability": (9, 0),
        "table": table,
    }
    assert measured.choose(feats, grad=True, **kw) == "triton"  # a backward now faster than flex's
    # the coverage run merges into the core run's table: both rows stay, the command lines are joined
    cov = bench.table_entry([summary(16384, "halo", 0.05, False, 9.0)], "cmd cov", "NVIDIA H200", (9, 0))
    table2 = bench.merged_table(table, cov, merge=True)
    (h200,) = [t for t in table2["tables"] if t["device"] == "NVIDIA H200"]
    assert [r["pattern"] for r in h200["rows"]] == ["s2-stride4", "halo"]
    assert h200["command"] == "cmd core; cmd cov"
    assert measured.choose(feats, grad=True, **{**kw, "table": table2}) == "triton"
    assert measured.choose({**feats, "per_head": False, "block_density": 0.05}, grad=True,
                           **{**kw, "table": table2}) == "flex"  # fmt: skip


def test_benchmark_patterns_build_on_cpu() -> None:
    """Every benchmark pattern gives a kernel layout equal to its mask_mod and a FlexAttention BlockMask
    (with key padding folded in, as the batch-4 setting does) at a small length, before any GPU time."""
    from torch.nn.attention.flex_attention import and_masks, create_block_mask

    from polyhead.attention.kernels import measured
    from polyhead.attention.layouts import dense_pattern, tiled_layout_from_mask_mod

    bench = _bench_module()
    L, H = 1024, 4  # 32 x 32 image tokens for the 2-D layouts
    kpm = torch.arange(L)[None, :] < torch.tensor([L, 700])[:, None]
    for name in (*bench.PATTERNS_1D, *bench.PATTERNS_2D):
        mm, per_head = bench._mask_mod(name, L, torch.device("cpu"))
        Hl = H if per_head else 1
        lay = tiled_layout_from_mask_mod(mm, Hl, L, L, bench.BLOCK, bench.BLOCK)
        assert torch.equal(lay.dense()[0], dense_pattern(mm, Hl, L, L)), name
        assert 0 < lay.density <= 17 / 32, (name, lay.density)  # causal at 16 x 16 blocks: 136 / 256

        def pad_mod(b, h, q, k):
            return kpm[b, k]

        bm = create_block_mask(and_masks(mm, pad_mod), 2, Hl if per_head else None, L, L, device="cpu")
        feats = measured.block_mask_features(bm)
        assert 0 < feats["block_density"] <= 1 and feats["per_head"] == per_head, (name, feats)
