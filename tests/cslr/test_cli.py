"""polyhead-cslr through the CLI on a tiny generated corpus: fit, test, metrics.json, task switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhead.cslr.cli import main

TINY = [
    "--data.num_sentences", "12", "--data.samples_per_sentence", "2", "--data.num_glosses", "10",
    "--model.model", "baseline", "--model.d_model", "32", "--model.layers", "1", "--model.heads", "4",
    "--run.wandb", "disabled",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task", ["signer_independent", "unseen_sentences"])
def test_fit_test_writes_wer(tmp_path: Path, task: str) -> None:
    common = [
        "--run.root",
        str(tmp_path),
        "--data.cache_dir",
        str(tmp_path / "cache"),
        "--data.task",
        task,
        *TINY,
    ]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    main(["test", *common])
    run = tmp_path / "cslr" / "default" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"test/wer", "test/exact"} and metrics["test/wer"] >= 0
    assert (run / "vocab.json").is_file()
    assert list((tmp_path / "cache").glob(f"generated_*/{task}/test.txt"))


def test_real_data_paths_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--run.root", str(tmp_path), "--data.keypoints", str(tmp_path / "nope.pkl")])
    assert "real data needs all of" in capsys.readouterr().err
