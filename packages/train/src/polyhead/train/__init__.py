"""polyhead.train: the common PyTorch Lightning training platform of polyhead.

    >>> from polyhead.train import run_cli
    >>> run_cli("ctr", CTRModule, CTRDataModule, monitor="val/auc", mode="max")

gives ``polyhead-ctr fit|validate|test|predict`` with run directories, W&B (offline by default),
checkpoints, resume and the shared callbacks. ``polyhead list`` / ``polyhead demo`` discover the
installed domains through the ``polyhead.domains`` entry points.
"""

from polyhead.train.allocator import tune_cpu_allocator
from polyhead.train.atomic import write_atomic, write_text_atomic
from polyhead.train.cli import PolyheadCLI, RunOptions, default_trainer_settings, run_cli
from polyhead.train.domains import DemoRow, Domain, discover_domains
from polyhead.train.faults import ExitCode, PolyheadConfigError
from polyhead.train.loaders import stateful_loader
from polyhead.train.media import log_figure, run_dir
from polyhead.train.rundir import default_cache_dir
from polyhead.train.safety import NUMPY_ARRAYS, UnsafeFileError, load_checkpoint, restricted_load
from polyhead.train.wandb_offline import OfflineRun, read_offline_run

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
    "stateful_loader",
    "tune_cpu_allocator",
    "write_atomic",
    "write_text_atomic",
]
