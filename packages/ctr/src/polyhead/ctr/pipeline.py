"""The CTR pipeline: generate (or read) -> preprocess -> fit -> test -> report, for AutoInt and baselines.

``run_quick`` is what ``polyhead demo`` runs (200k generated rows, 3 epochs at most, on CPU in a few
minutes); ``pipelines/ctr.py`` runs the same steps with the repository's configs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from polyhead.train.domains import DemoRow, Domain

MODELS = ("autoint", "autoint+", "lr", "fm", "dnn")


def run_models(
    out_dir: Path,
    *,
    models: tuple[str, ...] = MODELS,
    extra_args: list[str] | None = None,
    data_args: list[str] | None = None,
) -> dict[str, dict]:
    """Fit and test each model through the ``polyhead-ctr`` CLI; returns ``{model: metrics.json}``."""
    from polyhead.ctr.cli import main

    out_dir = Path(out_dir)
    results: dict[str, dict] = {}
    for model in models:
        common = [
            "--run.root",
            str(out_dir),
            "--run.experiment",
            model,
            "--data.cache_dir",
            str(out_dir / "cache"),
            *(data_args or []),
        ]
        t0 = time.monotonic()
        main(["fit", "--model.model", model, *common, *(extra_args or [])])
        main(["test", "--model.model", model, *common])
        run = sorted((out_dir / "ctr" / model).glob("version_*"), key=lambda p: p.stat().st_mtime)[-1]
        metrics = json.loads((run / "metrics.json").read_text())
        metrics["wall_s"] = time.monotonic() - t0
        explain = run / "explain.json"
        if explain.is_file():
            metrics["explain"] = json.loads(explain.read_text())
        results[model] = metrics
    return results


def write_report(results: dict[str, dict], path: Path, title: str) -> None:
    lines = [f"# {title}", "", "| model | test AUC | test logloss | wall time |", "|---|---|---|---|"]
    for model, r in results.items():
        m = r["metrics"]
        lines.append(f"| {model} | {m['test/auc']:.4f} | {m['test/logloss']:.4f} | {r['wall_s']:.0f}s |")
    ex = results.get("autoint", {}).get("explain")
    planted = {m: r["explain"] for m, r in results.items() if "effect_recovery" in r.get("explain", {})}
    if planted:  # generated data: every model's test run reports the same Bayes AUC and its own gains
        bayes = next(iter(planted.values()))["bayes_auc"]
        lines += ["", f"Bayes-optimal test AUC (the generator's true logit on the test rows): {bayes:.4f}"]
        recovered = {m: e["effect_recovery"] for m, e in planted.items()}
        effects = list(next(iter(recovered.values())))
        lines += [
            "",
            "What each model learnt of the planted effects: the gain of each true effect in a least-squares fit",
            "of the model's test logit (1 = reproduced at full strength, 0 = not learnt; r2 = share of the",
            "logit's variance the true effects explain):",
            "",
            "| model | " + " | ".join(effects) + " |",
            "|---|" + "---|" * len(effects),
        ]
        lines += [
            f"| {m} | " + " | ".join(f"{g[k]:.3f}" for k in effects) + " |" for m, g in recovered.items()
        ]
    if ex and "planted_pair_ranks" in ex:
        lines += [
            "",
            f"Planted interacting pairs, rank among {ex['num_pairs']} field pairs by AutoInt attention:",
            "",
        ]
        lines += [f"- {k}: {v}" for k, v in ex["planted_pair_ranks"].items()]
        run_dir = Path(results["autoint"].get("run_dir", path.parent))
        figs = sorted((run_dir / "media").glob("explain_field_attention*.png"))
        if figs:  # the report is written into the AutoInt run directory, next to media/
            lines += ["", f"![field attention](media/{figs[-1].name})"]
    path.write_text("\n".join(lines) + "\n")


def run_quick(out_dir: Path) -> list[DemoRow]:
    results = run_models(out_dir, data_args=["--data.generate_rows", "200000"])
    auto_run = Path(results["autoint"]["run_dir"])
    write_report(
        results,
        auto_run / "report.md",
        "CTR quick run: AutoInt / AutoInt+ vs LR / FM / DNN (200k generated rows)",
    )
    baselines = [m for m in results if m not in ("autoint", "autoint+")]
    best_base = max(baselines, key=lambda m: results[m]["metrics"]["test/auc"])
    return [
        DemoRow(
            "ctr",
            "AutoInt",
            "generated Criteo 200k",
            "test AUC",
            results["autoint"]["metrics"]["test/auc"],
            best_base.upper(),
            results[best_base]["metrics"]["test/auc"],
            results["autoint"]["wall_s"],
        )
    ]


DOMAIN = Domain(name="ctr", title="CTR prediction with AutoInt (Criteo-format click logs)", quick=run_quick)
