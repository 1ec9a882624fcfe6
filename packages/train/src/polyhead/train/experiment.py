"""One experiment as the pipelines run it: ``fit`` then ``test`` through a domain's CLI, into one run directory.

Every domain pipeline (and the variant x domain matrix) trains and evaluates through the same
``polyhead-<domain>`` command line a user types, so the recipes exercise exactly what users run::

    from polyhead.ctr.cli import main
    result = fit_test(main, domain="ctr", root="runs/demo", experiment="autoint",
                      common_args=["--model.model", "autoint"])
    result.metrics["test/auc"]

The run directory is chosen here (the next ``version_N`` of the experiment, or the one given) and passed
to both subcommands as ``--run.version``, so ``test`` evaluates the best checkpoint of this very ``fit``,
never a newer or older run found by modification time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhead.train import rundir


@dataclass(frozen=True)
class RunResult:
    """What one fit -> test experiment produced.

    Attributes:
        run_dir: the run directory both subcommands wrote into.
        metrics: the test metrics (``metrics.json``'s ``metrics``).
        payload: the whole ``metrics.json``.
        wall_s: wall time of fit + test in seconds.
    """

    run_dir: Path
    metrics: dict[str, float]
    payload: dict[str, Any]
    wall_s: float


def fit_test(
    cli_main: Callable[[list[str]], object],
    *,
    domain: str,
    root: str | Path,
    experiment: str,
    version: str | None = None,
    common_args: Sequence[str] = (),
    fit_args: Sequence[str] = (),
    test_args: Sequence[str] = (),
) -> RunResult:
    """Run ``fit`` then ``test`` of a domain's CLI into ``<root>/<domain>/<experiment>/<version>``.

    Args:
        cli_main: the domain's CLI entry point, ``main(args)``.
        domain: the domain name (the run directory's second level).
        root: run root (``--run.root``).
        experiment: experiment name (``--run.experiment``).
        version: run version; default: the experiment's next ``version_N``.
        common_args: arguments for both subcommands (model and data options).
        fit_args: arguments for ``fit`` only (trainer budget, ...).
        test_args: arguments for ``test`` only.

    Returns:
        The run directory, the test metrics and the wall time.

    Raises:
        SystemExit: whatever the CLI exits with (a config error is exit code 2); callers that must go on
            (``polyhead demo``, the matrix) catch it per experiment.
        FileNotFoundError: ``test`` finished without writing ``metrics.json``.
    """
    exp_dir = rundir.experiment_dir(root, domain, experiment)
    version = version or rundir.next_version(exp_dir)
    run_args = ["--run.root", str(root), "--run.experiment", experiment, "--run.version", version]
    t0 = time.monotonic()
    cli_main(["fit", *common_args, *run_args, *fit_args])
    cli_main(["test", *common_args, *run_args, *test_args])
    wall_s = time.monotonic() - t0
    run_dir = exp_dir / version
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"polyhead-{domain} test finished without writing {path}")
    payload = json.loads(path.read_text())
    return RunResult(
        run_dir=run_dir, metrics=dict(payload.get("metrics", {})), payload=payload, wall_s=wall_s
    )
