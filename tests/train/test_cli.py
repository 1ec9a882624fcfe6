"""End-to-end tests of polyhead.train on the pointer-lookup example task (tests/train/example_task.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from example_task import main

from polyhead.train import read_offline_run

HERE = Path(__file__).parent
SCRIPT = HERE / "example_task.py"


def _run_script(
    *args: str, timeout: int = 600, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("POLYHEAD_RUN_DIR", None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=HERE,
    )


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


def test_fit_test_no_config_run_dir_and_wandb(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["fit", "--run.root", str(tmp_path)])
    run = tmp_path / "example" / "default" / "version_0"
    assert (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    assert (run / "csv" / "fit_0" / "metrics.csv").is_file()
    assert list((run / "wandb").glob("offline-run-*/*.wandb"))
    out = capsys.readouterr().out
    assert "[fit] epoch 0" in out and "[val] epoch 1" in out  # plain log lines when not a TTY

    main(["test", "--run.root", str(tmp_path)])  # no ckpt: best checkpoint of the latest fit run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["ckpt_path"].startswith(str(run / "checkpoints" / "best-"))
    assert set(metrics["metrics"]) == {"test/loss", "test/acc"}
    assert (run / "config.test.yaml").is_file()

    main(["validate", "--run.root", str(tmp_path), "--run.wandb", "disabled"])
    assert (run / "config.validate.yaml").is_file()
    cli = main(["predict", "--run.root", str(tmp_path), "--run.wandb", "disabled"])
    preds = torch.cat(cli.trainer.predict_loop.predictions)
    assert preds.shape == (512,) and preds.dtype == torch.long

    logged = read_offline_run(run)
    assert logged.config["model"]["dim"] == 32
    assert len(logged.metric("val/acc")) == 2  # two epochs of validation
    assert logged.summary["test/acc"] == pytest.approx(metrics["metrics"]["test/acc"])
    assert len(logged.metric("train/loss")) >= 3


def test_yaml_config_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"dim": 16, "heads": 4},
                "data": {"num_train": 256, "num_val": 64},
                "trainer": {"max_epochs": 1},
                "run": {"experiment": "small", "wandb": "disabled"},
            }
        )
    )
    main(["fit", "--config", str(cfg), "--model.heads", "2", "--run.root", str(tmp_path)])
    resolved = yaml.safe_load((tmp_path / "example" / "small" / "version_0" / "config.yaml").read_text())
    assert resolved["model"]["dim"] == 16
    assert resolved["model"]["heads"] == 2  # the command-line override wins over the file
    assert resolved["trainer"]["max_epochs"] == 1
    ckpt = torch.load(
        tmp_path / "example" / "small" / "version_0" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert ckpt["global_step"] == 256 // 64

    # test/validate take the model's hyper-parameters from the checkpoint (also over a --config file), but a
    # value set explicitly on the command line wins over the checkpoint's.
    run_dir = tmp_path / "example" / "small" / "version_0"
    main(["validate", "--config", str(cfg), "--run.root", str(tmp_path), "--model.lr", "0.5"])
    val_cfg = yaml.safe_load((run_dir / "config.validate.yaml").read_text())
    assert val_cfg["model"]["lr"] == 0.5  # explicit: kept
    assert val_cfg["model"]["heads"] == 2  # the file says 4, fit used 2: the checkpoint's value
    assert val_cfg["model"]["dim"] == 16


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    # One attention path in all three processes: `auto`'s CPU kernel choice is measured per machine, and a
    # process that starts once a busy machine has gone idle measures again (polyhead.attention.cpu.choice),
    # so the parts of a run could use kernels that round differently. This test is about the platform's resume.
    pin = {"POLYHEAD_CPU_KERNELS": "0"}
    common = ["--run.wandb", "disabled", "--run.save_every_n_steps", "1000", "--trainer.max_epochs", "2"]
    ref = _run_script("fit", "--run.root", str(tmp_path / "ref"), *common, env_extra=pin)
    assert ref.returncode == 0, ref.stderr[-3000:]

    root = str(tmp_path / "killed")
    killed = _run_script(
        "fit",
        "--run.root",
        root,
        *common,
        "--trainer.callbacks+=kill_callback.KillAtStep",
        "--trainer.callbacks.step=45",
        env_extra=pin,
    )
    assert killed.returncode == 143, killed.stderr[-3000:]
    run = tmp_path / "killed" / "example" / "default" / "version_0"
    # Step 45 is mid-epoch 1 (32 steps per epoch) and not a periodic save point: the signal handler saved it.
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 45

    resumed = _run_script("fit", "--run.root", root, *common, "--ckpt_path", "last", env_extra=pin)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "killed" / "example" / "default" / "version_1").exists()  # same run directory

    ref_run = tmp_path / "ref" / "example" / "default" / "version_0"
    ref_ckpt = torch.load(ref_run / "checkpoints" / "last.ckpt", weights_only=False)
    res_ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert res_ckpt["global_step"] == ref_ckpt["global_step"] == 64
    # The resumed process logged only steps after 45: the global step continued, nothing was replayed.
    lines = (run / "csv" / "fit_1" / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    steps = [int(r.split(",")[header.index("step")]) for r in lines[1:]]
    assert min(steps) > 45
    for name, ref_w in ref_ckpt["state_dict"].items():
        torch.testing.assert_close(res_ckpt["state_dict"][name], ref_w, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    res = _run_script(
        "fit",
        "--run.root",
        str(tmp_path),
        "--run.wandb",
        "disabled",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_epochs",
        "1",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    run = tmp_path / "example" / "default" / "version_0"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 2048 samples / batch 64 / 2 ranks: each rank takes half of every epoch.
    assert ckpt["global_step"] == 16
    assert not (tmp_path / "example" / "default" / "version_1").exists()  # both ranks used one run dir


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model.nope", "1"], "nope"),
        (["--model.dim", "abc"], "model.dim"),
        (["--data.data_path", "/nonexistent/pointer.pt"], "/nonexistent/pointer.pt"),
    ],
)
def test_bad_config_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], needle: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--run.root", str(tmp_path), "--run.wandb", "disabled", *args])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_corrupt_checkpoint_leaves_run_dir_untouched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["fit", "--run.root", str(tmp_path), "--run.wandb", "disabled", "--trainer.max_epochs", "1"])
    run = tmp_path / "example" / "default" / "version_0"
    bad = run / "checkpoints" / "corrupt.ckpt"
    good = (run / "checkpoints" / "last.ckpt").read_bytes()
    bad.write_bytes(good[: len(good) // 2])  # a truncated checkpoint
    before = _snapshot(tmp_path)
    for sub in ("fit", "test"):
        with pytest.raises(SystemExit) as exc:
            main([sub, "--run.root", str(tmp_path), "--ckpt_path", str(bad)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "corrupt.ckpt" in err and "not a readable" in err
    assert _snapshot(tmp_path) == before
