"""Recipe: synthesise (or read manifests) -> fit -> test (greedy, attention, joint decoding) -> explain -> report.

    uv run python pipelines/speech.py                       # quick mode (the `polyhead demo` settings: digits)
    uv run python pipelines/speech.py --full                # configs/speech/conformer.yaml (sentences, ~1 hour on CPU)
    uv run python pipelines/speech.py --full --manifests DIR   # DIR/train.jsonl, dev.jsonl, test.jsonl
    uv run python pipelines/speech.py --config configs/speech/librispeech.yaml   # any recipe config

Writes ``report.md`` (WER/CER per decoding, the cross-attention vs saliency summary) into the run directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyhead.speech.pipeline import QUICK_DATA, QUICK_EPOCHS, QUICK_MODEL, run, write_report

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/pipelines/speech")
    ap.add_argument("--full", action="store_true", help="configs/speech/conformer.yaml")
    ap.add_argument("--config", default=None, help="another recipe config (implies the full settings)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--manifests", default=None)
    ns = ap.parse_args()
    full = ns.full or ns.config is not None
    config = ns.config or str(ROOT / "configs" / "speech" / "conformer.yaml")
    # the config goes to fit and test alike (it also fixes the corpus); quick settings only to fit
    fit = [] if full else [*QUICK_MODEL]
    data = ["--config", config] if full else [*QUICK_DATA]
    if ns.manifests:
        d = Path(ns.manifests)
        data += [f"--data.{s}_manifest={d / f'{s}.jsonl'}" for s in ("train", "dev", "test")]
    epochs = ns.epochs or (None if full else QUICK_EPOCHS)
    if epochs:
        fit += ["--trainer.max_epochs", str(epochs)]
    results = run(Path(ns.out), fit_args=fit, data_args=data)
    print(write_report(results, Path(results["run_dir"]) / "report.md", "Speech: Conformer + Transformer"))


if __name__ == "__main__":
    main()
