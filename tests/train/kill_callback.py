"""Callbacks that kill their own process at a chosen point: SIGTERM at a global step (kill-and-resume test),
SIGKILL halfway through writing a best checkpoint (atomic-save test)."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import BinaryIO

import lightning.pytorch as pl
import torch

from polyhead.train.atomic import write_atomic
from polyhead.train.checkpoint_io import AtomicCheckpointIO


class KillAtStep(pl.Callback):
    """Send ``sig`` (a signal name, default SIGTERM) to this process when ``global_step`` reaches ``step``."""

    def __init__(self, step: int, sig: str = "SIGTERM") -> None:
        self.step = step
        self.sig = getattr(signal, sig)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


class _KillingCheckpointIO(AtomicCheckpointIO):
    """Writes half of the first ``best-*`` checkpoint into its temporary file, then SIGKILLs the process."""

    def save_checkpoint(self, checkpoint: dict, path: object, storage_options: object = None) -> None:
        target = Path(str(path))
        if target.name.startswith("best"):
            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            blob = buf.getvalue()

            def half_then_die(f: BinaryIO) -> None:
                f.write(blob[: len(blob) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

            write_atomic(target, half_then_die)
        super().save_checkpoint(checkpoint, path, storage_options)


class KillDuringBestSave(pl.Callback):
    """SIGKILL in the middle of writing the first best checkpoint (deterministic, no timing)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        trainer.strategy.checkpoint_io = _KillingCheckpointIO()
