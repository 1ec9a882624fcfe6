"""The per-domain command line: ``polyhead-<domain> fit|validate|test|predict`` on LightningCLI.

A domain's ``cli.py`` is one call::

    def main(args: list[str] | None = None) -> None:
        run_cli("ctr", CTRModule, CTRDataModule, monitor="val/auc", mode="max", args=args)

which gives ``polyhead-ctr fit [--config f.yaml] [--model.lr 1e-3] [--trainer.max_epochs 5]``. Typed
``__init__`` signatures of the LightningModule and DataModule are the config schema; every subcommand runs
with no config file on the domain's embedded default data.

The ``--run.*`` options place outputs in ``<run.root>/<domain>/<run.experiment>/<run.version>/``:
``config.yaml``, ``checkpoints/`` (``best-*.ckpt`` by ``run.monitor`` and ``last.ckpt``), ``csv/``
(metrics per subcommand), ``metrics.json`` (after ``test``), ``media/`` and ``wandb/`` (offline by default;
``--run.wandb online`` syncs to the W&B server, ``disabled`` turns W&B off).

``fit --ckpt_path last`` continues the latest run of the experiment (same run directory, same global step).
``validate``/``test``/``predict`` without ``--ckpt_path`` evaluate the best checkpoint of the latest fit run
of the experiment and write into that run directory; a checkpoint from elsewhere (``--ckpt_path X``
outside the experiment) is evaluated into a new run directory of the experiment, never next to ``X``.

Reliability (see :mod:`polyhead.train.faults` for the exit codes): values are checked and the run
directory's writability is probed before any work; one process writes a run directory at a time
(:mod:`polyhead.train.lock`); every file is written atomically (:mod:`polyhead.train.atomic`,
:class:`~polyhead.train.checkpoint_io.AtomicCheckpointIO`); checkpoints are read weights-only
(:mod:`polyhead.train.safety`); a diverging run stops (:mod:`polyhead.train.guards`); faults end with one
line and an exit code.
"""

from __future__ import annotations

import argparse
import copy
import os
import secrets
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from polyhead.train import rundir
from polyhead.train.allocator import tune_cpu_allocator
from polyhead.train.atomic import remove_leftovers, write_text_atomic
from polyhead.train.callbacks import AttentionMapLogger, LogLinesProgressBar, ResumeCheckpoint
from polyhead.train.checkpoint_io import AtomicCheckpointIO
from polyhead.train.faults import (
    ExitCode,
    PolyheadConfigError,
    PolyheadFault,
    check_writable,
    describe_os_error,
)
from polyhead.train.guards import DivergenceGuard, FiniteModelCheckpoint
from polyhead.train.lock import RunLock
from polyhead.train.safety import install_checkpoint_globals
from polyhead.train.validation import config_problems
from polyhead.train.wandb_logger import PolyheadWandbLogger, WandbFlush

__all__ = ["PolyheadCLI", "PolyheadConfigError", "RunOptions", "default_trainer_settings", "run_cli"]

_RUN_DIR_ENV = "POLYHEAD_RUN_DIR"


