"""Figures and files produced during a run: saved under ``<run_dir>/media/`` and logged to W&B."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from polyhead.train.atomic import write_atomic


def run_dir(trainer: pl.Trainer) -> Path:
    """The run directory ``<root>/<domain>/<experiment>/<version>/`` of a trainer built by the polyhead CLI."""
    d = getattr(trainer, "polyhead_run_dir", None)
    if d is not None:
        return Path(d)
    return Path(trainer.log_dir or trainer.default_root_dir)


def log_figure(trainer: pl.Trainer, key: str, fig: Any, *, close: bool = True) -> Path | None:
    """Save a matplotlib figure as ``media/<key>_step<N>.png`` and log it to every W&B logger.

    Returns the PNG path on the global-zero process (None elsewhere).
    """
    import matplotlib.pyplot as plt
    from lightning.pytorch.loggers import WandbLogger

    path = None
    if trainer.is_global_zero:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", key).strip("_")
        path = run_dir(trainer) / "media" / f"{safe}_step{trainer.global_step}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.log_image(key=key, images=[str(path)], step=trainer.global_step)
    if close:
        plt.close(fig)
    return path
