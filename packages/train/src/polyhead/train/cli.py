"""The per-domain command line: ``polyhead-<domain> fit|validate|test|predict`` on LightningCLI.

A domain's ``cli.py`` is one call::

    def main(args: list[str] | None = None) -> None:
        run_cli("ctr", CTRModule, CTRDataModule, monitor="val/auc", mode="max")

which gives ``polyhead-ctr fit [--config f.yaml] [--model.lr 1e-3] [--trainer.max_epochs 5]``. Typed
``__init__`` signatures of the LightningModule and DataModule are the config schema; every subcommand runs
with no config file on the domain's embedded default data.

The ``--run.*`` options place outputs in ``<run.root>/<domain>/<run.experiment>/<run.version>/``:
``config.yaml``, ``checkpoints/`` (``best-*.ckpt`` by ``run.monitor`` and ``last.ckpt``), ``csv/``
(metrics per subcommand), ``metrics.json`` (after ``test``), ``media/`` and ``wandb/`` (offline by default;
``--run.wandb online`` syncs to the W&B server, ``disabled`` turns W&B off).

``fit --ckpt_path last`` continues the latest run of the experiment (same run directory, same global step).
``validate``/``test``/``predict`` without ``--ckpt_path`` evaluate the best checkpoint of the latest fit run
of the experiment and write into that run directory.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from polyhead.train import rundir
from polyhead.train.allocator import tune_cpu_allocator
from polyhead.train.callbacks import AttentionMapLogger, LogLinesProgressBar, ResumeCheckpoint
from polyhead.train.safety import install_checkpoint_globals

_RUN_DIR_ENV = "POLYHEAD_RUN_DIR"


@dataclass
class RunOptions:
    """Where a run writes and how it is tracked.

    Attributes:
        root: root of all run directories.
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
        progress: ``auto`` (rich bar on a terminal, log lines otherwise), ``rich``, ``plain`` or ``none``.
        progress_every_n_steps: period of the plain log lines.
        attention_maps: log per-head attention maps of the first validation batch each epoch.
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
    progress: Literal["auto", "rich", "plain", "none"] = "auto"
    progress_every_n_steps: int = 50
    attention_maps: bool = True
    unsafe_load: bool = False


class PolyheadConfigError(Exception):
    """A configuration or input problem found before training started."""


def default_trainer_settings() -> dict[str, Any]:
    """Trainer defaults: CPU when no GPU, bf16-mixed on GPUs that support it, else 16-mixed."""
    if torch.cuda.is_available():
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    else:
        precision = "32-true"
    return {"accelerator": "auto", "precision": precision, "log_every_n_steps": 10, "max_epochs": 10}


class _SaveConfig(SaveConfigCallback):
    """Write the resolved config into the run directory and log it to every logger (W&B config)."""

    def __init__(self, *args: Any, run_dir: Path, filename: str, **kwargs: Any) -> None:
        super().__init__(*args, save_to_log_dir=False, **kwargs)
        self.run_dir = run_dir
        self.filename = filename

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / self.filename
        self.parser.save(self.config, path, skip_unset=False, overwrite=True, multifile=False)
        config = yaml.safe_load(path.read_text())
        for lg in trainer.loggers:
            lg.log_hyperparams(config)