@dataclass
class RunOptions:
    """Where a run writes and how it is tracked.

    Attributes:
        root: root of all run directories (and of the domains' data caches, ``<root>/<domain>/cache``).
        experiment: experiment name (a folder under ``<root>/<domain>/``).
        version: version folder; default: the next ``version_N`` for ``fit``, the latest fit run otherwise.
            Set it explicitly when launching with torchrun/SLURM so every rank agrees.
        wandb: ``offline`` (default; files in the run directory), ``online`` (sync to the W&B server;
            needs ``wandb login`` or ``WANDB_API_KEY``) or ``disabled``.
        wandb_project: W&B project (default ``polyhead-<domain>``).
        wandb_entity: W&B entity (team or user) for online runs.
        monitor: metric that selects the best checkpoint (default: the domain's).
        mode: ``min`` or ``max`` for ``monitor`` (default: the domain's).
        save_every_n_steps: refresh ``last.ckpt`` every N optimizer steps (0: only at epoch end and on signals).
        wandb_flush_every_s: at a checkpoint save, close and continue the W&B run if this many seconds
            passed since the last time, so a SIGKILL loses at most that much W&B history (0: every save).
        progress: ``auto`` (rich bar on a terminal, log lines otherwise), ``rich``, ``plain`` or ``none``.
        progress_every_n_steps: period of the plain log lines.
        attention_maps: log per-head attention maps of the first validation batch each epoch.
        skip_nonfinite_steps: how many optimizer steps with a non-finite loss or gradient the run may skip
            (their update is dropped) before it stops as diverged (exit code 3); 0: stop at the first.
        allow_untrained: allow ``fit`` with a zero budget (``--trainer.max_epochs 0``) and ``validate``/
            ``test``/``predict`` without any trained checkpoint (an untrained model); refused otherwise.
        unsafe_load: read ``--ckpt_path`` with full pickle (``weights_only=False``), which runs any code the
            file names; only for a legacy checkpoint you trust. By default checkpoints are read with
            ``weights_only=True`` and an allow-list (:mod:`polyhead.train.safety`).
    """

    root: str = "runs"
    experiment: str = "default"
    version: str | None = None
    wandb: Literal["offline", "online", "disabled"] = "offline"
    wandb_project: str | None = None
    wandb_entity: str | None = None
    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    save_every_n_steps: int = 50
    wandb_flush_every_s: float = 60.0
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    progress_every_n_steps: int = 50
    attention_maps: bool = True
    skip_nonfinite_steps: int = 0
    allow_untrained: bool = False
    unsafe_load: bool = False


def default_trainer_settings() -> dict[str, Any]:
    """Trainer defaults: CPU when no GPU, bf16-mixed on GPUs that support it, else 16-mixed."""
    if torch.cuda.is_available():
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    else:
        precision = "32-true"
    return {"accelerator": "auto", "precision": precision, "log_every_n_steps": 10, "max_epochs": 10}


def _is_launcher_rank() -> bool:
    """The process that owns the run directory: global rank 0 (torchrun/SLURM) and not a DDP child."""
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return int(rank) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


class _SaveConfig(SaveConfigCallback):
    """Write the resolved config into the run directory (atomically) and log it to every logger."""

    def __init__(self, *args: Any, run_dir: Path, filename: str, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)
        self.run_dir = run_dir
        self.filename = filename

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = self.parser.dump(self.config, skip_none=False)
        write_text_atomic(self.run_dir / self.filename, text)
        config = yaml.safe_load(text)
        for lg in trainer.loggers:
            lg.log_hyperparams(config)


