"""Callbacks shared by every polyhead domain.

- :class:`ResumeCheckpoint`: keeps ``checkpoints/last.ckpt`` current (every N optimizer steps, at epoch
  end, and at the step boundary after a SIGTERM/SIGINT), written atomically (through
  :class:`~polyhead.train.checkpoint_io.AtomicCheckpointIO`, which it installs on a plain trainer too), so
  ``fit --ckpt_path last`` continues a killed run without losing finished steps. A model whose weights
  went non-finite never replaces ``last.ckpt``.
- :class:`LogLinesProgressBar`: plain, periodic log lines for non-TTY output (CI, log files).
- :class:`AttentionMapLogger`: captures the attention maps of the first validation batch with
  :func:`polyhead.attention.analysis.capture_attention` and logs per-head heatmaps. It looks for attention
  modules when validation starts, after the module's ``setup``/``configure_model`` built the network.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from polyhead.train.checkpoint_io import AtomicCheckpointIO
from polyhead.train.guards import weights_finite
from polyhead.train.media import log_figure

log = logging.getLogger(__name__)


class ResumeCheckpoint(Callback):
    """Atomic ``last.ckpt`` every ``every_n_train_steps`` steps, at epoch end, and on SIGTERM/SIGINT.

    SIGTERM (schedulers, ``kill``): Lightning notices it at the next step boundary (agreeing across DDP
    ranks) and raises ``SIGTERMException``; this callback then saves ``last.ckpt`` before the run ends.
    SIGINT (Ctrl-C): the current optimizer step finishes, ``last.ckpt`` is saved and the run stops; a
    second Ctrl-C interrupts at once. In both cases ``interrupted`` is True afterwards. Only a SIGKILL
    loses work: the steps since the last periodic save.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 50) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self.interrupted = False
        self._sigint = False
        self._old_handler: Any = None

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._sigint:
            raise KeyboardInterrupt
        self._sigint = True
        print(
            f"polyhead: interrupted; saving {self.path} after this step (Ctrl-C again to abort)",
            file=sys.stderr,
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.interrupted = False
        self._sigint = False
        try:
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not in the main thread: leave signal handling to the caller
            self._old_handler = None

    def _restore_handler(self) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # The polyhead CLI installs AtomicCheckpointIO; a plain Trainer gets it here (only over Lightning's
        # default IO, never over one the user chose).
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def save(self, trainer: pl.Trainer) -> None:
        finite = weights_finite(trainer.lightning_module)
        if trainer.world_size > 1:  # sharded weights differ per rank: agree before the collective save
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            if trainer.is_global_zero:
                print(
                    f"polyhead: warning: weights are not finite at step {trainer.global_step}; "
                    f"{self.path} not overwritten",
                    file=sys.stderr,
                    flush=True,
                )
            return
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path)  # collective; the checkpoint IO writes it atomically

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        stop = self._sigint
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        step = trainer.global_step
        if stop or (self.every_n_train_steps > 0 and step > 0 and step % self.every_n_train_steps == 0):
            self.save(trainer)
        if stop:
            self.interrupted = True
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.interrupted:
            self.save(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handler()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handler()
        if isinstance(exception, SIGTERMException) and trainer.state.fn == "fit":
            self.save(trainer)
            self.interrupted = True


class LogLinesProgressBar(ProgressBar):
    """Progress as plain log lines (no carriage returns), for CI and files.

    Prints a line every ``every_n_steps`` training batches and one per validation/test run.
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        super().__init__()
        self.every_n_steps = every_n_steps
        self._enabled = True
        self._t0 = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, flush=True)

    @staticmethod
    def _fmt(metrics: dict[str, Any]) -> str:
        parts = []
        for k, v in metrics.items():
            if k == "v_num":
                continue
            try:
                parts.append(f"{k}={float(v):.4g}")
            except (TypeError, ValueError):
                parts.append(f"{k}={v}")
        return " ".join(parts)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        total = self.total_train_batches
        last = isinstance(total, int) and batch_idx + 1 == total
        if (batch_idx + 1) % self.every_n_steps == 0 or last:
            total_s = total if isinstance(total, int) else "?"
            self._print(
                trainer,
                f"[fit] epoch {trainer.current_epoch} batch {batch_idx + 1}/{total_s} step {trainer.global_step} "
                f"{time.monotonic() - self._t0:.0f}s {self._fmt(self.get_metrics(trainer, pl_module))}",
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        self._print(
            trainer, f"[val] epoch {trainer.current_epoch} step {trainer.global_step} {self._fmt(metrics)}"
        )

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("test")}
        self._print(trainer, f"[test] {self._fmt(metrics)}")


class AttentionMapLogger(Callback):
    """Log per-head attention maps of the first validation batch every ``every_n_epochs`` epochs.

    Uses :func:`polyhead.attention.analysis.capture_attention`; a model without polyhead attention
    modules gets one clear message and the callback turns itself off.
    """

    def __init__(self, every_n_epochs: int = 1, max_heads: int = 8, max_modules: int = 4) -> None:
        self.every_n_epochs = every_n_epochs
        self.max_heads = max_heads
        self.max_modules = max_modules
        self.disabled_reason: str | None = None
        self._ctx: Any = None
        self._store: Any = None
        self._checked = False

    def _active(self, trainer: pl.Trainer, batch_idx: int) -> bool:
        return (
            self.disabled_reason is None
            and batch_idx == 0
            and not trainer.sanity_checking
            and trainer.current_epoch % self.every_n_epochs == 0
        )

    def _disable(self, reason: str) -> None:
        self.disabled_reason = reason
        log.info("attention-map logging disabled: %s", reason)
        print(f"polyhead: attention-map logging disabled: {reason}", file=sys.stderr, flush=True)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        try:
            from polyhead.attention.analysis import capture_attention, plot_attention_heads  # noqa: F401
        except ImportError as err:
            self._disable(f"polyhead.attention.analysis is not available ({err})")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Callbacks' `setup` runs before the module's, and domains build their network in `setup` (from the
        # data's vocabulary/cardinalities) or `configure_model`: look for attention modules only now.
        if self.disabled_reason is not None or self._checked:
            return
        from polyhead.attention.base import AttentionBase

        self._checked = True
        if not any(isinstance(m, AttentionBase) for m in pl_module.modules()):
            self._disable(f"{type(pl_module).__name__} has no polyhead.attention modules")

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not self._active(trainer, batch_idx):
            return
        from polyhead.attention.analysis import capture_attention

        self._ctx = capture_attention(pl_module)
        self._store = self._ctx.__enter__()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._ctx is None:
            return
        ctx, store = self._ctx, self._store
        self._ctx = self._store = None
        ctx.__exit__(None, None, None)
        maps = {name: ws[0] for name, ws in dict(store).items() if ws and ws[0] is not None}
        if not maps:
            self._disable("the model ran no attention module that returns weights in validation")
            return
        from polyhead.attention.analysis import plot_attention_heads

        for name in list(maps)[: self.max_modules]:
            weights = maps[name][0, : self.max_heads].float().cpu()  # (heads, L, S) of the first sample
            fig = plot_attention_heads(weights, title=f"{name} epoch {trainer.current_epoch}")
            log_figure(trainer, f"attention/{name}", fig)
