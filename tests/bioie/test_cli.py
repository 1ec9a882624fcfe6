"""``polyhead-bioie`` end to end on a tiny budget: fit -> test (metrics.json) -> predict on PubTator; errors."""

from __future__ import annotations

import json

import pytest

from polyhead.bioie.cli import main
from polyhead.bioie.datamodule import RelationDataModule
from polyhead.bioie.pipeline import DOMAIN
from polyhead.train.cli import PolyheadConfigError
from polyhead.train.experiment import fit_test

TINY = ["--data.train_docs", "12", "--data.dev_docs", "4", "--data.test_docs", "6", "--run.wandb", "disabled",
        "--run.progress", "none", "--model.hidden", "24", "--model.num_threads", "1"]  # fmt: skip


@pytest.mark.slow
def test_fit_test_predict_end_to_end(tmp_path):
    common = [*TINY, "--data.cache_dir", str(tmp_path / "cache")]
    res = fit_test(main, domain="bioie", root=tmp_path, experiment="tiny", common_args=common,
                   fit_args=["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"])  # fmt: skip
    m = res.metrics
    for key in ("test/micro_f1", "test/precision", "test/recall", "test/induces/f1", "test/doc_f1"):
        assert 0.0 <= m[key] <= 1.0, key
    assert (res.run_dir / "encoder.json").is_file() and (res.run_dir / "confusion.json").is_file()
    explain = json.loads((res.run_dir / "explain.json").read_text())
    assert len(explain["tree_mass_per_head"]) == 3
    assert list((res.run_dir / "media").glob("explain_attention_adjacency*.png"))

    assert main(["generate", str(tmp_path / "gen"), "--docs", "3"]) is None
    main(["predict", "--run.root", str(tmp_path), "--run.experiment", "tiny", "--run.version", res.run_dir.name,
          "--run.wandb", "disabled", "--run.progress", "none",
          "--data.predict_path", str(tmp_path / "gen" / "test.pubtator")])  # fmt: skip
    out = (res.run_dir / "predictions.pubtator").read_text()
    assert out.count("|t|") == 3
    pred = json.loads((res.run_dir / "predictions.json").read_text())
    assert len(pred["documents"]) == 3 and pred["pairs"]
    assert all(0.0 <= p["score"] <= 1.0 and p["label"] in p["probabilities"] for p in pred["pairs"])
    rel_lines = [ln for ln in out.splitlines() if ln.count("\t") == 3 and not ln.split("\t")[1].isdigit()]
    expected = sum(len(d["relations"]) for d in pred["documents"])
    assert len(rel_lines) == expected


def test_config_errors_are_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--data.format", "tacred", "--data.train_path", str(tmp_path / "missing.json"),
              "--data.dev_path", "x", "--data.test_path", "y", "--run.root", str(tmp_path)])  # fmt: skip
    assert err.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines[-1].startswith("polyhead-bioie: error:") and "missing.json" in lines[-1]


def test_raw_text_without_parser_is_refused(tmp_path):
    main(["generate", str(tmp_path / "gen"), "--docs", "2"])
    (tmp_path / "gen" / "test.pubtator.parses.json").unlink()
    dm = RelationDataModule(predict_path=str(tmp_path / "gen" / "test.pubtator"))
    with pytest.raises(PolyheadConfigError, match=r"--data.spacy_model .*parses.json"):
        dm.setup("predict")


def test_domain_declares_matrix_settings():
    assert DOMAIN.name == "bioie" and DOMAIN.metric == "test/micro_f1"
    assert DOMAIN.sites[0].config_key == "model.attention"
    assert set(DOMAIN.matrix_args) == {"tiny", "quick", "full"}


def test_quick_pipeline_rows_and_report(tmp_path, monkeypatch):
    from polyhead.bioie import pipeline
    from polyhead.train.experiment import RunResult

    def fake_run_models(out_dir, **kw):
        f1 = {"aggcn": [0.6, 0.7], "tree_gcn": [0.65, 0.66], "transformer": [0.4, 0.5]}
        return {m: [RunResult(tmp_path, {"test/micro_f1": v, "test/precision": v, "test/recall": v}, {}, 10.0)
                    for v in vals] for m, vals in f1.items()}  # fmt: skip

    monkeypatch.setattr(pipeline, "run_models", fake_run_models)
    (row,) = pipeline.run_quick(tmp_path)
    assert (row.model, row.value, row.baseline_value) == ("AGGCN", 0.6, 0.65)
    assert row.baseline.startswith("C-GCN") and "does not beat" in row.note
    text = pipeline.write_report(fake_run_models(tmp_path), tmp_path / "r.md", "t")
    assert "| AGGCN | 2 | 0.6500 ± 0.0707 |" in text


@pytest.mark.slow
def test_cross_sentence_window_on_generated_pubtator(tmp_path):
    for split, n in (("train", 20), ("dev", 4), ("test", 8)):
        main(["generate", str(tmp_path / split), "--split", split, "--docs", str(n)])
    paths = [f"--data.{s}_path={tmp_path / s / f'{s}.pubtator'}" for s in ("train", "dev", "test")]
    common = [*TINY, "--data.format", "pubtator", *paths, "--model.model", "tree_gcn"]
    res = fit_test(main, domain="bioie", root=tmp_path, experiment="window1", common_args=common,
                   fit_args=["--data.cross_sentence_window", "1", "--trainer.max_epochs", "1",
                             "--trainer.limit_train_batches", "3"])  # fmt: skip
    m = res.metrics  # test was given no window: it uses the checkpoint's
    assert m["data/test_candidates_across"] > 0 and m["data/test_candidates_within"] > 0
    assert m["data/test_candidates_across"] + m["data/test_candidates_within"] == m["data/test_candidates"]
    assert m["data/test_unreachable_relations"] == 0 < m["data/test_relations"]
    assert 0.0 <= m["test/doc_recall"] <= 1.0
    assert json.loads((res.run_dir / "encoder.json").read_text())["cross_sentence_window"] == 1
    # predict builds the candidates with the checkpoint's window when none is given
    main(["predict", "--run.root", str(tmp_path), "--run.experiment", "window1", "--run.version", res.run_dir.name,
          "--run.wandb", "disabled", "--run.progress", "none",
          "--data.predict_path", str(tmp_path / "test" / "test.pubtator")])  # fmt: skip
    pairs = json.loads((res.run_dir / "predictions.json").read_text())["pairs"]
    assert len(pairs) == m["data/test_candidates"]
    assert sum(p["id"].count("-s") == 2 for p in pairs) == m["data/test_candidates_across"]  # <doc>-s1-s2-...
