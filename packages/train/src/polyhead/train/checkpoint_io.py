"""Checkpoint files written atomically, in the checkpoint's own directory.

Lightning's :class:`~lightning.fabric.plugins.io.torch_io.TorchCheckpointIO` saves through fsspec, whose
local "transaction" writes a file in the system temp directory and moves it into place: across
filesystems that move is a copy, so a kill mid-copy left a half-written ``best-*.ckpt`` under its final
name, and a checkpoint-sized file in ``/tmp``. :class:`AtomicCheckpointIO` writes every checkpoint (best,
last, periodic) with :func:`polyhead.train.atomic.write_atomic` instead, and reads through
:func:`polyhead.train.safety.load_checkpoint` (weights only, allow-listed types).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from polyhead.train.atomic import write_atomic
from polyhead.train.safety import load_checkpoint

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save with temp file + fsync + rename in the target directory; load weights-only.

    Args:
        unsafe_load: load with full pickle (the CLI's ``--run.unsafe_load``), for trusted legacy files.
    """

    def __init__(self, *, unsafe_load: bool = False) -> None:
        super().__init__()
        self.unsafe_load = unsafe_load

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(
                f"{type(self).__name__}.save_checkpoint takes no storage_options, got {storage_options!r}"
            )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.save(checkpoint, f))  # same directory: the rename never copies

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        unsafe = self.unsafe_load or weights_only is False
        return load_checkpoint(
            Path(path), map_location="cpu" if map_location is None else map_location, unsafe=unsafe
        )
