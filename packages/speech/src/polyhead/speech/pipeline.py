"""The speech pipeline: synthesise (or read) -> fit -> test (CTC, attention, joint) -> explain -> report.

``run_quick`` is what ``polyhead demo`` runs on CPU within its 150 s budget: the *digits* task (connected digit
strings, 600 utterances spoken by 39 synthetic voices; the test split's 3 voices never occur in training),
a small Conformer/Transformer (d_model 96, 3 encoder + 2 decoder layers, 1.4 M parameters) trained for a
fixed number of epochs, then test WER on the unseen voices with three decoders of the same trained
network: greedy CTC (the baseline), the attention decoder's own beam search (so a degenerate decoder
shows), and joint CTC/attention beam search (the paper's recipe), then the explanation report on two test
utterances, explaining the joint hypothesis. The quick task differs from the full one (open-vocabulary
sentences, ``configs/speech/conformer.yaml``, a GPU-sized budget) in vocabulary and budget only: the
model, losses and decoders are the same. ``pipelines/speech.py`` runs either with the repository's configs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from polyhead.speech.cli import main as cli_main
from polyhead.train.domains import AttentionSite, DemoRow, Domain, measured_results

QUICK_DATA = ["--data.task", "digits", "--data.num_utterances", "600", "--data.batch_size", "8",
              "--data.max_batch_seconds", "40"]  # fmt: skip
QUICK_MODEL = ["--model.d_model", "96", "--model.encoder_layers", "3", "--model.decoder_layers", "2",
               "--model.warmup_steps", "100", "--model.lr", "2e-3", "--model.ctc_weight", "0.5",
               "--model.beam_size", "4"]  # fmt: skip
QUICK_EPOCHS = 8
DECODINGS = ("greedy", "attention", "joint")


def run(
    out_dir: Path,
    *,
    fit_args: list[str],
    data_args: list[str],
    decodings: tuple[str, ...] = DECODINGS,
    explain_utterances: int = 2,
    masks: int = 32,
    experiment: str = "conformer",
) -> dict:
    """Fit, test with each decoding, explain the joint hypotheses; returns metrics per decoding and paths."""
    from polyhead.speech.inference import explain_main
    from polyhead.train.experiment import fit_test

    out_dir = Path(out_dir)
    common = ["--data.cache_dir", str(out_dir / "cache"), "--run.wandb", "disabled", *data_args]
    t0 = time.monotonic()
    first = fit_test(cli_main, domain="speech", root=out_dir, experiment=experiment, common_args=common,
                     fit_args=fit_args, test_args=["--model.decoding", decodings[0]])  # fmt: skip
    run_dir = first.run_dir
    results: dict = {"run_dir": str(run_dir), decodings[0]: first.metrics}
    run_args = ["--run.root", str(out_dir), "--run.experiment", experiment, "--run.version", run_dir.name]
    for decoding in decodings:
        if decoding != decodings[0]:
            cli_main(["test", *common, *run_args, "--model.decoding", decoding])
            results[decoding] = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        (run_dir / f"metrics.{decoding}.json").write_text(json.dumps(results[decoding], indent=1))
    results["fit_test_s"] = first.wall_s
    given = [a.split("=", 1)[1] for a in data_args if a.startswith("--data.test_manifest=")]
    test_manifest = Path(given[-1]) if given else next((out_dir / "cache").glob("synth_*/test.jsonl"), None)
    if test_manifest is not None and explain_utterances:
        code = explain_main([str(run_dir), "--manifest", str(test_manifest), "--utterances",
                             str(explain_utterances), "--masks", str(masks), "--decoding", "joint",
                             "--out", str(run_dir / "explain")])  # fmt: skip
        if code == 0:
            results["explain"] = json.loads((run_dir / "explain" / "explain.json").read_text())["summary"]
    results["wall_s"] = time.monotonic() - t0
    return results


def write_report(results: dict, path: Path, title: str) -> str:
    names = {"greedy": "greedy CTC", "ctc_beam": "CTC beam", "attention": "attention decoder (beam)",
             "joint": "joint CTC/attention (beam)"}  # fmt: skip
    lines = [f"# {title}", "", "| decoding | test WER (unseen voices) | test CER |", "|---|---|---|"]
    for d, label in names.items():
        if d in results:
            m = results[d]
            lines.append(f"| {label} | {m['test/wer']:.3f} | {m['test/cer']:.3f} |")
    first = next(results[d] for d in names if d in results)
    lines += ["", f"Test utterances: {int(first.get('test/utterances_scored', 0))} scored of "
              f"{int(first.get('test/utterances_total', 0))}, {int(first.get('test/skipped_total', 0))} skipped.", ""]  # fmt: skip
    ex = results.get("explain")
    if ex:
        a, e = ex["input"]["aggregated"], ex["encoder"]["aggregated"]
        lines += [f"Cross-attention vs saliency for the joint hypotheses (Pearson, aggregated): input {a['pearson']:.3f}, "
                  f"encoder output {e['pearson']:.3f}; per layer (input): "
                  + ", ".join(f"{s['pearson']:.3f}" for s in ex["input"]["per_layer"]) + ".",
                  "Deletion AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in ex["deletion_auc"].items()) + ".",
                  "See explain/explain.md and explain/media/explain_*.png."]  # fmt: skip
    lines.append(f"\nFit + first test {results['fit_test_s']:.0f}s, total {results['wall_s']:.0f}s.")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def run_quick(out_dir: Path) -> list[DemoRow]:
    results = run(
        out_dir, fit_args=[*QUICK_MODEL, "--trainer.max_epochs", str(QUICK_EPOCHS)], data_args=QUICK_DATA
    )
    write_report(
        results, Path(results["run_dir"]) / "report.md", "Speech quick run (synthesised digit strings)"
    )
    wer = {d: results[d]["test/wer"] for d in DECODINGS}
    full = measured_results("polyhead.speech")["joint"]  # the full default config on the sentence task
    return [
        DemoRow(
            domain="speech",
            model="Conformer + Transformer, joint CTC/attention",
            dataset="synthesised digit strings, unseen voices",
            metric="test WER",
            value=wer["joint"],
            baseline="greedy CTC (same network)",
            baseline_value=wer["greedy"],
            wall_s=results["wall_s"],
            higher_is_better=False,
            full_value=full.value,
            full_source=full.source,
            note=(
                f"attention decoder alone: WER {wer['attention']:.3f}. Quick task = 10-word digit strings "
                "(the full task: open-vocabulary sentences); joint decoding helps only when the attention "
                "decoder has learnt"
            ),
        )
    ]


DOMAIN = Domain(
    name="speech",
    title="Speech-to-text with cross-attention explanations (synthesised corpus)",
    quick=run_quick,
    budget_s=150.0,
    sites=(
        AttentionSite("encoder self-attention", kind="self", causal=False, config_key="model.attention"),
        AttentionSite(
            "decoder self-attention", kind="self", causal=True, config_key="model.decoder_attention"
        ),
        AttentionSite(
            "decoder cross-attention", kind="cross", causal=False, config_key="model.decoder_attention"
        ),
    ),
    cli=cli_main,
    metric="test/wer",
    higher_is_better=False,
    matrix_args={
        "tiny": [*QUICK_DATA, *QUICK_MODEL, "--trainer.max_steps", "5", "--trainer.limit_val_batches", "1"],
        "quick": [*QUICK_DATA, *QUICK_MODEL, "--trainer.max_epochs", str(QUICK_EPOCHS)],
        "full": ["--config", "configs/speech/conformer.yaml"],
    },
)
