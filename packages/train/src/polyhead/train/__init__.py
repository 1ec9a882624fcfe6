"""polyhead.train: the common PyTorch Lightning training platform of polyhead.

    >>> from polyhead.train import run_cli
    >>> run_cli("ctr", CTRModule, CTRDataModule, monitor="val/auc", mode="max")

gives ``polyhead-ctr fit|validate|test|predict`` with run directories, W&B (offline by default),
checkpoints, resume and the shared callbacks. ``polyhead list`` / ``polyhead demo`` discover the
installed domains through the ``polyhead.domains`` entry points.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# Names are imported from their module on first use (PEP 562): `import polyhead.train.safety` or
# `polyhead.train.domains` must not pay for Lightning, W&B and matplotlib (seconds at every command's
# start-up); run_cli, the callbacks and the CLI still import Lightning when they are used.
_LAZY = {
    "tune_cpu_allocator": "allocator",
    "write_atomic": "atomic",
    "write_text_atomic": "atomic",
    "PolyheadCLI": "cli",
    "RunOptions": "cli",
    "default_trainer_settings": "cli",
    "run_cli": "cli",
    "run_domain_cli": "entry",
    "DemoRow": "domains",
    "Domain": "domains",
    "discover_domains": "domains",
    "ExitCode": "faults",
    "PolyheadConfigError": "faults",
    "stateful_loader": "loaders",
    "log_figure": "media",
    "run_dir": "media",
    "default_cache_dir": "rundir",
    "NUMPY_ARRAYS": "safety",
    "UnsafeFileError": "safety",
    "load_checkpoint": "safety",
    "restricted_load": "safety",
    "OfflineRun": "wandb_offline",
    "read_offline_run": "wandb_offline",
}

if TYPE_CHECKING:
    from polyhead.train.allocator import tune_cpu_allocator
    from polyhead.train.atomic import write_atomic, write_text_atomic
    from polyhead.train.cli import PolyheadCLI, RunOptions, default_trainer_settings, run_cli
    from polyhead.train.domains import DemoRow, Domain, discover_domains
    from polyhead.train.entry import run_domain_cli
    from polyhead.train.faults import ExitCode, PolyheadConfigError
    from polyhead.train.loaders import stateful_loader
    from polyhead.train.media import log_figure, run_dir
    from polyhead.train.rundir import default_cache_dir
    from polyhead.train.safety import NUMPY_ARRAYS, UnsafeFileError, load_checkpoint, restricted_load
    from polyhead.train.wandb_offline import OfflineRun, read_offline_run


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        # `polyhead.train.rundir` after a bare `import polyhead.train`, as when this file imported every
        # submodule eagerly
        if not name.startswith("_") and importlib.util.find_spec(f"polyhead.train.{name}") is not None:
            return importlib.import_module(f"polyhead.train.{name}")
        raise AttributeError(f"module 'polyhead.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"polyhead.train.{module}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "NUMPY_ARRAYS",
    "DemoRow",
    "Domain",
    "ExitCode",
    "OfflineRun",
    "PolyheadCLI",
    "PolyheadConfigError",
    "RunOptions",
    "UnsafeFileError",
    "default_cache_dir",
    "default_trainer_settings",
    "discover_domains",
    "load_checkpoint",
    "log_figure",
    "read_offline_run",
    "restricted_load",
    "run_cli",
    "run_dir",
    "run_domain_cli",
    "stateful_loader",
    "tune_cpu_allocator",
    "write_atomic",
    "write_text_atomic",
]
