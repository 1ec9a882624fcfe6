"""The low-light pipeline: generate -> darken -> fit -> test -> report, and the ablation over seeds.

Variants, all trained with the same budget and the detection loss only:

- ``detector``: the detector alone on the dark images;
- ``zero_dce``: the detector behind the Zero-DCE-style enhancer;
- ``featenhancer``: the detector behind FeatEnHancer (the paper's model);
- ``normal_light``: the detector alone on the normal-light copies of the same scenes (the ceiling).

``run_quick`` is what ``polyhead demo`` runs (FeatEnHancer beside the detector alone, small images and a
tiny detector, a few minutes on CPU); ``pipelines/lowlight.py`` runs the full ablation with the repository's
configs. Every run goes through the ``polyhead-lowlight`` CLI (``fit`` then ``test``).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from polyhead.train.domains import AttentionSite, DemoRow, Domain
from polyhead.train.experiment import fit_test

VARIANTS: dict[str, list[str]] = {
    "detector": ["--model.enhancer", "none"],
    "zero_dce": ["--model.enhancer", "zero_dce"],
    "featenhancer": ["--model.enhancer", "featenhancer"],
    "normal_light": ["--model.enhancer", "none", "--data.light", "normal"],
}
LABELS = {
    "detector": "detector alone (dark)",
    "zero_dce": "+ Zero-DCE-style enhancer (dark)",
    "featenhancer": "+ FeatEnHancer (dark)",
    "normal_light": "detector alone (normal light, ceiling)",
}
# Small images, a tiny detector and narrow enhancers: the budget of a 2-core CPU.
QUICK_ARGS = [
    "--data.image_size", "96", "--data.generated_train", "320", "--data.generated_val", "48",
    "--data.generated_test", "96", "--data.batch_size", "16", "--model.fpn_channels", "32",
    "--model.enhancer_channels", "8", "--model.fusion_dim", "32", "--run.wandb", "disabled",
    "--run.progress", "none", "--run.attention_maps", "false",
]  # fmt: skip
QUICK_FIT = ["--trainer.max_epochs", "5", "--trainer.enable_model_summary", "false"]
METRICS = ("test/map", "test/ap50", "test/ap75", "test/ap_small", "test/ap_medium", "test/ap_large")


def run_variants(
    out_dir: Path,
    *,
    variants: tuple[str, ...] = tuple(VARIANTS),
    seeds: tuple[int, ...] = (0,),
    common_args: list[str] | None = None,
    fit_args: list[str] | None = None,
) -> dict[str, list[dict]]:
    """Fit and test each variant for each seed; ``{variant: [{seed, run_dir, wall_s, metrics}, ...]}``."""
    from polyhead.lowlight.cli import main

    out_dir = Path(out_dir)
    results: dict[str, list[dict]] = {}
    for variant in variants:
        for seed in seeds:
            res = fit_test(
                main,
                domain="lowlight",
                root=out_dir,
                experiment=f"{variant}-seed{seed}",
                common_args=[
                    *VARIANTS[variant],
                    "--data.cache_dir",
                    str(out_dir / "cache"),
                    *(common_args or []),
                ],
                fit_args=["--seed_everything", str(seed), *(fit_args or [])],
            )
            results.setdefault(variant, []).append(
                {"seed": seed, "run_dir": str(res.run_dir), "wall_s": res.wall_s, "metrics": res.metrics}
            )
    return results


def collect_results(out_dir: Path, variants: tuple[str, ...] = tuple(VARIANTS)) -> dict[str, list[dict]]:
    """The finished runs under ``out_dir`` (``lowlight/<variant>-seed<k>/<version>/metrics.json``), e.g. of
    several ``run_variants`` processes that shared one root; the latest finished version per seed."""
    import json

    results: dict[str, list[dict]] = {}
    for variant in variants:
        runs = {}
        for path in sorted(
            Path(out_dir, "lowlight").glob(f"{variant}-seed*/*/metrics.json"), key=lambda p: p.stat().st_mtime
        ):
            seed = int(path.parent.parent.name.rsplit("-seed", 1)[1])
            runs[seed] = {"seed": seed, "run_dir": str(path.parent), "wall_s": float("nan"),
                          "metrics": json.loads(path.read_text())["metrics"]}  # fmt: skip
        if runs:
            results[variant] = [runs[k] for k in sorted(runs)]
    return results


def summarize(runs: list[dict], key: str) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one seed) of ``key`` over seeds."""
    vals = [r["metrics"][key] for r in runs]
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def write_report(results: dict[str, list[dict]], path: Path, title: str) -> str:
    """A markdown table: mean +- std over seeds of the COCO metrics per variant."""
    lines = [f"# {title}", "", "| variant | seeds | mAP | AP50 | AP75 | AP small | AP medium | wall s / run |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for variant, runs in results.items():
        cells = []
        for key in METRICS[:5]:
            mean, std = summarize(runs, key)
            cells.append(f"{mean:.3f} +- {std:.3f}" if len(runs) > 1 else f"{mean:.3f}")
        wall = statistics.fmean(r["wall_s"] for r in runs)
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(
            f"| {LABELS.get(variant, variant)} | {seeds} | " + " | ".join(cells) + f" | {wall:.0f} |"
        )
    text = "\n".join(lines) + "\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def run_quick(out_dir: Path) -> list[DemoRow]:
    out_dir = Path(out_dir)
    results = run_variants(
        out_dir, variants=("detector", "featenhancer"), common_args=QUICK_ARGS, fit_args=QUICK_FIT
    )
    write_report(
        results,
        out_dir / "report.md",
        "Low-light quick run: FCOS alone vs + FeatEnHancer (generated dark scenes, 96 px)",
    )
    fe, base = results["featenhancer"][0], results["detector"][0]
    holds = fe["metrics"]["test/map"] > base["metrics"]["test/map"]
    top = max(fe["metrics"]["test/map"], base["metrics"]["test/map"])
    note = (
        f"100 CPU steps from scratch: every mAP is at most {top:.3f}, an early-training comparison "
        "(README: ablation)"
    )
    if not holds:
        note += "; FeatEnHancer did not beat the detector alone in this run"
    return [
        DemoRow(
            "lowlight",
            "FCOS + FeatEnHancer",
            "generated dark scenes (96 px)",
            "test mAP",
            fe["metrics"]["test/map"],
            "FCOS alone",
            base["metrics"]["test/map"],
            fe["wall_s"] + base["wall_s"],
            note=note,
        )
    ]


def _cli(args: list[str]) -> object:
    from polyhead.lowlight.cli import main

    main(args)
    return None


_TINY = ["--data.generated_train", "32", "--data.generated_val", "16", "--data.generated_test", "16",
         "--trainer.max_epochs", "1"]  # fmt: skip

DOMAIN = Domain(
    name="lowlight",
    title="Low-light object detection with FeatEnHancer (torchvision FCOS / RetinaNet / Faster R-CNN)",
    quick=run_quick,
    budget_s=150.0,
    sites=(
        AttentionSite("FeatEnHancer scale-aware fusion (full-scale queries, 3-scale keys)", kind="cross"),
    ),
    cli=_cli,
    metric="test/map",
    higher_is_better=True,
    matrix_args={
        "tiny": [*QUICK_ARGS, *_TINY],
        "quick": [*QUICK_ARGS, *QUICK_FIT],
        "full": ["--trainer.max_epochs", "30"],
    },
)
