"""Recipe: RestoreFormer++ vs the U-Net without a prior vs the degraded input, over seeds, on rendered faces.

    uv run python pipelines/face.py                                    # 3 seeds, the budget below
    uv run python pipelines/face.py --seeds 0,1 --epochs 8 --batches 40 --resolution 64
    uv run python pipelines/face.py --config configs/face/restoreformer.yaml   # full widths (GPU)
    uv run python pipelines/face.py --collect --out runs/pipelines/face       # report from finished runs

Seeds can run as separate processes into the same ``--out`` (``--seeds 1``, ``--seeds 2``); ``--collect``
then writes the report from every ``<model>-seed<N>`` run found there.

Runs the package's own steps (``polyhead.face.pipeline``): every model is trained with the same budget
(epochs x batches; RestoreFormer++ splits it between stage 1 and stage 2) and tested on the same held-out
rendered (SYNTHETIC) faces; the degraded input is scored on the same test set. Writes ``report.md``
(mean ± std over seeds and the verdict) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyhead.face.pipeline import MODELS, run_models, write_report
from polyhead.train.experiment import RunResult


def collect(out: Path) -> dict[tuple[str, int], RunResult]:
    """Finished runs under ``out/face/<model>-seed<N>/<version>/metrics.json`` (the latest version each)."""
    results = {}
    for exp in sorted((out / "face").glob("*-seed*")):
        model, seed = exp.name.rsplit("-seed", 1)
        runs = sorted(exp.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
        if not runs:
            continue
        payload = json.loads(runs[-1].read_text())
        run = runs[-1].parent
        if (run / "wall.json").is_file():
            wall = json.loads((run / "wall.json").read_text())["wall_s"]
        else:  # runs started by an older recipe: from the first config to metrics.json
            wall = runs[-1].stat().st_mtime - (run / "config.yaml").stat().st_mtime
        results[(model, int(seed))] = RunResult(run, payload["metrics"], payload, wall)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--channel-mult", default="1,2,2")
    ap.add_argument("--num-train", type=int, default=512)
    ap.add_argument("--num-test", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--stage1-epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument(
        "--config", default=None, help="a configs/face/*.yaml for both models (replaces the widths)"
    )
    ap.add_argument("--out", default="runs/pipelines/face")
    ap.add_argument(
        "--collect", action="store_true", help="only write the report from finished runs in --out"
    )
    ns = ap.parse_args()
    if ns.collect:
        results = collect(Path(ns.out))
        print(write_report(results, Path(ns.out) / "report.md", f"Face restoration ({len(results)} runs)"))
        return
    mult = "[" + ns.channel_mult + "]"
    data = [
        "--data.num_train",
        str(ns.num_train),
        "--data.num_val",
        "32",
        "--data.num_test",
        str(ns.num_test),
    ]
    if ns.config:
        data = ["--config", ns.config, *data]
    else:
        data += ["--model.resolution", str(ns.resolution), "--model.channels", str(ns.channels),
                 "--model.channel_mult", mult, "--model.z_dim", "32", "--model.num_codes", "128"]  # fmt: skip
    results = run_models(
        Path(ns.out),
        models=tuple(ns.models.split(",")),
        seeds=tuple(int(s) for s in ns.seeds.split(",")),
        data_args=data,
        model_args={"restoreformer": ["--model.stage1_epochs", str(ns.stage1_epochs)]},
        fit_args=["--trainer.max_epochs", str(ns.epochs), "--trainer.limit_train_batches", str(ns.batches)],
    )
    title = f"Face restoration, {ns.resolution} px rendered faces, {ns.epochs} epochs x {ns.batches} batches"
    text = write_report(results, Path(ns.out) / "report.md", title)
    for r in results.values():
        (r.run_dir / "wall.json").write_text(json.dumps({"wall_s": r.wall_s}) + "\n")
    raw = {f"{m}-seed{s}": {"run_dir": str(r.run_dir), "wall_s": r.wall_s, "metrics": r.metrics}
           for (m, s), r in results.items()}  # fmt: skip
    (Path(ns.out) / "results.json").write_text(json.dumps(raw, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
