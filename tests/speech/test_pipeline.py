"""The quick pipeline's steps (fit -> test with each decoding -> explain -> report -> demo row) on the
committed sample with a tiny budget, and the domain's declaration for the demo and the variant matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhead.speech.pipeline import DOMAIN, QUICK_DATA, QUICK_MODEL, run, write_report

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"


def test_domain_declares_sites_and_budgets() -> None:
    assert DOMAIN.metric == "test/wer" and not DOMAIN.higher_is_better and DOMAIN.budget_s <= 150
    keys = {s.config_key for s in DOMAIN.sites}
    assert keys == {"model.attention", "model.decoder_attention"}
    assert [s.kind for s in DOMAIN.sites].count("cross") == 1 and any(s.causal for s in DOMAIN.sites)
    assert set(DOMAIN.matrix_args) == {"tiny", "quick", "full"}
    assert "digits" in QUICK_DATA and "--model.decoder_layers" in QUICK_MODEL


@pytest.mark.slow
def test_pipeline_steps_on_the_sample(tmp_path: Path) -> None:
    manifests = []
    for split in ("train", "dev", "test"):
        recs = [json.loads(x) for x in (SAMPLE / f"{split}.jsonl").read_text().splitlines()]
        for r in recs:
            r["audio_filepath"] = str(SAMPLE / r["audio_filepath"])
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        manifests.append(f"--data.{split}_manifest={tmp_path / f'{split}.jsonl'}")
    tiny = ["--model.d_model", "48", "--model.encoder_layers", "1", "--model.decoder_layers", "1",
            "--model.beam_size", "2", "--trainer.max_steps", "3"]  # fmt: skip
    results = run(tmp_path / "out", fit_args=tiny, data_args=manifests, explain_utterances=1, masks=8)
    metrics = {"test/wer", "test/cer", "test/utterances_total"}
    assert all(set(results[d]) >= metrics for d in ("greedy", "attention", "joint"))
    run_dir = Path(results["run_dir"])
    assert all((run_dir / f"metrics.{d}.json").is_file() for d in ("greedy", "attention", "joint"))
    assert all(results[d]["test/utterances_total"] == 5 for d in ("greedy", "attention", "joint"))
    text = write_report(results, run_dir / "report.md", "tiny")
    assert "| greedy CTC |" in text and "| joint CTC/attention (beam) |" in text and "5 scored of 5" in text