class PolyheadCLI(LightningCLI):
    """LightningCLI with polyhead's run directories, loggers, checkpoints and progress output."""

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
        self._argv: list[str] | None = kwargs.get("args")
        super().__init__(*args, **kwargs)

    # ---- parser ---------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")

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
                        f"--ckpt_path last: no run of experiment {run.experiment!r} under {exp_dir} has "
                        f"{rundir.CHECKPOINT_DIR}/{rundir.LAST_CKPT} to resume from"
                    )
                run_dir = candidates[-1]
            last = rundir.last_checkpoint(run_dir)
            if last is None:
                raise PolyheadConfigError(
                    f"--ckpt_path last: {run_dir} has no {rundir.CHECKPOINT_DIR}/{rundir.LAST_CKPT}"
                )
            return run_dir, str(last)

        if ckpt in (None, "best") and sub != "fit":
            src = exp_dir / run.version if run.version else rundir.latest_run_with_checkpoint(exp_dir)
            best = rundir.best_checkpoint(src) if src is not None else None
            if best is not None:
                return src, str(best)
            if ckpt == "best":
                raise PolyheadConfigError(f"--ckpt_path best: no checkpoint found under {exp_dir}")
            print(
                f"polyhead-{self.domain}: warning: no trained checkpoint under {exp_dir}; "
                f"running `{sub}` with an untrained model",
                file=sys.stderr,
            )
            return exp_dir / (run.version or rundir.next_version(exp_dir)), None

        if ckpt is not None:
            path = Path(ckpt)
            owner = rundir.run_dir_of_checkpoint(path) if path.exists() else None
            if owner is not None and run.version is None:
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
        # Resolve `last`/`best`/run directories and validate the checkpoint before LightningCLI reads its
        # hyperparameters, so that a bad checkpoint fails cleanly and writes nothing.
        self.subcommand = self.config["subcommand"]
        self._prepare_run()
        # LightningCLI puts the checkpoint's hyper-parameters over the whole model config; keep the values
        # the user set explicitly on the command line, e.g. `test --model.decoding joint`.
        model = self.config[self.subcommand].get("model")
        explicit = {
            k: copy.deepcopy(model[k])
            for k in self._explicit_model_keys()
            if model is not None and k in model
        }
        super()._parse_ckpt_path()
        for k, v in explicit.items():
            self.config[self.subcommand]["model"][k] = v

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
        run_dir, ckpt = self._resolve_run()
        unsafe = bool(self.config[sub].run.unsafe_load)
        if ckpt is not None:
            try:
                rundir.validate_checkpoint(Path(ckpt), unsafe=unsafe)
            except (FileNotFoundError, ValueError) as err:
                raise PolyheadConfigError(f"--ckpt_path: {err}") from None
        self.config[sub].ckpt_path = ckpt
        if unsafe:
            self.config[sub].weights_only = False  # Lightning's own load of the checkpoint
        self.run_dir = run_dir.resolve()
        os.environ[_RUN_DIR_ENV] = str(self.run_dir)
        self.save_config_kwargs = {
            "run_dir": self.run_dir,
            "filename": "config.yaml" if sub == "fit" else f"config.{sub}.yaml",
        }

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (FileNotFoundError, NotADirectoryError, ValueError) as err:
            raise PolyheadConfigError(str(err)) from err

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
                if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                    id_file.write_text(run_id + "\n")
            loggers.append(
                WandbLogger(
                    save_dir=str(self.run_dir),
                    project=run.wandb_project or f"polyhead-{self.domain}",
                    entity=run.wandb_entity,
                    name=f"{run.experiment}/{self.run_dir.name}",
                    id=run_id,
                    resume="allow",
                    offline=run.wandb == "offline",
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
                ModelCheckpoint(
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
        run = self._get(self.config_init, "run")
        extra = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        trainer_config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        extra += self._callbacks(run, trainer_config)
        if run.progress == "none":
            trainer_config["enable_progress_bar"] = False
        if trainer_config.get("logger") in (None, True):
            trainer_config["logger"] = self._loggers(run)
        trainer_config["default_root_dir"] = str(self.run_dir)
        trainer = self._instantiate_trainer(trainer_config, extra)
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
                    f"{self._get(self.config, 'run').experiment}",
                    file=sys.stderr,
                    flush=True,
                )
            _finish_loggers(self.trainer)
            raise SystemExit(130)
        if self.trainer.is_global_zero:
            best = self.trainer.checkpoint_callback
            if isinstance(best, ModelCheckpoint) and best.best_model_path:
                print(
                    f"polyhead-{self.domain}: best checkpoint {best.best_model_path} "
                    f"({best.monitor}={float(best.best_model_score):.5g})",
                    flush=True,
                )
        _finish_loggers(self.trainer)

    def after_validate(self) -> None:
        _finish_loggers(self.trainer)

    def after_test(self) -> None:
        trainer = self.trainer
        if trainer.is_global_zero and self.run_dir is not None:
            # Everything logged by the test loop (a domain may evaluate several splits there, e.g. dev and test).
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.startswith("train/")}
            payload = {
                "domain": self.domain,
                "experiment": self._get(self.config, "run").experiment,
                "run_dir": str(self.run_dir),
                "ckpt_path": self._get(self.config, "ckpt_path"),
                "metrics": metrics,
            }
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")
            for lg in trainer.loggers:
                if isinstance(lg, WandbLogger):
                    lg.experiment.summary.update(metrics)
            print(f"polyhead-{self.domain}: wrote {self.run_dir / 'metrics.json'}", flush=True)
        _finish_loggers(trainer)

    def after_predict(self) -> None:
        _finish_loggers(self.trainer)


def _wandb_settings() -> Any:
    import wandb

    # No console capture or system stats: keeps offline runs small and start-up fast.
    return wandb.Settings(console="off", x_disable_stats=True, silent=True)


def _finish_loggers(trainer: Trainer) -> None:
    """Close the W&B run so its files are complete before the process (or the next subcommand) goes on."""
    if not trainer.is_global_zero:
        return
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            lg.experiment.finish()
            lg._experiment = None


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
            function taking the remaining argv and returning an exit code.
        args: argv to parse instead of ``sys.argv[1:]``.

    Returns:
        The CLI object after the subcommand ran (None for an extra command).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if extra_commands and argv and argv[0] in extra_commands:
        code = extra_commands[argv[0]](argv[1:])
        if code:
            raise SystemExit(code)
        return None
    defaults = {**default_trainer_settings(), **(trainer_defaults or {})}
    install_checkpoint_globals()  # Lightning's own weights-only loads accept the same types as ours
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
            parser_kwargs={"prog": f"polyhead-{domain}", "default_env": False},
            args=argv,
        )
    except PolyheadConfigError as err:
        print(f"polyhead-{domain}: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except SIGTERMException:
        print(
            f"polyhead-{domain}: stopped by SIGTERM; last.ckpt holds every finished step. "
            f"Resume with: polyhead-{domain} fit --ckpt_path last (plus the same --run.* options)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(143) from None
