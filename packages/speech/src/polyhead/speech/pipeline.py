"""The speech pipeline: synthesise (or read) -> fit -> test -> explain -> report.

``run_quick`` is what ``polyhead demo`` runs on CPU in a few minutes: a 500-utterance synthesised corpus,
a small Conformer/Transformer (d_model 96, 3 + 1 layers), a few epochs, test WER/CER on the unseen voices
with joint CTC/attention decoding and with greedy CTC (the baseline column), then the explanation report
on four test utterances. ``pipelines/speech.py`` runs the same steps with ``configs/speech/*.yaml``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from polyhead.train.domains import DemoRow, Domain

QUICK_DATA = ["--data.num_utterances", "500", "--data.batch_size", "8", "--data.max_batch_seconds", "40"]
QUICK_MODEL = ["--model.d_model", "96", "--model.encoder_layers", "3", "--model.decoder_layers", "1",
               "--model.warmup_steps", "100", "--model.lr", "2e-3", "--model.ctc_weight", "0.5"]  # fmt: skip


def run(
    out_dir: Path,
    *,
    fit_args: list[str],
    data_args: list[str],
    explain_utterances: int = 4,
    masks: int = 64,
) -> dict:
    """Fit, test with greedy and joint decoding, explain; returns the metrics and the report paths."""
    from polyhead.speech.cli import main
    from polyhead.speech.inference import explain_main

    out_dir = Path(out_dir)
    common = [
        "--run.root",
        str(out_dir),
        "--run.experiment",
        "conformer",
        "--data.cache_dir",
        str(out_dir / "cache"),
        *data_args,
    ]
    t0 = time.monotonic()
    main(["fit", *common, *fit_args])
    fit_s = time.monotonic() - t0
    run_dir = sorted((out_dir / "speech" / "conformer").glob("version_*"), key=lambda p: p.stat().st_mtime)[
        -1
    ]
    results = {"fit_s": fit_s, "run_dir": str(run_dir)}
    for decoding in ("greedy", "joint"):
        main(["test", *common, "--model.decoding", decoding])
        results[decoding] = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        (run_dir / f"metrics.{decoding}.json").write_text(json.dumps(results[decoding], indent=1))
    test_manifest = next((out_dir / "cache").glob("synth_*/test.jsonl"), None)
    if test_manifest is not None and explain_utterances:
        explain_main(
            [
                str(run_dir),
                "--manifest",
                str(test_manifest),
                "--utterances",
                str(explain_utterances),
                "--masks",
                str(masks),
            ]
        )
        results["explain"] = json.loads((run_dir / "explain.json").read_text())["summary"]
    results["wall_s"] = time.monotonic() - t0
    return results


def write_report(results: dict, path: Path, title: str) -> str:
    g, j = results["greedy"], results["joint"]
    lines = [f"# {title}", "", "| decoding | test WER (unseen voices) | test CER |", "|---|---|---|",
             f"| greedy CTC | {g['test/wer']:.3f} | {g['test/cer']:.3f} |",
             f"| joint CTC/attention beam | {j['test/wer']:.3f} | {j['test/cer']:.3f} |", ""]  # fmt: skip
    ex = results.get("explain")
    if ex:
        a, e = ex["input"]["aggregated"], ex["encoder"]["aggregated"]
        lines += [f"Cross-attention vs saliency (Pearson, aggregated): input {a['pearson']:.3f}, encoder output "
                  f"{e['pearson']:.3f}; per layer (input): "
                  + ", ".join(f"{s['pearson']:.3f}" for s in ex["input"]["per_layer"]) + ".",
                  "Deletion AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in ex["deletion_auc"].items()) + ".",
                  "See explain.md and media/explain_*.png."]  # fmt: skip
    lines.append(f"\nFit {results['fit_s']:.0f}s, total {results['wall_s']:.0f}s.")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def run_quick(out_dir: Path) -> list[DemoRow]:
    results = run(out_dir, fit_args=[*QUICK_MODEL, "--trainer.max_epochs", "10"], data_args=QUICK_DATA)
    write_report(
        results, Path(results["run_dir"]) / "report.md", "Speech quick run (synthesised, 500 utterances)"
    )
    return [
        DemoRow(
            "speech",
            "Conformer + Transformer (joint CTC/attention)",
            "synthesised speech, unseen voices",
            "test WER",
            results["joint"]["test/wer"],
            "greedy CTC",
            results["greedy"]["test/wer"],
            results["wall_s"],
        )
    ]


DOMAIN = Domain(
    name="speech",
    title="Speech-to-text with cross-attention explanations (synthesised corpus)",
    quick=run_quick,
)
