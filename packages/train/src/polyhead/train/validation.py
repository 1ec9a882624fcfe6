"""Value checks on the resolved configuration, before anything is built, read or written.

LightningCLI checks types (``--data.batch_size abc`` is refused by the parser) but not ranges: a batch
size of -5 used to fail after preprocessing, inside a DataLoader, and left a half-made run directory. The
checks here go by the option's name, so they cover every domain without per-domain code:

- ``batch_size`` / ``*_batch_size``: an integer >= 1;
- ``lr`` / ``learning_rate``: finite and > 0; ``*_lr`` (``min_lr``, ...): finite and >= 0;
- ``num_workers``, ``*_epochs``, ``*_steps`` of the model and data sections: >= 0;
- file options (``*_path``, ``path``, ``*_file``, ``*manifest``, ``*annotations``, ``keypoints``): an
  existing directory is refused ("expected a file"); folder options (``*_dir``): an existing file is refused;
- the trainer's budget: ``max_epochs`` and ``max_steps`` are -1/None or >= 1, and 0 only with
  ``--run.allow_untrained`` (a run that trains nothing is almost always a mistake);
  ``accumulate_grad_batches`` >= 1, ``gradient_clip_val`` >= 0, ``limit_*_batches`` >= 0,
  ``check_val_every_n_epoch`` >= 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

__all__ = ["config_problems"]

_FILE_SUFFIXES = ("_path", "_file", "manifest", "annotations")
_FILE_NAMES = {"path", "file", "keypoints", "data_path"}


def _is_num(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _walk(prefix: str, node: Any):
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, node


def _value_problem(key: str, name: str, v: Any) -> str | None:
    if v is None:
        return None
    if name == "batch_size" or name.endswith("_batch_size"):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return f"--{key}: must be an integer >= 1, got {v!r}"
    elif name in ("lr", "learning_rate"):
        if not (_is_num(v) and math.isfinite(v) and v > 0):
            return f"--{key}: must be a finite number > 0, got {v!r}"
    elif name.endswith("_lr"):
        if _is_num(v) and not (math.isfinite(v) and v >= 0):
            return f"--{key}: must be a finite number >= 0, got {v!r}"
    elif name == "num_workers" or name.endswith("_epochs") or name.endswith("_steps"):
        if _is_num(v) and v < 0:
            return f"--{key}: must be >= 0, got {v!r}"
    elif isinstance(v, str) and v and (name in _FILE_NAMES or name.endswith(_FILE_SUFFIXES)):
        if Path(v).is_dir():
            return f"--{key}: {v} is a directory, expected a file"
    elif isinstance(v, str) and v and (name.endswith("_dir") or name == "dir"):
        p = Path(v)
        if p.exists() and not p.is_dir():
            return f"--{key}: {v} is a file, expected a directory"
    return None


def _trainer_problems(trainer: Mapping[str, Any], *, allow_untrained: bool, fit: bool) -> list[str]:
    out = []
    for key in ("max_epochs", "max_steps"):
        v = trainer.get(key)
        if not _is_num(v):
            continue
        if v == 0 and fit and not allow_untrained:
            out.append(
                f"--trainer.{key} 0 trains nothing; pass --run.allow_untrained true if that is what you want"
            )
        elif v < -1:
            out.append(f"--trainer.{key}: must be -1 (no limit) or >= 0, got {v}")
    v = trainer.get("min_epochs")
    if _is_num(v) and v < 0:
        out.append(f"--trainer.min_epochs: must be >= 0, got {v}")
    v = trainer.get("accumulate_grad_batches")
    if _is_num(v) and v < 1:
        out.append(f"--trainer.accumulate_grad_batches: must be >= 1, got {v}")
    v = trainer.get("gradient_clip_val")
    if _is_num(v) and not (math.isfinite(v) and v >= 0):
        out.append(f"--trainer.gradient_clip_val: must be a finite number >= 0, got {v}")
    v = trainer.get("check_val_every_n_epoch")
    if _is_num(v) and v < 1:
        out.append(f"--trainer.check_val_every_n_epoch: must be >= 1, got {v}")
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"):
        v = trainer.get(key)
        if _is_num(v) and v < 0:
            out.append(f"--trainer.{key}: must be >= 0, got {v}")
    return out


def config_problems(config: Mapping[str, Any], *, subcommand: str) -> list[str]:
    """Every out-of-range value in a resolved subcommand config (a nested dict), as one-line messages.

    Args:
        config: the subcommand's config as a nested mapping (sections ``trainer``, ``model``, ``data``,
            ``run``).
        subcommand: ``fit``, ``validate``, ``test`` or ``predict`` (the training budget is checked for
            ``fit`` only).
    """
    run = config.get("run") or {}
    allow_untrained = bool(run.get("allow_untrained", False))
    problems: list[str] = []
    for section in ("model", "data"):
        for key, v in _walk(section, config.get(section) or {}):
            msg = _value_problem(key, key.rsplit(".", 1)[-1], v)
            if msg:
                problems.append(msg)
    problems += _trainer_problems(
        config.get("trainer") or {}, allow_untrained=allow_untrained, fit=subcommand == "fit"
    )
    for key in ("save_every_n_steps", "skip_nonfinite_steps", "wandb_flush_every_s"):
        v = run.get(key)
        if _is_num(v) and v < 0:
            problems.append(f"--run.{key}: must be >= 0, got {v}")
    v = run.get("progress_every_n_steps")
    if _is_num(v) and v < 1:
        problems.append(f"--run.progress_every_n_steps: must be >= 1, got {v}")
    return problems
