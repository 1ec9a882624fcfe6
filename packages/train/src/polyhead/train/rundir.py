"""Run directories: ``<root>/<domain>/<experiment>/<version>/``.

A run directory holds the resolved ``config.yaml``, ``checkpoints/`` (``best-*.ckpt`` by the monitored
metric and ``last.ckpt``), ``metrics.csv``, ``metrics.json`` (written at the end of ``test``), ``media/``
(figures) and the W&B files (``wandb/``).
"""

from __future__ import annotations

import re
from pathlib import Path

from polyhead.train.safety import load_checkpoint

_VERSION_RE = re.compile(r"^version_(\d+)$")
CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"


def experiment_dir(root: str | Path, domain: str, experiment: str) -> Path:
    return Path(root) / domain / experiment


def existing_versions(exp_dir: Path) -> list[Path]:
    """Version directories of an experiment, oldest first (``version_N`` by N, other names by mtime)."""
    if not exp_dir.is_dir():
        return []
    dirs = [d for d in exp_dir.iterdir() if d.is_dir()]

    def key(d: Path) -> tuple[float, int]:
        m = _VERSION_RE.match(d.name)
        return (d.stat().st_mtime, int(m.group(1)) if m else -1)

    return sorted(dirs, key=key)


def next_version(exp_dir: Path) -> str:
    nums = [int(m.group(1)) for d in existing_versions(exp_dir) if (m := _VERSION_RE.match(d.name))]
    return f"version_{max(nums, default=-1) + 1}"


def last_checkpoint(run_dir: Path) -> Path | None:
    p = run_dir / CHECKPOINT_DIR / LAST_CKPT
    return p if p.is_file() else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The best checkpoint of a run (by the monitored metric), else its last one."""
    best = sorted((run_dir / CHECKPOINT_DIR).glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else last_checkpoint(run_dir)


def latest_run_with_checkpoint(exp_dir: Path) -> Path | None:
    for d in reversed(existing_versions(exp_dir)):
        if (d / CHECKPOINT_DIR).is_dir() and any((d / CHECKPOINT_DIR).glob("*.ckpt")):
            return d
    return None


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if it is one."""
    ckpt = ckpt.resolve()
    if ckpt.parent.name == CHECKPOINT_DIR:
        return ckpt.parent.parent
    return None


def validate_checkpoint(path: Path, *, unsafe: bool = False) -> None:
    """Fail with a clear message if ``path`` is not a readable Lightning checkpoint.

    Reads it with :func:`polyhead.train.safety.load_checkpoint` (``weights_only=True``: a crafted file
    cannot run code; ``unsafe=True`` only on the user's explicit request), memory-mapped so a large
    checkpoint is not read twice into memory.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, unsafe (:class:`~polyhead.train.safety.UnsafeFileError`), a directory,
            or not a Lightning checkpoint.
    """
    try:
        ckpt = load_checkpoint(path, map_location="cpu", unsafe=unsafe, mmap=True)
    except IsADirectoryError as err:
        raise ValueError(str(err)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"checkpoint {path} is not a Lightning checkpoint: expected a dict with a 'state_dict' key"
        )
