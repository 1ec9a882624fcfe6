"""polyhead-train under faults, bad input and untrusted files (issue 14): one test per probe.

Each test shows the one-line message, the exit code, and that nothing was lost or left behind. Faults are
injected deterministically (a failing writer, a probe that reports a read-only filesystem, a SIGKILL from
inside the checkpoint write, a loss made NaN at chosen steps), never by timing.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from example_task import PointerData, PointerModel, main

from polyhead.train import checkpoint_io, faults, run_cli
from polyhead.train.guards import DivergenceGuard
from polyhead.train.lock import LOCK_FILE, RunLock

HERE = Path(__file__).parent
SMALL = [
    "--run.wandb",
    "disabled",
    "--run.progress",
    "none",
    "--run.attention_maps",
    "false",
    "--data.num_train",
    "256",
    "--data.num_val",
    "64",
    "--trainer.max_epochs",
    "1",
]


def _exit(args: list[str], capsys: pytest.CaptureFixture, cli=main) -> tuple[int, str]:
    """Run the CLI expecting an exit; return its code and stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli(args)
    err = capsys.readouterr().err
    return exc.value.code, err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ": error: " in ln]


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")} if d.exists() else set()


def _finite(ckpt: Path) -> bool:
    sd = torch.load(ckpt, weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


# ---- atomic checkpoints ---------------------------------------------------------------------------------


def _run_script(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    env.pop("POLYHEAD_RUN_DIR", None)
    # W&B exports its service address into the pytest worker's environment once any in-process test used
    # W&B; child CLIs would then share that service, which keeps a SIGKILLed child's run id registered
    # ("run ID ... is in use" for the resumed run). A user's shell starts each CLI with its own service.
    env.pop("WANDB_SERVICE", None)
    return subprocess.run(
        [sys.executable, str(HERE / "example_task.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=HERE,
    )


@pytest.mark.slow
def test_sigkill_during_best_save_leaves_no_truncated_checkpoint(tmp_path: Path) -> None:
    tmpdir = tmp_path / "systmp"
    tmpdir.mkdir()
    root = str(tmp_path / "runs")
    common = [*SMALL, "--run.root", root, "--run.save_every_n_steps", "2"]
    killed = _run_script(
        "fit",
        *common,
        "--trainer.callbacks+=kill_callback.KillDuringBestSave",
        env_extra={"TMPDIR": str(tmpdir)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ckpts = tmp_path / "runs" / "example" / "default" / "version_0" / "checkpoints"
    names = sorted(p.name for p in ckpts.iterdir())
    # The half-written best is only a temporary file; no best-*.ckpt under its final name; nothing in TMPDIR.
    assert not [n for n in names if n.startswith("best")], names
    leftovers = [n for n in names if n.startswith(".best") and n.endswith(".tmp")]
    assert len(leftovers) == 1 and "last.ckpt" in names
    assert list(tmpdir.iterdir()) == []

    resumed = _run_script("fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"removed {ckpts / leftovers[0]}" in resumed.stderr
    names = sorted(p.name for p in ckpts.iterdir())
    assert not [n for n in names if n.endswith(".tmp")]
    assert [n for n in names if n.startswith("best")]
    tested = _run_script("test", *SMALL, "--run.root", root)
    assert tested.returncode == 0, tested.stderr[-3000:]


def test_truncated_best_is_never_chosen(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["fit", *SMALL, "--run.root", str(tmp_path)])
    run = tmp_path / "example" / "default" / "version_0"
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    # What Lightning's copy left when killed: a newer best-*.ckpt cut in half under its final name.
    truncated = run / "checkpoints" / "best-9-999.ckpt"
    truncated.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    main(["test", *SMALL, "--run.root", str(tmp_path)])
    assert json.loads((run / "metrics.json").read_text())["ckpt_path"] == str(best)
    # And a truncated last.ckpt is not resumed from.
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    code, err = _exit(["fit", *SMALL, "--run.root", str(tmp_path), "--ckpt_path", "last"], capsys)
    assert code == 2 and "no run of experiment" in err and "complete" in err


def test_disk_full_during_checkpoint_save(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = checkpoint_io.write_atomic
    saves: list[Path] = []

    def filling_disk(path, write, **kw):
        saves.append(Path(path))
        if len(saves) < 2:
            return real(path, write, **kw)

        def partial(f) -> None:  # what a full disk does: some bytes go out, then ENOSPC
            f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")

        return real(path, partial, **kw)

    monkeypatch.setattr(checkpoint_io, "write_atomic", filling_disk)
    code, err = _exit(["fit", *SMALL, "--run.root", str(tmp_path), "--run.save_every_n_steps", "1"], capsys)
    run = tmp_path / "example" / "default" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    assert code == faults.ExitCode.IO_ERROR
    lines = _error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err
    assert "disk full while writing" in lines[0] and str(last) in lines[0] and "is kept" in lines[0]
    # The previous last.ckpt (step 1) survived; no temporary file and no lock are left.
    assert torch.load(last, weights_only=True)["global_step"] == 1
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_FILE]


def _csv_rows(run: Path, key: str) -> dict[int, float]:
    """``key`` per step over all fit segments' CSV files, later segments replacing earlier ones."""
    import csv

    out: dict[int, float] = {}
    for f in sorted((run / "csv").glob("fit_*/metrics.csv")):
        for row in csv.DictReader(f.open()):
            if row.get(key):
                out[int(row["step"])] = float(row[key])
    return out


@pytest.mark.slow
def test_wandb_keeps_killed_segment_and_agrees_with_csv(tmp_path: Path) -> None:
    from polyhead.train import read_offline_run
    from polyhead.train.wandb_offline import _read_file  # per-segment run ids

    root = str(tmp_path)
    common = [
        "--run.root",
        root,
        "--run.progress",
        "none",
        "--run.attention_maps",
        "false",
        "--run.save_every_n_steps",
        "10",
        "--run.wandb_flush_every_s",
        "0",
        "--trainer.max_epochs",
        "2",
    ]
    killed = _run_script(
        "fit",
        *common,
        "--trainer.callbacks+=kill_callback.KillAtStep",
        "--trainer.callbacks.step=45",
        "--trainer.callbacks.sig=SIGKILL",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "example" / "default" / "version_0"
    before = read_offline_run(run)
    # What was logged before the last flushes (checkpoints every 10 steps) survived the kill: config, history.
    assert before.config["model"]["dim"] == 32
    steps = [r["trainer/global_step"] for r in before.history if "train/loss" in r]
    assert steps and max(steps) >= 39  # every row up to the step-40 checkpoint

    resumed = _run_script("fit", *common, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    logged = read_offline_run(run)
    ids = set()
    for f in logged.path:
        from polyhead.train.wandb_offline import OfflineRun

        one = OfflineRun(path=[f], run_id="")
        _read_file(f, one)
        ids.add(one.run_id)
    # One run id over every segment (the killed one's last segment may hold only its header: no id).
    assert len(ids - {""}) == 1 and len(logged.path) >= 3
    wandb_loss: dict[int, float] = {}
    for r in logged.history:
        if "train/loss" in r:
            assert r["trainer/global_step"] not in wandb_loss  # no step twice
            wandb_loss[r["trainer/global_step"]] = r["train/loss"]
    csv_loss = _csv_rows(run, "train/loss")
    assert set(wandb_loss) == set(csv_loss) and max(csv_loss) >= 59  # logged up to the end (64 steps)
    for step, v in csv_loss.items():
        assert wandb_loss[step] == pytest.approx(v, rel=1e-6)


# ---- faults before any work -------------------------------------------------------------------------------


def test_read_only_run_root(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(directory: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(directory))

    monkeypatch.setattr(faults, "_create_probe", read_only)
    code, err = _exit(["fit", *SMALL, "--run.root", str(tmp_path / "ro")], capsys)
    assert code == faults.ExitCode.NOT_WRITABLE
    assert _error_lines(err) == [
        f"polyhead-example: error: run directory {tmp_path / 'ro' / 'example' / 'default' / 'version_0'} "
        f"is not writable: {tmp_path}: Read-only file system (choose another --run.root)"
    ]
    assert _files(tmp_path) == set()
    monkeypatch.undo()
    # A real one: the run root lies under a file.
    (tmp_path / "afile").write_text("x")
    code, err = _exit(["fit", *SMALL, "--run.root", str(tmp_path / "afile" / "runs")], capsys)
    assert code == 2 and "is a file, expected a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_unwritable_run_root_without_root(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    code, err = _exit(["fit", *SMALL, "--run.root", str(ro)], capsys)
    assert code == faults.ExitCode.NOT_WRITABLE and "not writable" in err


def test_check_writable_leaves_nothing(tmp_path: Path) -> None:
    faults.check_writable(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data.batch_size", "-5"], "--data.batch_size: must be an integer >= 1, got -5"),
        (["--model.lr", "0"], "--model.lr: must be a finite number > 0, got 0.0"),
        (["--model.lr=-0.001"], "--model.lr: must be a finite number > 0, got -0.001"),
        (["--trainer.max_epochs", "0"], "--trainer.max_epochs 0 trains nothing"),
        (["--trainer.max_steps", "0"], "--trainer.max_steps 0 trains nothing"),
        (["--trainer.max_epochs", "-3"], "--trainer.max_epochs: must be -1"),
        (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches: must be >= 1"),
        (["--data.cache_dir", __file__], "is a file, expected a directory"),
        (["--run.save_every_n_steps", "-1"], "--run.save_every_n_steps: must be >= 0"),
    ],
)
def test_values_validated_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], needle: str
) -> None:
    code, err = _exit(["fit", *SMALL, "--run.root", str(tmp_path), *args], capsys)
    assert code == 2
    (line,) = _error_lines(err)
    assert needle in line
    assert _files(tmp_path) == set()  # no half-made version_0


def test_directory_where_a_file_is_needed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _exit(
        ["fit", *SMALL, "--run.root", str(tmp_path / "r"), "--data.data_path", str(tmp_path)], capsys
    )
    assert code == 2 and f"--data.data_path: {tmp_path} is a directory, expected a file" in err
    code, err = _exit(
        ["test", *SMALL, "--run.root", str(tmp_path / "r"), "--ckpt_path", str(tmp_path)], capsys
    )
    assert code == 2 and "is a directory" in err


def test_zero_epochs_only_when_asked(tmp_path: Path) -> None:
    main(
        [
            "fit",
            *SMALL,
            "--run.root",
            str(tmp_path),
            "--trainer.max_epochs",
            "0",
            "--run.allow_untrained",
            "true",
        ]
    )
    assert (tmp_path / "example" / "default" / "version_0" / "config.yaml").is_file()


def test_test_without_checkpoint_refused_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _exit(["test", *SMALL, "--run.root", str(tmp_path)], capsys)
    assert code == 2 and "no trained checkpoint" in err and "--run.allow_untrained" in err
    assert _files(tmp_path) == set()
    main(["test", *SMALL, "--run.root", str(tmp_path), "--run.allow_untrained", "true"])
    payload = json.loads((tmp_path / "example" / "default" / "version_0" / "metrics.json").read_text())
    assert payload["ckpt_path"] is None


# ---- divergence -------------------------------------------------------------------------------------------


class NanPointerModel(PointerModel):
    """PointerModel whose training loss is NaN at the given global steps (and optionally val/acc too)."""

    def __init__(
        self, *, nan_steps: list[int] | None = None, nan_val: bool = False, lr: float = 3e-3
    ) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()  # this frame's arguments (the parent's call saw only lr)
        self.nan_steps = set(nan_steps or [])
        self.nan_val = nan_val

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step in self.nan_steps else loss

    def validation_step(self, batch, batch_idx) -> None:
        if not self.nan_val:
            return super().validation_step(batch, batch_idx)
        self.log("val/acc", float("nan"))
        return None


def nan_main(args: list[str]):
    return run_cli("example", NanPointerModel, PointerData, monitor="val/acc", mode="max", args=args)


def test_divergence_stops_with_exit_code_and_keeps_finite_checkpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "fit",
        *SMALL,
        "--run.root",
        str(tmp_path),
        "--run.save_every_n_steps",
        "1",
        "--model.nan_steps",
        "[2]",
    ]
    code, err = _exit(args, capsys, cli=nan_main)
    assert code == faults.ExitCode.DIVERGED
    (line,) = _error_lines(err)
    assert "training diverged" in line and "step 2" in line and "--run.skip_nonfinite_steps" in line
    last = tmp_path / "example" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2 and _finite(last)
    assert not (last.parent / LOCK_FILE).exists() and not (last.parent.parent / LOCK_FILE).exists()


def test_bounded_skipping_of_bad_steps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["fit", *SMALL, "--run.root", str(tmp_path), "--model.nan_steps", "[1, 3]"]
    nan_main([*base, "--run.skip_nonfinite_steps", "2", "--run.experiment", "two"])
    err = capsys.readouterr().err
    assert err.count("step skipped") == 2
    run = tmp_path / "example" / "two" / "version_0"
    assert _finite(run / "checkpoints" / "last.ckpt")
    assert list((run / "checkpoints").glob("best-*.ckpt"))
    code, err = _exit(
        [*base, "--run.skip_nonfinite_steps", "1", "--run.experiment", "one"], capsys, cli=nan_main
    )
    assert code == faults.ExitCode.DIVERGED and "1 earlier non-finite step(s) skipped" in err


def test_skipped_step_leaves_weights_and_optimizer_untouched() -> None:
    seen: dict[str, dict] = {}

    class Snap(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == 1:
                seen["before"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 2:  # the skipped optimizer step still counts as a step
                seen["after"] = {k: v.clone() for k, v in pl_module.state_dict().items()}

    guard = DivergenceGuard(max_bad_steps=1)
    trainer = pl.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[guard, Snap()],
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(NanPointerModel(nan_steps=[1]), datamodule=PointerData(num_train=256, num_val=64))
    assert guard.bad_steps == [1]
    for k, v in seen["before"].items():
        torch.testing.assert_close(seen["after"][k], v, rtol=0, atol=0)


def test_nan_metric_never_kept_as_best(tmp_path: Path) -> None:
    nan_main(["fit", *SMALL, "--run.root", str(tmp_path), "--model.nan_val", "true"])
    ckpts = tmp_path / "example" / "default" / "version_0" / "checkpoints"
    assert not list(ckpts.glob("best-*.ckpt")) and (ckpts / "last.ckpt").is_file()


def test_nan_weights_never_kept(tmp_path: Path) -> None:
    class PoisonBeforeValidation(pl.Callback):
        def on_validation_start(self, trainer, pl_module) -> None:
            if not trainer.sanity_checking:
                with torch.no_grad():
                    pl_module.head.weight.fill_(float("nan"))

    main(["fit", *SMALL, "--run.root", str(tmp_path), "--run.save_every_n_steps", "2"])
    run = tmp_path / "example" / "default" / "version_0"
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    # A second run into a new directory with weights poisoned before validation: no best, last stays finite.
    cli = run_cli(
        "example",
        PointerModel,
        PointerData,
        monitor="val/acc",
        mode="max",
        trainer_defaults={"callbacks": [PoisonBeforeValidation()]},
        args=[
            "fit",
            *SMALL,
            "--run.root",
            str(tmp_path),
            "--run.experiment",
            "poisoned",
            "--run.save_every_n_steps",
            "2",
        ],
    )
    assert cli is not None
    ckpts = tmp_path / "example" / "poisoned" / "version_0" / "checkpoints"
    assert not list(ckpts.glob("best-*.ckpt"))
    assert _finite(ckpts / "last.ckpt")
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


# ---- one writer per run directory ---------------------------------------------------------------------------


def test_second_writer_refused_and_stale_lock_taken_over(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "example" / "default" / "v"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from polyhead.train.lock import RunLock; "
            "RunLock(Path(sys.argv[1]), command='holder').acquire(); print('ready', flush=True); time.sleep(120)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        args = ["fit", *SMALL, "--run.root", str(tmp_path), "--run.version", "v"]
        code, err = _exit(args, capsys)
        assert code == faults.ExitCode.LOCKED
        (line,) = _error_lines(err)
        assert f"in use by pid {holder.pid} on {socket.gethostname()} (holder)" in line
        assert _files(run) == {LOCK_FILE}  # the second writer wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock file stays, but the kernel dropped its flock.
    assert (run / LOCK_FILE).is_file()
    main(args)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / LOCK_FILE).exists()


def test_lock_of_another_host_is_honoured(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 1234, "host": "elsewhere", "command": "fit"}))
    with pytest.raises(faults.RunLockedError, match="delete"):
        RunLock(run).acquire()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))
    lock = RunLock(run).acquire()  # same host, no flock held: stale, taken over
    assert json.loads((run / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run / LOCK_FILE).exists()


# ---- foreign checkpoints, crafted checkpoints ----------------------------------------------------------------


def test_foreign_checkpoint_that_does_not_fit_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    main(["fit", *SMALL, "--run.root", str(tmp_path / "a")])
    src = tmp_path / "a" / "example" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    foreign = tmp_path / "elsewhere" / "checkpoints" / "model.ckpt"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(src.read_bytes())
    before = _files(tmp_path)
    code, err = _exit(
        ["test", *SMALL, "--run.root", str(tmp_path / "b"), "--ckpt_path", str(foreign), "--model.dim", "16"],
        capsys,
    )
    assert code == 2
    (line,) = _error_lines(err)
    assert "does not fit the model" in line and "in the checkpoint but" in line and "16)" in line
    assert _files(tmp_path) == before
    # Fitting: evaluated into a run directory of its own, nothing next to the foreign checkpoint.
    main(["test", *SMALL, "--run.root", str(tmp_path / "b"), "--ckpt_path", str(foreign)])
    assert _files(tmp_path / "elsewhere") == {"checkpoints", "checkpoints/model.ckpt"}
    payload = json.loads((tmp_path / "b" / "example" / "default" / "version_0" / "metrics.json").read_text())
    assert payload["ckpt_path"] == str(foreign)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_via_cli_runs_no_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["fit", *SMALL, "--run.root", str(tmp_path)])
    run = tmp_path / "example" / "default" / "version_0"
    good = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    marker = tmp_path / "MARKER"
    crafted = run / "checkpoints" / "best-9-999.ckpt"  # the newest best: picked automatically by `test`
    torch.save({**good, "hyper_parameters": _Payload(marker)}, crafted)
    before = _files(tmp_path)
    for args in (
        ["test"],
        ["validate"],
        ["test", "--ckpt_path", str(crafted)],
        ["fit", "--ckpt_path", str(crafted)],
    ):
        code, err = _exit([*args, *SMALL, "--run.root", str(tmp_path)], capsys)
        assert code == 2 and "refused to load" in err and "posix.system" in err, err
        assert not marker.exists()
    assert _files(tmp_path) == before
    # The explicit opt-in for a trusted legacy file loads it with full pickle.
    main(
        [
            "test",
            *SMALL,
            "--run.root",
            str(tmp_path),
            "--ckpt_path",
            str(crafted),
            "--run.unsafe_load",
            "true",
        ]
    )
    assert marker.exists()


# ---- CLI polish -----------------------------------------------------------------------------------------------


def test_no_spurious_warning_help_and_no_dead_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    main(["validate", *SMALL, "--run.root", str(tmp_path), "--run.allow_untrained", "true"])
    assert not [w for w in recwarn if "args and command line" in str(w.message)]

    def extract(argv: list[str]) -> int:
        """Turn videos into keypoints."""
        return 0

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(
            "example",
            PointerModel,
            PointerData,
            monitor="val/acc",
            extra_commands={"extract": extract},
            args=["--help"],
        )
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "polyhead-example" in out and "Lightning Trainer command line tool" not in out
    assert "extract" in out and "Turn videos into keypoints." in out
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    cfg = capsys.readouterr().out
    assert "\noptimizer:" not in cfg and "\nlr_scheduler:" not in cfg and "\nrun:" in cfg


def test_cache_follows_run_root(tmp_path: Path) -> None:
    cli = main(["validate", *SMALL, "--run.root", str(tmp_path), "--run.allow_untrained", "true"])
    assert cli.datamodule.cache_dir == str(tmp_path / "example" / "cache")


def test_tempdir_untouched_by_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "systmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)
    main(["fit", *SMALL, "--run.root", str(tmp_path / "runs"), "--run.save_every_n_steps", "1"])
    assert list(tmpdir.iterdir()) == []


def test_fsdp_config_saves_full_state_dicts_and_sharded_dirs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import yaml

    from polyhead.train import rundir

    cfg = yaml.safe_load((HERE.parents[1] / "configs" / "trainer" / "gpu_fsdp.yaml").read_text())
    assert cfg["trainer"]["strategy"]["init_args"]["state_dict_type"] == "full"
    # A sharded checkpoint (a directory) is a clear error, not a crash in the run-directory code.
    sharded = tmp_path / "example" / "default" / "version_0" / "checkpoints" / "last.ckpt"
    sharded.mkdir(parents=True)
    (sharded / "__0_0.distcp").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="sharded FSDP"):
        rundir.read_checkpoint(sharded)
    code, err = _exit(["test", *SMALL, "--run.root", str(tmp_path), "--ckpt_path", str(sharded)], capsys)
    assert code == 2 and "sharded FSDP" in err
