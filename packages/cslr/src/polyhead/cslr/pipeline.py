"""The CSLR pipeline: generate (or read) -> fit -> test on both splits -> report.

Each model is trained with the same budget on each task's split through the ``polyhead-cslr`` CLI, and
tested on that split's dev and test sets (``metrics.json``). ``run_quick`` is what ``polyhead demo`` runs:
the paper's model for each task (Signer-Invariant Conformer on the signer-independent split, Multi-Scale
Fusion Transformer on the unseen-sentences split) against the starter-kit baseline, at reduced width on a
small generated corpus (12 glosses, 60 sentences x 4 renditions, batch 8, 12 epochs; the README's table
uses 20 glosses, 300 sentences, batch 16 and 40 epochs), in about two minutes on an idle 2-core CPU. ``pipelines/cslr.py`` runs the same steps with the
repository's configs.
"""

from __future__ import annotations

from pathlib import Path

from polyhead.train.domains import AttentionSite, DemoRow, Domain, measured_results
from polyhead.train.experiment import fit_test

MODELS = ("baseline", "conformer", "msft")
TASKS = ("signer_independent", "unseen_sentences")
TASK_MODEL = {"signer_independent": "conformer", "unseen_sentences": "msft"}  # the challenge winners
NAMES = {
    "baseline": "Transformer+CTC (starter kit)",
    "conformer": "Signer-Invariant Conformer",
    "msft": "Multi-Scale Fusion Transformer",
}

# Quick mode: 12 glosses, 9 signers, 60 sentences x 4 renditions, batch 8, reduced width, 12 epochs; the same
# budget for every model. The full task (README table): 20 glosses, 300 sentences x 4, batch 16, 40 epochs.
QUICK_DATA = ["--data.num_glosses", "12", "--data.num_sentences", "60", "--data.samples_per_sentence", "4",
              "--data.batch_size", "8"]  # fmt: skip
QUICK_MODEL = ["--model.d_model", "128", "--model.layers", "2", "--model.heads", "4", "--model.lr", "2e-3"]
QUICK_EPOCHS = 12


def run_models(
    out_dir: Path,
    *,
    runs: list[tuple[str, str]],
    model_args: dict[str, list[str]] | None = None,
    extra_args: list[str] | None = None,
    data_args: list[str] | None = None,
) -> dict[tuple[str, str], dict]:
    """Fit and test each ``(task, model)`` through the CLI; returns ``{(task, model): metrics.json + wall_s}``.

    ``model_args`` gives per-model arguments (e.g. ``--config configs/cslr/conformer.yaml``); ``extra_args``
    go to ``fit`` only (``test`` restores the model's hyperparameters and the data settings from the
    checkpoint), ``data_args`` to both (they say which data to read).
    """
    from polyhead.cslr.cli import main

    out_dir = Path(out_dir)
    results: dict[tuple[str, str], dict] = {}
    for task, model in runs:
        common = [
            *(model_args or {}).get(model, []),
            "--model.model", model, "--data.task", task,
            "--data.cache_dir", str(out_dir / "cache"),
            *(data_args or []),
        ]  # fmt: skip
        res = fit_test(main, domain="cslr", root=out_dir, experiment=f"{task}-{model}", common_args=common,
                       fit_args=extra_args or [])  # fmt: skip
        results[(task, model)] = {**res.payload, "wall_s": res.wall_s}
    return results


def write_report(results: dict[tuple[str, str], dict], path: Path, title: str) -> str:
    """A markdown table (one row per model, dev/test WER per task) plus the per-task verdict; returns it."""
    tasks = [t for t in TASKS if any(k[0] == t for k in results)]
    head = "| model | " + " | ".join(f"{t} dev WER | {t} test WER | test exact" for t in tasks) + " |"
    lines = [f"# {title}", "", head, "|---|" + "---|---|---|" * len(tasks)]
    for model in MODELS:
        if not any(k[1] == model for k in results):
            continue
        cells = []
        for t in tasks:
            r = results.get((t, model))
            m = r["metrics"] if r else None
            cells.append(
                f"{m['dev/wer']:.3f} | {m['test/wer']:.3f} | {m['test/exact']:.3f}" if m else "- | - | -"
            )
        lines.append(f"| {NAMES[model]} | " + " | ".join(cells) + " |")
    lines.append("")
    for t in tasks:
        scored = {k[1]: v["metrics"]["test/wer"] for k, v in results.items() if k[0] == t}
        best = min(scored, key=scored.__getitem__)
        own = TASK_MODEL[t]
        verdict = "holds" if best == own else f"does not hold here (best: {NAMES[best]})"
        if own in scored:
            lines.append(
                f"- {t}: the paper's model for this task is the {NAMES[own]}; best test WER: {verdict}."
            )
    walls = ", ".join(f"{t}/{m} {v['wall_s']:.0f}s" for (t, m), v in results.items())
    lines += ["", f"Wall time (fit + test): {walls}."]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def run_quick(out_dir: Path) -> list[DemoRow]:
    runs = [(t, m) for t in TASKS for m in (TASK_MODEL[t], "baseline")]
    results = run_models(
        out_dir,
        runs=runs,
        # No W&B files and no attention-map figures in the demo: they cost a fifth of its budget.
        data_args=[*QUICK_DATA, "--run.wandb", "disabled", "--run.attention_maps", "false"],
        extra_args=[*QUICK_MODEL, "--trainer.max_epochs", str(QUICK_EPOCHS)],
    )
    first = Path(results[runs[0]]["run_dir"])
    write_report(results, first / "report.md", "CSLR quick run (generated signing, 12 glosses)")
    rows = []
    full = measured_results("polyhead.cslr")  # the README table's test WER (300 sentences x 4, 40 epochs)
    for t in TASKS:
        own, base = results[(t, TASK_MODEL[t])], results[(t, "baseline")]
        wer, base_wer = own["metrics"]["test/wer"], base["metrics"]["test/wer"]
        note = (
            ""
            if wer < base_wer
            else f"the {NAMES[TASK_MODEL[t]]} does not beat the baseline in this quick run"
        )
        rows.append(
            DemoRow(
                "cslr",
                NAMES[TASK_MODEL[t]],
                f"generated {t.replace('_', '-')} (quick: 12 glosses, 60 sentences, 12 epochs)",
                "test WER",
                wer,
                "Transformer+CTC",
                base_wer,
                own["wall_s"] + base["wall_s"],
                higher_is_better=False,
                full_value=full[f"{t}/{TASK_MODEL[t]}"].value,
                full_source=full[f"{t}/{TASK_MODEL[t]}"].source,
                note=note,
            )
        )
    return rows


_CONFORMER = [*QUICK_DATA, *QUICK_MODEL, "--model.model", "conformer"]
MATRIX_ARGS = {
    "tiny": [*_CONFORMER, "--trainer.max_steps", "5", "--trainer.limit_val_batches", "1"],
    "quick": [*_CONFORMER, "--trainer.max_epochs", str(QUICK_EPOCHS)],
    "full": ["--config", "configs/cslr/conformer.yaml"],
}


def _cli(args: list[str]) -> object:
    from polyhead.cslr.cli import main

    main(args)
    return None


DOMAIN = Domain(
    name="cslr",
    title="Continuous sign-language recognition from pose keypoints (Isharah format)",
    quick=run_quick,
    budget_s=150.0,
    sites=(AttentionSite("Conformer block self-attention", kind="self", causal=False, layout="1d"),),
    cli=_cli,
    metric="test/wer",
    higher_is_better=False,
    matrix_args=MATRIX_ARGS,
)
