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
    assert (
        "--suite core" in text and "--suite coverage" in text and '-m "gpu or not (interp or slow)"' in text
    )