class PolyheadCLI(LightningCLI):
    """LightningCLI with polyhead's run directories, loggers, checkpoints, guards and progress output."""

    def __init__(
        self,
        domain: str,
        *args: Any,
        monitor: str,
        mode: str = "min",
        **kwargs: Any,
    ) -> None:
        self.domain = domain
        self.default_monitor = monitor
        self.default_mode = mode
        self.run_dir: Path | None = None
        self.resume_callback: ResumeCheckpoint | None = None
        self.run_lock: RunLock | None = None
        self.created_run_dir = False
        self._ckpt: dict[str, Any] | None = None
        self._default_callbacks: list[Any] | None = None
        self._argv: list[str] | None = kwargs.get("args")
        _ACTIVE.append(self)
        super().__init__(*args, **kwargs)

    # ---- parser ---------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        # LightningCLI warns "not recommended to provide both args and command line arguments" whenever
        # `args` is given and sys.argv is not empty, i.e. on every polyhead call (run_cli always passes the
        # argv it resolved). Parse exactly what was given.
        if isinstance(args, (dict, Namespace)):
            self.config = parser.parse_object(args)
        else:
            self.config = parser.parse_args(args)

    # ---- run directory and checkpoint resolution --------------------------------------------------
    def _resolve_run(self) -> tuple[Path, str | None]:
        sub = self.subcommand
        cfg = self.config[sub]
        run: Any = cfg.run
        exp_dir = rundir.experiment_dir(run.root, self.domain, run.experiment)
        ckpt = cfg.get("ckpt_path")
        env_dir = os.environ.get(_RUN_DIR_ENV)
        if env_dir and int(os.environ.get("LOCAL_RANK", "0")) > 0:
            # A DDP worker re-launched by Lightning: use the directory its rank-0 parent chose.
            run_dir = Path(env_dir)
            if ckpt == "last":
                ckpt = str(rundir.last_checkpoint(run_dir))
            return run_dir, ckpt

        if ckpt == "last":
            if sub != "fit":
                raise PolyheadConfigError("--ckpt_path last is for `fit` (resume); use `best` or a path here")
            if run.version is not None:
                run_dir = exp_dir / run.version
            else:
                candidates = [d for d in rundir.existing_versions(exp_dir) if rundir.last_checkpoint(d)]
                if not candidates:
                    raise PolyheadConfigError(
                        f"--ckpt_path last: no run of experiment {run.experiment!r} under {exp_dir} has a "
                        f"complete {rundir.CHECKPOINT_DIR}/{rundir.LAST_CKPT} to resume from"
                    )
                run_dir = candidates[-1]
            last = rundir.last_checkpoint(run_dir)
            if last is None:
                raise PolyheadConfigError(
                    f"--ckpt_path last: {run_dir} has no complete {rundir.CHECKPOINT_DIR}/{rundir.LAST_CKPT}"
                )
            return run_dir, str(last)

        if ckpt in (None, "best") and sub != "fit":
            src = exp_dir / run.version if run.version else rundir.latest_run_with_checkpoint(exp_dir)
            best = rundir.best_checkpoint(src) if src is not None else None
            if src is not None and best is not None:
                return src, str(best)
            if ckpt == "best":
                raise PolyheadConfigError(f"--ckpt_path best: no complete checkpoint under {exp_dir}")
            if not run.allow_untrained:
                raise PolyheadConfigError(
                    f"`{sub}`: no trained checkpoint of experiment {run.experiment!r} under {exp_dir}; run "
                    f"`fit` first, pass --ckpt_path, or --run.allow_untrained true to evaluate an untrained model"
                )
            print(
                f"polyhead-{self.domain}: warning: no trained checkpoint under {exp_dir}; "
                f"running `{sub}` with an untrained model (--run.allow_untrained)",
                file=sys.stderr,
            )
            return exp_dir / (run.version or rundir.next_version(exp_dir)), None

        if ckpt is not None and run.version is None:
            path = Path(ckpt)
            owner = rundir.run_dir_of_checkpoint(path) if path.exists() else None
            # Only a checkpoint of this experiment's own runs writes into its run directory; any other
            # folder named `checkpoints` is foreign and gets a run directory of its own below.
            if owner is not None and owner.parent == exp_dir.resolve():
                return owner, ckpt
        if run.version is not None:
            run_dir = exp_dir / run.version
            if sub == "fit" and ckpt is None and rundir.last_checkpoint(run_dir) is not None:
                raise PolyheadConfigError(
                    f"run directory {run_dir} already holds a trained run; resume it with --ckpt_path last "
                    "or choose another --run.version"
                )
            return run_dir, ckpt
        return exp_dir / rundir.next_version(exp_dir), ckpt

    def _parse_ckpt_path(self) -> None:
        # Overrides LightningCLI's private hook: it is the only point between parsing and instantiation
        # where the checkpoint's hyper-parameters are merged into the config (no public hook exists). Ours
        # resolves `last`/`best`/run directories, reads the checkpoint once with the safe loader (the base
        # implementation loads it again with its own torch.load) and keeps explicit command-line values.
        if not self.config.get("subcommand"):
            return
        self.subcommand = self.config["subcommand"]
        self._prepare_run()
        if self._ckpt is None:
            return
        sub = self.subcommand
        hparams = dict(self._ckpt.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        # The checkpoint's hyper-parameters go over the whole model config; keep the values the user set
        # explicitly on the command line, e.g. `test --model.decoding joint`.
        model = self.config[sub].get("model")
        explicit = {
            k: copy.deepcopy(model[k])
            for k in self._explicit_model_keys()
            if model is not None and k in model
        }
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({sub: {"model": hparams}}, self.config)
        except SystemExit:
            raise PolyheadConfigError(
                f"--ckpt_path {self.config[sub].ckpt_path}: its hyper-parameters do not match this "
                f"version of the {self.domain} model (see the message above)"
            ) from None
        for k, v in explicit.items():
            self.config[sub]["model"][k] = v

    def _explicit_model_keys(self) -> set[str]:
        """Model keys given on the command line (``--model.key value`` or ``--model.key=value``).

        Values from ``--config`` files are not counted: the same experiment file is usually passed to
        ``fit`` and ``test``, and the checkpoint knows what ``fit`` actually used.
        """
        argv = self._argv if self._argv is not None else sys.argv[1:]
        return {
            t[len("--model.") :].split("=", 1)[0].split(".", 1)[0] for t in argv if t.startswith("--model.")
        }

    def _prepare_run(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub]
        os.environ["POLYHEAD_RUN_ROOT"] = str(Path(cfg.run.root).resolve())
        run_dir, ckpt = self._resolve_run()
        unsafe = bool(cfg.run.unsafe_load)
        if ckpt is not None:
            try:
                self._ckpt = rundir.read_checkpoint(Path(ckpt), unsafe=unsafe)
            except (FileNotFoundError, ValueError) as err:
                raise PolyheadConfigError(f"--ckpt_path: {err}") from None
        cfg.ckpt_path = ckpt
        if unsafe:
            cfg.weights_only = False  # Lightning's own load of the checkpoint
        self.run_dir = run_dir.resolve()
        os.environ[_RUN_DIR_ENV] = str(self.run_dir)
        self.save_config_kwargs = {
            "run_dir": self.run_dir,
            "filename": "config.yaml" if sub == "fit" else f"config.{sub}.yaml",
        }

    def before_instantiate_classes(self) -> None:
        sub = self.subcommand
        cfg = self.config[sub]
        data = cfg.get("data")
        if isinstance(data, Namespace) and "cache_dir" in data and data.cache_dir is None:
            data.cache_dir = str(rundir.default_cache_dir(self.domain, root=cfg.run.root))
        problems = config_problems(cfg.as_dict(), subcommand=sub)
        if problems:
            raise PolyheadConfigError("; ".join(problems))
        assert self.run_dir is not None
        check_writable(self.run_dir)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except PolyheadFault:
            raise
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError) as err:
            raise PolyheadConfigError(str(err)) from err

    def _check_checkpoint_fits(self) -> None:
        """Refuse a checkpoint whose tensors do not fit the configured model, before anything is written.

        A model that builds its network from the checkpoint (``on_load_checkpoint``) is built on a copy
        first; one that builds it only in ``setup`` has nothing to compare yet, and Lightning's strict load
        remains the check.
        """
        ckpt = self._ckpt
        if not ckpt or not isinstance(self.model, LightningModule):
            return
        state = ckpt.get("state_dict") or {}
        probe = self.model
        try:
            if not any(True for _ in probe.parameters()):
                probe = copy.deepcopy(self.model)
                probe.on_load_checkpoint(dict(ckpt))
            own = probe.state_dict()
        except Exception:  # the real load reports its own error
            return
        bad = [
            (k, tuple(v.shape), tuple(own[k].shape))
            for k, v in state.items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
        ]
        if bad:
            k, theirs, ours = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise PolyheadConfigError(
                f"--ckpt_path {self.config[self.subcommand].ckpt_path} does not fit the model: {k} is "
                f"{theirs} in the checkpoint but {ours} here{more}; the checkpoint's own model options are "
                "used unless given on the command line, so drop the --model.* options that change sizes"
            )

    # ---- trainer ----------------------------------------------------------------------------------
    def _loggers(self, run: Any) -> list[Logger]:
        assert self.run_dir is not None
        sub = self.subcommand
        csv_root = self.run_dir / "csv"
        n = len(list(csv_root.glob(f"{sub}_*"))) if csv_root.is_dir() else 0
        loggers: list[Logger] = [CSVLogger(save_dir=str(self.run_dir), name="csv", version=f"{sub}_{n}")]
        if run.wandb != "disabled":
            id_file = self.run_dir / "wandb_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            if run_id is None:
                run_id = f"{self.domain}-{run.experiment}-{self.run_dir.name}-{secrets.token_hex(3)}"
                if _is_launcher_rank():
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                    write_text_atomic(id_file, run_id + "\n")
            online = run.wandb == "online"
            loggers.append(
                PolyheadWandbLogger(
                    save_dir=str(self.run_dir),
                    project=run.wandb_project or f"polyhead-{self.domain}",
                    entity=run.wandb_entity,
                    name=f"{run.experiment}/{self.run_dir.name}",
                    id=run_id,
                    # Offline W&B ignores `resume` (with a warning) and starts a new segment with the same
                    # id, which read_offline_run and `wandb sync` join; online it continues the run.
                    **({"resume": "allow"} if online else {}),
                    offline=not online,
                    job_type=sub,
                    settings=_wandb_settings(),
                )
            )
        return loggers

    def _callbacks(self, run: Any, trainer_config: dict[str, Any]) -> list[Any]:
        assert self.run_dir is not None
        cbs: list[Any] = []
        if self.subcommand == "fit" and trainer_config.get("enable_checkpointing", True) is not False:
            ckpt_dir = self.run_dir / rundir.CHECKPOINT_DIR
            monitor = run.monitor or self.default_monitor
            mode = run.mode or self.default_mode
            cbs.append(
                FiniteModelCheckpoint(
                    dirpath=str(ckpt_dir),
                    filename="best-{epoch}-{step}",
                    monitor=monitor,
                    mode=mode,
                    save_top_k=1,
                    save_last=False,
                    auto_insert_metric_name=False,
                )
            )
            self.resume_callback = ResumeCheckpoint(ckpt_dir, every_n_train_steps=run.save_every_n_steps)
            cbs.append(self.resume_callback)
        if self.subcommand == "fit":
            cbs.append(DivergenceGuard(max_bad_steps=run.skip_nonfinite_steps))
            if run.wandb != "disabled":
                cbs.append(WandbFlush(every_s=run.wandb_flush_every_s))
        progress = run.progress
        if progress == "auto":
            progress = "rich" if sys.stdout.isatty() else "plain"
        if progress == "rich":
            cbs.append(RichProgressBar())
        elif progress == "plain":
            cbs.append(LogLinesProgressBar(every_n_steps=run.progress_every_n_steps))
        if run.attention_maps and self.subcommand in ("fit", "validate"):
            cbs.append(AttentionMapLogger())
        return cbs

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        tune_cpu_allocator()
        assert self.run_dir is not None
        cfg = self.config_init[self.subcommand]
        run = cfg["run"]
        self._check_checkpoint_fits()
        self._ckpt = None  # read; Lightning loads it again for the weights
        if _is_launcher_rank():
            self.created_run_dir = not self.run_dir.exists()
            self.run_lock = RunLock(
                self.run_dir, command=f"polyhead-{self.domain} {self.subcommand}"
            ).acquire()
            removed = remove_leftovers(self.run_dir, self.run_dir / rundir.CHECKPOINT_DIR)
            for p in removed:
                print(f"polyhead-{self.domain}: removed {p} left by an interrupted save", file=sys.stderr)
        trainer_config = dict(cfg.get("trainer") or {})
        # LightningCLI appends `trainer_defaults["callbacks"]` (a public attribute) to the configured
        # callbacks: the domain's own defaults first, then the platform's.
        if self._default_callbacks is None:
            value = self.trainer_defaults.get("callbacks") or []
            self._default_callbacks = list(value) if isinstance(value, (list, tuple)) else [value]
        ours = self._callbacks(run, {**trainer_config, **kwargs})
        self.trainer_defaults["callbacks"] = [*self._default_callbacks, *ours]
        if run.progress == "none":
            kwargs.setdefault("enable_progress_bar", False)
        if trainer_config.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = self._loggers(run)
        kwargs["default_root_dir"] = str(self.run_dir)
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO(unsafe_load=bool(run.unsafe_load)))
        kwargs["plugins"] = plugins
        trainer = super().instantiate_trainer(**kwargs)
        trainer.polyhead_run_dir = self.run_dir  # read by polyhead.train.run_dir()
        return trainer

    # ---- subcommand hooks ---------------------------------------------------------------------------
    def after_fit(self) -> None:
        cb = self.resume_callback
        if cb is not None and cb.interrupted:
            if self.trainer.is_global_zero:
                print(
                    f"polyhead-{self.domain}: stopped at step {self.trainer.global_step}; saved {cb.path}. "
                    f"Resume with: polyhead-{self.domain} fit --ckpt_path last --run.experiment "
                    f"{self.config[self.subcommand].run.experiment}",
                    file=sys.stderr,
                    flush=True,
                )
            _finish_wandb()
            raise SystemExit(ExitCode.INTERRUPTED)
        if self.trainer.is_global_zero:
            best = self.trainer.checkpoint_callback
            if isinstance(best, ModelCheckpoint) and best.best_model_path:
                print(
                    f"polyhead-{self.domain}: best checkpoint {best.best_model_path} "
                    f"({best.monitor}={float(best.best_model_score):.5g})",
                    flush=True,
                )
        _finish_wandb()

    def after_validate(self) -> None:
        _finish_wandb()

    def after_test(self) -> None:
        trainer = self.trainer
        if trainer.is_global_zero and self.run_dir is not None:
            import json

            # Everything logged by the test loop (a domain may evaluate several splits there, e.g. dev and test).
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("train/")}
            cfg = self.config[self.subcommand]
            payload = {
                "domain": self.domain,
                "experiment": cfg.run.experiment,
                "run_dir": str(self.run_dir),
                "ckpt_path": cfg.ckpt_path,
                "metrics": metrics,
            }
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "metrics.json", json.dumps(payload, indent=2) + "\n")
            for lg in trainer.loggers:
                if isinstance(lg, WandbLogger):
                    lg.experiment.summary.update(metrics)
            print(f"polyhead-{self.domain}: wrote {self.run_dir / 'metrics.json'}", flush=True)
        _finish_wandb()

    def after_predict(self) -> None:
        _finish_wandb()


