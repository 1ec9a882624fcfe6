"""Recipe: the three CSLR models on both generated splits (or on the Isharah release) with one budget.

    uv run python pipelines/cslr.py                      # quick: 12 glosses, 60 sentences, batch 8, 12 epochs, d_model 128
    uv run python pipelines/cslr.py --full                           # configs/cslr/*.yaml (reference sizes)
    uv run python pipelines/cslr.py --epochs 40 --sentences 300 --glosses 20 --batch-size 16   # README table
    uv run python pipelines/cslr.py --isharah DIR --tasks signer_independent   # DIR: pose.pkl, train/dev/test.txt

Runs the package's own steps (``polyhead.cslr.pipeline``) and writes ``report.md`` (WER of every model on
every split, and whether each task's paper model wins) into the output folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyhead.cslr.pipeline import MODELS, QUICK_EPOCHS, QUICK_MODEL, TASKS, run_models, write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/pipelines/cslr")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--epochs", type=int, default=QUICK_EPOCHS)
    ap.add_argument("--glosses", type=int, default=12)
    ap.add_argument("--sentences", type=int, default=60)
    ap.add_argument("--samples-per-sentence", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--full", action="store_true", help="reference model sizes from configs/cslr/")
    ap.add_argument("--isharah", default=None, help="folder with pose.pkl and train.txt/dev.txt/test.txt")
    ns = ap.parse_args()
    models, tasks = ns.models.split(","), ns.tasks.split(",")
    if ns.isharah:
        d = Path(ns.isharah)
        data = ["--data.keypoints", str(d / "pose.pkl")]
        data += [f"--data.{s}_annotations={d / f'{s}.txt'}" for s in ("train", "dev", "test")]
    else:
        data = ["--data.num_glosses", str(ns.glosses), "--data.num_sentences", str(ns.sentences),
                "--data.samples_per_sentence", str(ns.samples_per_sentence)]  # fmt: skip
    if ns.full:
        model_args = {m: ["--config", str(ROOT / "configs" / "cslr" / f"{m}.yaml")] for m in models}
        fit = []
    else:
        model_args, fit = {}, list(QUICK_MODEL)
        data += ["--data.batch_size", str(ns.batch_size)]
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_models(
        out,
        runs=[(t, m) for t in tasks for m in models],
        model_args=model_args,
        extra_args=[*fit, "--trainer.max_epochs", str(ns.epochs)],
        data_args=data,
    )
    print(write_report(results, out / "report.md", f"CSLR: {', '.join(models)} on {', '.join(tasks)}"))


if __name__ == "__main__":
    main()
