"""Recipe: the low-light ablation on the generated scenes, mean and spread over seeds.

    uv run python pipelines/lowlight.py                               # 4 variants x seeds 0 1 2, quick sizes
    uv run python pipelines/lowlight.py --epochs 12 --train 800 --image-size 128
    uv run python pipelines/lowlight.py --variants detector featenhancer --seeds 0

Variants (``polyhead.lowlight.pipeline.VARIANTS``): the detector alone on the dark images, behind the
Zero-DCE-style enhancer, behind FeatEnHancer, and the detector alone on the normal-light copies (the
ceiling). Same data, budget and detector for all; ``report.md`` and ``results.json`` go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyhead.lowlight.pipeline import QUICK_ARGS, VARIANTS, collect_results, run_variants, write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train", type=int, default=320, help="generated training images")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--detector", default="fcos", choices=["fcos", "retinanet", "faster_rcnn"])
    ap.add_argument("--out", default="runs/pipelines/lowlight")
    ap.add_argument(
        "--report-only", action="store_true", help="tabulate the finished runs under --out, train nothing"
    )
    ns = ap.parse_args()
    if ns.report_only:
        print(
            write_report(
                collect_results(Path(ns.out), tuple(ns.variants)),
                Path(ns.out) / "report.md",
                "Low-light ablation",
            )
        )
        return
    args = [*QUICK_ARGS, "--data.generated_train", str(ns.train), "--data.image_size", str(ns.image_size),
            "--model.detector", ns.detector]  # fmt: skip
    results = run_variants(Path(ns.out), variants=tuple(ns.variants), seeds=tuple(ns.seeds), common_args=args,
                           fit_args=["--trainer.max_epochs", str(ns.epochs)])  # fmt: skip
    out = Path(ns.out)
    (out / "results.json").write_text(json.dumps({"args": vars(ns), "results": results}, indent=1) + "\n")
    title = (
        f"Low-light ablation: {ns.detector}, {ns.image_size} px, {ns.train} train images, {ns.epochs} epochs"
    )
    print(write_report(results, out / "report.md", title))


if __name__ == "__main__":
    main()