# The CLIs being constructed by run_cli (innermost last): their run directory and lock outlive a failed
# constructor, which is how run_cli reports the checkpoint kept and releases the lock.
_ACTIVE: list[PolyheadCLI] = []


def _wandb_settings() -> Any:
    import wandb

    # No console capture or system stats: keeps offline runs small and start-up fast.
    return wandb.Settings(console="off", x_disable_stats=True, silent=True)


def _finish_wandb(exit_code: int = 0) -> None:
    """Close the current W&B run (public ``wandb.run``) so its files are complete before going on."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    try:
        wandb.run.finish(exit_code=exit_code)
    except Exception as err:  # e.g. the disk is full: the fault itself is what gets reported
        if exit_code == 0:
            raise
        print(f"polyhead: W&B could not close its run ({type(err).__name__}: {err})", file=sys.stderr)


def _fault_line(domain: str, cli: PolyheadCLI | None, message: str, *, kept: bool) -> str:
    line = f"polyhead-{domain}: error: {message}"
    if kept and cli is not None and cli.run_dir is not None:
        last = rundir.last_checkpoint(cli.run_dir)
        if last is not None:
            line += f"; the previous checkpoint {last} is kept (resume with fit --ckpt_path last)"
    return line


def _cleanup(cli: PolyheadCLI | None, *, failed: bool, config_error: bool) -> None:
    if failed:
        _finish_wandb(exit_code=1)
    if cli is None:
        return
    if cli.run_lock is not None:
        cli.run_lock.release()
        cli.run_lock = None
    # A run directory this process created for a run that never started (a config or input error) is
    # removed, unless something worth keeping (a checkpoint) is in it.
    d = cli.run_dir
    if config_error and cli.created_run_dir and d is not None and d.is_dir() and not any(d.rglob("*.ckpt")):
        shutil.rmtree(d, ignore_errors=True)


def run_cli(
    domain: str,
    model_class: type[LightningModule],
    datamodule_class: type[LightningDataModule] | None,
    *,
    monitor: str,
    mode: str = "min",
    trainer_defaults: dict[str, Any] | None = None,
    extra_commands: dict[str, Callable[[list[str]], int | None]] | None = None,
    args: list[str] | None = None,
) -> PolyheadCLI | None:
    """Run ``polyhead-<domain>`` with ``args`` (default: ``sys.argv[1:]``).

    Args:
        domain: domain name (run directories, W&B project, messages).
        model_class: the LightningModule; its typed ``__init__`` is the ``model`` config section.
        datamodule_class: the LightningDataModule (``data`` section).
        monitor: metric that selects the best checkpoint (e.g. ``val/auc``).
        mode: ``max`` or ``min`` for ``monitor``.
        trainer_defaults: Trainer defaults on top of :func:`default_trainer_settings`.
        extra_commands: domain commands besides fit/validate/test/predict (e.g. ``extract``), each a
            function taking the remaining argv and returning an exit code; the first line of its docstring
            is its help in ``--help``.
        args: argv to parse instead of ``sys.argv[1:]``.

    Returns:
        The CLI object after the subcommand ran (None for an extra command).

    Raises:
        SystemExit: with the codes of :class:`polyhead.train.faults.ExitCode` (after one message line).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if extra_commands and argv and argv[0] in extra_commands:
        code = extra_commands[argv[0]](argv[1:])
        if code:
            raise SystemExit(code)
        return None
    defaults = {**default_trainer_settings(), **(trainer_defaults or {})}
    install_checkpoint_globals()  # Lightning's own weights-only loads accept the same types as ours
    depth = len(_ACTIVE)
    failed = config_error = False
    try:
        return PolyheadCLI(
            domain,
            model_class,
            datamodule_class,
            monitor=monitor,
            mode=mode,
            save_config_callback=_SaveConfig,
            trainer_defaults=defaults,
            seed_everything_default=42,
            parser_kwargs=_parser_kwargs(domain, extra_commands),
            auto_configure_optimizers=False,  # every polyhead module configures its own optimizers
            args=argv,
        )
    except PolyheadFault as err:
        failed = True
        config_error = isinstance(err, PolyheadConfigError)
        _report(err)
        cli = _ACTIVE[depth] if len(_ACTIVE) > depth else None
        print(_fault_line(domain, cli, str(err), kept=not config_error), file=sys.stderr, flush=True)
        raise SystemExit(err.exit_code) from None
    except SIGTERMException:
        failed = True
        print(
            f"polyhead-{domain}: stopped by SIGTERM; last.ckpt holds every finished step. "
            f"Resume with: polyhead-{domain} fit --ckpt_path last (plus the same --run.* options)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(ExitCode.TERMINATED) from None
    except OSError as err:
        failed = True
        code, message = describe_os_error(err)
        config_error = code == ExitCode.CONFIG
        _report(err)
        cli = _ACTIVE[depth] if len(_ACTIVE) > depth else None
        print(_fault_line(domain, cli, message, kept=not config_error), file=sys.stderr, flush=True)
        raise SystemExit(code) from None
    except BaseException:
        failed = True
        raise
    finally:
        cli = _ACTIVE[depth] if len(_ACTIVE) > depth else None
        del _ACTIVE[depth:]
        _cleanup(cli, failed=failed, config_error=config_error)


def _report(err: BaseException) -> None:
    if os.environ.get("POLYHEAD_TRACEBACK"):
        traceback.print_exception(err)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's formatter that keeps the description's and epilog's line breaks (the command list)."""


def _parser_kwargs(domain: str, extra_commands: dict[str, Callable[..., Any]] | None) -> dict[str, Any]:
    epilog = ""
    if extra_commands:
        lines = []
        for name, fn in extra_commands.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            lines.append(f"  {name:<12} {doc[0] if doc else ''}".rstrip())
        epilog = "more commands (run with --help for their options):\n" + "\n".join(lines)
    return {
        "prog": f"polyhead-{domain}",
        "description": f"polyhead-{domain}: train and evaluate the {domain} models "
        "(fit, validate, test, predict; --run.* places outputs under <root>/<domain>/<experiment>/<version>)",
        "epilog": epilog or None,
        "formatter_class": _HelpFormatter,
        "default_env": False,
    }
