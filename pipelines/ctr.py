"""Recipe: AutoInt and AutoInt+ vs LR / FM / DNN on generated Criteo-format data or a real Criteo file.

    uv run python pipelines/ctr.py                       # 200k generated rows (the quick mode)
    uv run python pipelines/ctr.py --rows 2000000        # a bigger generated set
    uv run python pipelines/ctr.py --data train.txt      # a real Criteo file (TSV, no header)

Runs the package's own steps (``polyhead.ctr.pipeline``) with ``configs/ctr/autoint.yaml`` for AutoInt
and writes ``report.md`` into the AutoInt run directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyhead.ctr.pipeline import MODELS, run_models, write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="raw Criteo file (default: generated data)")
    ap.add_argument("--rows", type=int, default=200_000, help="generated rows when --data is not given")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="runs/pipelines/ctr")
    ap.add_argument("--models", default=",".join(MODELS))
    ns = ap.parse_args()
    data_args = ["--data.data_path", ns.data] if ns.data else ["--data.generate_rows", str(ns.rows)]
    results = run_models(
        Path(ns.out) / "ctr",
        models=tuple(ns.models.split(",")),
        data_args=data_args,
        extra_args=["--trainer.max_epochs", str(ns.epochs)],
    )
    report = Path(results[next(iter(results))]["run_dir"]) / "report.md"
    write_report(results, report, "CTR: AutoInt vs baselines")
    print(report.read_text())


if __name__ == "__main__":
    main()
