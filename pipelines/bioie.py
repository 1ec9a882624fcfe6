"""Recipe: AGGCN vs the C-GCN tree baseline vs a Transformer on generated abstracts (or real data), over seeds.

    uv run python pipelines/bioie.py                              # quick budget, 3 seeds, all models
    uv run python pipelines/bioie.py --models aggcn --seeds 0     # one run
    uv run python pipelines/bioie.py --full                       # configs/bioie/<model>.yaml budgets
    uv run python pipelines/bioie.py --windows 0,1 --seeds 0      # within- vs cross-sentence candidates

Runs the package's own steps (``polyhead.bioie.pipeline``) through the ``polyhead-bioie`` CLI and writes
``report.md`` and ``results.json`` (per-run metrics) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyhead.bioie.pipeline import MODELS, QUICK_DATA, QUICK_FIT, run_models, summarise, write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/pipelines/bioie")
    ap.add_argument("--epochs", type=int, default=None, help="override the quick budget's epochs")
    ap.add_argument("--full", action="store_true", help="use configs/bioie/<model>.yaml (long runs)")
    ap.add_argument("--windows", default="0", help="cross-sentence windows to compare, e.g. 0,1")
    ns = ap.parse_args()
    models = tuple(ns.models.split(","))
    seeds = tuple(int(s) for s in ns.seeds.split(","))
    kw: dict = {} if ns.epochs is None else {"fit_args": ["--trainer.max_epochs", str(ns.epochs)]}
    if ns.full:
        kw = {"data_args": [], "fit_args": [],
              "model_args": {m: ["--config", str(ROOT / "configs" / "bioie" / f"{m}.yaml")] for m in models}}  # fmt: skip
    out = Path(ns.out)
    windows = [int(w) for w in ns.windows.split(",")]
    results = {}
    for w in windows:  # one run directory per window; keys "<model>" or "<model>@w<window>"
        wkw = dict(kw)
        if w:
            wkw["data_args"] = [*kw.get("data_args", QUICK_DATA), "--data.cross_sentence_window", str(w)]
        res = run_models(out / f"window{w}" if len(windows) > 1 else out, models=models, seeds=seeds, **wkw)
        results |= {(m if len(windows) == 1 else f"{m}@w{w}"): r for m, r in res.items()}
    print(write_report(results, out / "report.md", f"BioIE: {', '.join(models)} over seeds {list(seeds)}"))
    payload = {
        "budget": "full configs" if ns.full else {"data": QUICK_DATA, "fit": kw.get("fit_args", QUICK_FIT)},
        "windows": windows,
        "summary": {m: {"micro_f1_mean": a, "micro_f1_std": b} for m, (a, b) in summarise(results).items()},
        "runs": {m: [{"run_dir": str(r.run_dir), "wall_s": r.wall_s, "metrics": r.metrics} for r in runs]
                 for m, runs in results.items()},
    }  # fmt: skip
    (out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    main()
