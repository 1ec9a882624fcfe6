"""The CSLR pipeline: fit + test per (task, model) through the CLI, and the report's table and verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhead.cslr.pipeline import run_models, write_report
from polyhead.train.domains import discover_domains


def _result(dev: float, test: float) -> dict:
    return {"metrics": {"dev/wer": dev, "test/wer": test, "test/exact": 1 - test}, "wall_s": 1.0}


def test_report_table_and_verdicts(tmp_path: Path) -> None:
    results = {
        ("signer_independent", "baseline"): _result(0.30, 0.35),
        ("signer_independent", "conformer"): _result(0.10, 0.12),
        ("unseen_sentences", "baseline"): _result(0.40, 0.41),
        ("unseen_sentences", "msft"): _result(0.50, 0.55),
    }
    text = write_report(results, tmp_path / "report.md", "t")
    assert (tmp_path / "report.md").read_text() == text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert "0.100 | 0.120 | 0.880 | - | - | -" in rows["Signer-Invariant Conformer"]
    assert "- | - | - | 0.500 | 0.550 | 0.450" in rows["Multi-Scale Fusion Transformer"]
    assert (
        "signer_independent: the paper's model for this task is the Signer-Invariant Conformer; best test WER: holds"
        in text
    )
    assert (
        "unseen_sentences: the paper's model for this task is the Multi-Scale Fusion Transformer; best test WER: does not hold here (best: Transformer+CTC (starter kit))"
        in text
    )


def test_domain_is_registered() -> None:
    (entry,) = [d for d in discover_domains() if d.name == "cslr"]
    assert entry.error is None and entry.domain is not None and entry.domain.name == "cslr"


@pytest.mark.slow
def test_run_models_end_to_end(tmp_path: Path) -> None:
    tiny = ["--data.num_sentences", "12", "--data.samples_per_sentence", "2", "--data.num_glosses", "10",
            "--run.wandb", "disabled"]  # fmt: skip
    fit = ["--model.d_model", "32", "--model.layers", "1", "--model.heads", "4", "--trainer.max_epochs", "1"]
    results = run_models(
        tmp_path,
        runs=[("unseen_sentences", "msft"), ("unseen_sentences", "baseline")],
        extra_args=fit,
        data_args=tiny,
    )
    assert set(results) == {("unseen_sentences", "msft"), ("unseen_sentences", "baseline")}
    for (task, model), r in results.items():
        assert Path(r["run_dir"]).parent.name == f"{task}-{model}"
        assert {"dev/wer", "test/wer", "test/exact"} <= set(r["metrics"]) and r["wall_s"] > 0
    assert "Multi-Scale Fusion Transformer" in write_report(results, tmp_path / "r.md", "tiny")
