"""Run directories: ``<root>/<domain>/<experiment>/<version>/``.

A run directory holds the resolved ``config.yaml``, ``checkpoints/`` (``best-*.ckpt`` by the monitored
metric and ``last.ckpt``), ``metrics.csv``, ``metrics.json`` (written at the end of ``test``), ``media/``
(figures), the W&B files (``wandb/``) and, while a process writes it, ``.lock``.

Only *complete* checkpoints are ever chosen (as best, last or the run to resume): a torch checkpoint is a
zip archive whose directory is written last, so a file cut short by a crash fails
:func:`is_complete_checkpoint` without being read. Domains keep their data caches under
:func:`default_cache_dir`, i.e. below ``--run.root``.
"""

from __future__ import annotations

import os
import re
import zipfile
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


def default_cache_dir(domain: str, *, root: str | Path | None = None) -> Path:
    """Where a domain keeps its data cache by default: ``<run root>/<domain>/cache``.

    ``root`` defaults to the ``--run.root`` of the running CLI (``POLYHEAD_RUN_ROOT``, set by
    ``run_cli`` before the data module is built), else ``runs``. The CLI fills a data module's
    ``cache_dir`` argument with this when it is ``None``, so a domain declares ``cache_dir: str | None =
    None`` and follows ``--run.root`` without further code.
    """
    if root is None:
        root = os.environ.get("POLYHEAD_RUN_ROOT", "runs")
    return Path(root) / domain / "cache"


def is_complete_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a whole checkpoint file (its zip directory, written last, is readable).

    A checkpoint directory (a sharded FSDP/DeepSpeed save) counts when it holds any files.
    """
    if path.is_dir():
        return any(path.iterdir())
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return bool(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def last_checkpoint(run_dir: Path) -> Path | None:
    """``checkpoints/last.ckpt`` of a run, if it is complete."""
    p = run_dir / CHECKPOINT_DIR / LAST_CKPT
    return p if is_complete_checkpoint(p) else None


def best_checkpoint(run_dir: Path) -> Path | None:
    """The best checkpoint of a run (by the monitored metric), else its last one; complete files only."""
    best = [p for p in (run_dir / CHECKPOINT_DIR).glob("best*.ckpt") if is_complete_checkpoint(p)]
    best.sort(key=lambda p: p.stat().st_mtime)
    return best[-1] if best else last_checkpoint(run_dir)


def latest_run_with_checkpoint(exp_dir: Path) -> Path | None:
    """The newest run of an experiment that has a complete checkpoint."""
    for d in reversed(existing_versions(exp_dir)):
        if best_checkpoint(d) is not None:
            return d
    return None


def run_dir_of_checkpoint(ckpt: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if it is one."""
    ckpt = ckpt.resolve()
    if ckpt.parent.name == CHECKPOINT_DIR:
        return ckpt.parent.parent
    return None


def read_checkpoint(path: Path, *, unsafe: bool = False) -> dict:
    """Read a Lightning checkpoint safely (memory-mapped) after :func:`validate_checkpoint`'s checks.

    Raises:
        FileNotFoundError, ValueError: as :func:`validate_checkpoint`.
    """
    if path.is_dir():
        raise ValueError(
            f"checkpoint {path} is a directory (a sharded FSDP/DeepSpeed checkpoint?); polyhead writes and "
            "reads single-file checkpoints (configs/trainer/gpu_fsdp.yaml saves full state dicts)"
        )
    try:
        ckpt = load_checkpoint(path, map_location="cpu", unsafe=unsafe, mmap=True)
    except IsADirectoryError as err:
        raise ValueError(str(err)) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"checkpoint {path} is not a Lightning checkpoint: expected a dict with a 'state_dict' key"
        )
    return ckpt


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
    read_checkpoint(path, unsafe=unsafe)
