"""fit_test (one fit -> test experiment through a domain CLI) and the domain protocol's declarations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from example_task import main

from polyhead.train.domains import AttentionSite, DemoRow, Domain
from polyhead.train.experiment import fit_test


def test_fit_test_pins_one_run_directory(tmp_path: Path) -> None:
    common = ["--run.wandb", "disabled", "--trainer.max_epochs", "1"]
    first = fit_test(main, domain="example", root=tmp_path, experiment="e", common_args=common)
    assert first.run_dir == tmp_path / "example" / "e" / "version_0"
    # A newer, unrelated run in the same experiment must not be picked up by the next experiment's test.
    second = fit_test(main, domain="example", root=tmp_path, experiment="e", common_args=common)
    assert second.run_dir.name == "version_1"
    payload = json.loads((second.run_dir / "metrics.json").read_text())
    assert payload["ckpt_path"].startswith(str(second.run_dir / "checkpoints"))
    assert second.metrics == payload["metrics"]
    assert set(second.metrics) == {"test/loss", "test/acc"}
    assert second.wall_s > 0


def test_fit_test_propagates_config_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        fit_test(main, domain="example", root=tmp_path, experiment="e", common_args=["--model.no_such", "1"])
    assert exc.value.code == 2


def test_domain_protocol_validates_declarations() -> None:
    site = AttentionSite("encoder self-attention", kind="self", causal=False, layout="1d")
    dom = Domain(name="x", title="t", quick=lambda out: [], sites=(site,), matrix_args={"tiny": ["-a"]})
    assert dom.sites[0].config_key == "model.attention"
    with pytest.raises(ValueError, match="kind"):
        AttentionSite("s", kind="both")
    with pytest.raises(ValueError, match="layout"):
        AttentionSite("s", layout="3d")
    with pytest.raises(ValueError, match="unknown budget"):
        Domain(name="x", title="t", quick=lambda out: [], matrix_args={"huge": []})
    row = DemoRow("x", "m", "d", "WER", 0.1, "b", 0.2, 1.0, higher_is_better=False)
    assert row.full_value is None and row.note == ""
