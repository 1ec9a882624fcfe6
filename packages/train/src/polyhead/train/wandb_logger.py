"""W&B logging that survives a SIGKILL: the offline run is closed and continued at checkpoints.

An offline W&B run is written by W&B's service process, which buffers the ``.wandb`` transaction log and
writes it out when the run is finished: a process killed with SIGKILL left its segment with only the
7-byte header, losing the config and every history row. W&B has no public flush, and ignores ``resume``
in offline mode (every ``wandb.init`` starts a new ``offline-run-*`` folder, also for the same id).

So :class:`WandbFlush` finishes the current run right after a checkpoint save (at the next batch, once
the step's metrics are logged; at most every ``every_s`` seconds) and :class:`PolyheadWandbLogger`
continues logging into a new segment with the *same run id*; a resumed
``fit`` adds segments the same way. :func:`polyhead.train.read_offline_run` reads all segments of a run
directory as one run, dropping the rows of a killed segment that the resumed run logged again (steps at
or after the step it resumed from), so W&B and the CSV logs (the source of truth) agree after a resume.
``wandb sync <run dir>/wandb/offline-run-*`` uploads the segments into one online run (same id).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

__all__ = ["PolyheadWandbLogger", "WandbFlush"]


class PolyheadWandbLogger(WandbLogger):
    """``WandbLogger`` whose run can be finished and continued (same id) mid-training."""

    segments = 1
    _experiment: Any  # WandbLogger's run (or None before the first access)

    def flush_segment(self) -> None:
        """Finish the current run (its files become complete) and continue in a new segment, same id.

        Uses ``WandbLogger._experiment``: Lightning has no public way to replace the logger's run.
        """
        run = self._experiment
        if run is None:
            return
        started = float(run.start_time)
        run.finish()
        self._experiment = None
        # Offline folders are named by the start second (offline-run-YYYYmmdd_HHMMSS-<id>): two segments
        # started within one second would share a folder, so wait for the next second if needed.
        wait = int(started) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)
        _ = self.experiment  # wandb.init with the same id/project/dir: the next segment
        self.segments += 1


class WandbFlush(Callback):
    """Close and continue the W&B run after checkpoint saves, at most once every ``every_s`` seconds.

    Args:
        every_s: minimum seconds between two flushes (0: at every checkpoint save). A flush costs about
            half a second (measured on a loaded 2-core machine), so the default keeps it well under 1%.
    """

    def __init__(self, *, every_s: float = 60.0) -> None:
        if every_s < 0:
            raise ValueError(f"every_s must be >= 0, got {every_s}")
        self.every_s = every_s
        self._last = time.monotonic()
        self._pending = False
        self.flushes = 0

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: Any) -> None:
        # Lightning logs a step's metrics after the batch-end callbacks that save checkpoints: flush at the
        # start of the next batch, so the segment holds every row up to the checkpoint a resume starts from.
        if trainer.is_global_zero and time.monotonic() - self._last >= self.every_s:
            self._pending = True

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if not self._pending:
            return
        self._pending = False
        for lg in trainer.loggers:
            if isinstance(lg, PolyheadWandbLogger):
                try:
                    lg.flush_segment()
                except Exception as err:  # W&B trouble must not stop training
                    print(
                        f"polyhead: warning: W&B flush failed ({type(err).__name__}: {err})", file=sys.stderr
                    )
                self.flushes += 1
        self._last = time.monotonic()
