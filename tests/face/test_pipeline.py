from pathlib import Path

from polyhead.face import pipeline
from polyhead.train.experiment import RunResult


def _result(tmp_path: Path, name: str, psnr: float, lmd: float) -> RunResult:
    d = tmp_path / name
    d.mkdir()
    metrics = {"test/psnr": psnr, "test/ssim": psnr / 40, "test/lmd": lmd, "test/input_psnr": 22.0,
               "test/input_ssim": 0.55, "test/input_lmd": 60.0}  # fmt: skip
    return RunResult(d, metrics, {"metrics": metrics}, 10.0)


def test_report_and_verdict(tmp_path):
    results = {
        ("restoreformer", 0): _result(tmp_path, "rf0", 16.0, 30.0),
        ("unet", 0): _result(tmp_path, "un0", 15.0, 40.0),
        ("restoreformer", 1): _result(tmp_path, "rf1", 17.0, 31.0),
        ("unet", 1): _result(tmp_path, "un1", 16.5, 41.0),
    }
    text = pipeline.write_report(results, tmp_path / "report.md", "t")
    assert "| RestoreFormer++ | 16.500 ± 0.707 |" in text
    assert "| degraded input | 22.000 ± 0.000 |" in text  # counted once per seed, not once per model
    assert "holds here on PSNR" in text and "+0.750 dB" in text and "2/2 seeds" in text
    results[("unet", 1)] = _result(tmp_path, "un1b", 18.0, 41.0)
    assert "is mixed" in pipeline.verdict(results)


def test_quick_returns_the_paper_model_beside_its_baseline(tmp_path, monkeypatch):
    calls = {}

    def fake_run_models(out_dir, **kw):
        calls.update(kw)
        return {
            ("restoreformer", 0): _result(tmp_path, "rf", 15.0, 30.0),
            ("unet", 0): _result(tmp_path, "un", 15.7, 42.0),
        }

    monkeypatch.setattr(pipeline, "run_models", fake_run_models)
    monkeypatch.setattr(pipeline, "restore_examples", lambda ckpt, out: [])
    (row,) = pipeline.run_quick(tmp_path)
    assert row.model == "RestoreFormer++" and row.baseline == "U-Net (no prior)"
    assert row.value == 15.0 and row.baseline_value == 15.7 and "does not show" in row.note
    assert "--model.resolution" in calls["data_args"] and calls["model_args"]["restoreformer"]
    assert (tmp_path / "rf" / "report.md").is_file()
    assert pipeline.DOMAIN.sites[0].kind == "cross" and set(pipeline.DOMAIN.matrix_args) == {
        "tiny",
        "quick",
        "full",
    }
