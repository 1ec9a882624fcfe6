"""Guards against divergence: non-finite steps stop the run, non-finite models are never kept as best.

- :class:`DivergenceGuard` checks the gradients before every optimizer step and the loss after it. A
  non-finite step is skipped (its gradients are dropped, so the optimizer leaves the weights and its own
  state untouched) while at most ``max_bad_steps`` such steps have occurred in the run; the next one stops
  the run with :class:`~polyhead.train.faults.DivergenceError` (exit code 3 from the CLI). The weights are
  therefore never updated by a non-finite gradient, and the periodic ``last.ckpt`` stays finite.
- :class:`FiniteModelCheckpoint` is Lightning's ``ModelCheckpoint`` that refuses to keep a checkpoint as
  best when the monitored metric or any weight is non-finite (Lightning ranks NaN last but still saves it
  while fewer than ``save_top_k`` checkpoints exist, so a run whose first validation came after the
  divergence kept a NaN model as ``best``).
"""

from __future__ import annotations

import math
import sys
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor

from polyhead.train.faults import DivergenceError

__all__ = ["DivergenceGuard", "FiniteModelCheckpoint", "weights_finite"]


def _finite_norm(tensors: list[Tensor]) -> bool:
    if not tensors:
        return True
    # One fused norm over all tensors: inf/NaN anywhere makes it non-finite.
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors, norm_type=2.0)))


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter of ``module`` is finite."""
    return _finite_norm([p.detach() for p in module.parameters()])


class DivergenceGuard(Callback):
    """Skip up to ``max_bad_steps`` non-finite optimizer steps, then stop the run.

    Args:
        max_bad_steps: how many non-finite steps the run may skip in total (0: stop at the first).

    Attributes:
        bad_steps: the global steps that were non-finite so far.
    """

    def __init__(self, *, max_bad_steps: int = 0) -> None:
        if max_bad_steps < 0:
            raise ValueError(f"max_bad_steps must be >= 0, got {max_bad_steps}")
        self.max_bad_steps = max_bad_steps
        self.bad_steps: list[int] = []
        self._flagged = False  # this batch's gradients were already counted as bad

    def _bad(self, trainer: pl.Trainer, what: str) -> None:
        step = trainer.global_step
        self.bad_steps.append(step)
        if len(self.bad_steps) > self.max_bad_steps:
            raise DivergenceError(
                f"training diverged: {what} at step {step} (epoch {trainer.current_epoch}); "
                f"{len(self.bad_steps) - 1} earlier non-finite step(s) skipped, --run.skip_nonfinite_steps "
                f"is {self.max_bad_steps}. The weights were not updated by it; lower the learning rate, or "
                "allow skipping a few bad batches with --run.skip_nonfinite_steps N"
            )
        if trainer.is_global_zero:
            print(
                f"polyhead: warning: {what} at step {step}: step skipped "
                f"({len(self.bad_steps)}/{self.max_bad_steps} allowed)",
                file=sys.stderr,
                flush=True,
            )

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if str(trainer.precision) == "16-mixed":
            return  # fp16 AMP: the GradScaler skips inf/NaN steps itself and adapts its scale
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        finite = _finite_norm([p.grad for p in params])
        if trainer.world_size > 1:
            finite = not trainer.strategy.reduce_boolean_decision(not finite, all=False)
        if not finite:
            self._flagged = True
            self._bad(trainer, "non-finite gradients")
            for p in params:  # optimizers skip parameters without a gradient: no update, no state change
                p.grad = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        flagged, self._flagged = self._flagged, False
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if flagged or not isinstance(loss, Tensor) or loss.numel() != 1:
            return
        value = float(loss.detach())
        if not math.isfinite(value):
            self._bad(trainer, f"non-finite training loss ({value})")


class FiniteModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that never keeps a non-finite metric or non-finite weights as best."""

    @property
    def state_key(self) -> str:
        # Same key as ModelCheckpoint's, so checkpoints written before (or by a plain ModelCheckpoint)
        # restore this callback's state on resume.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def check_monitor_top_k(self, trainer: pl.Trainer, current: Tensor | None = None) -> bool:
        if current is not None:
            ok = bool(torch.isfinite(current).all()) and weights_finite(trainer.lightning_module)
            if trainer.world_size > 1:
                ok = trainer.strategy.reduce_boolean_decision(ok, all=True)
            if not ok:
                if trainer.is_global_zero:
                    print(
                        f"polyhead: warning: not keeping step {trainer.global_step} as best: "
                        f"{self.monitor}={float(current)} or the weights are not finite",
                        file=sys.stderr,
                        flush=True,
                    )
                return False
        return super().check_monitor_top_k(trainer, current)
