"""``polyhead matrix``: the domain protocol on a fake domain, applicability, resume, failures, the table."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from matrix_fake_domain import FAKE, MatrixPointerModel

from polyhead.attention import create_attention, get_attention_class, list_attention
from polyhead.attention.base import AttentionBase
from polyhead.train.domains import AttentionSite, Domain
from polyhead.train.matrix import (
    CellSpec,
    aggregate,
    execute_cell,
    plan_variant,
    readiness,
    resolve_domains,
    reusable,
    run_matrix,
    table_rows,
)
from polyhead.train.umbrella import main as polyhead_main

# One worker runs the whole module under `pytest -n 2 --dist loadgroup` (CI), so the matrix fixture runs once.
pytestmark = pytest.mark.xdist_group("matrix")

VARIANTS = ["moh", "gaam", "rcmha", "halo", "duo"]
FAKE_TARGET = "matrix_fake_domain:FAKE"


@pytest.fixture(scope="module")
def matrix_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny matrix through the real command: fake domain (2 cells run, 2 fail, 2 n/a) + a bare domain."""
    out = tmp_path_factory.mktemp("matrix")
    args = ["matrix", "--domains", f"{FAKE_TARGET},matrix_fake_domain:BARE", "--variants", ",".join(VARIANTS)]
    with pytest.raises(SystemExit) as exc:
        polyhead_main([*args, "--budget", "tiny", "--out", str(out), "--in-process", "--wandb", "offline"])
    assert exc.value.code == 1  # failed cells make the exit code non-zero, after writing everything
    return out


def _rows(out: Path) -> dict[str, dict]:
    payload = json.loads((out / "matrix.json").read_text())
    return {r["variant"]: r for r in payload["rows"] if r["domain"] == "fake"}


def _cells(out: Path, variant: str) -> list[dict]:
    return [
        json.loads(p.read_text()) for p in sorted((out / "cells/tiny/fake" / variant).glob("seed*/cell.json"))
    ]


def test_matrix_reports_every_cell_in_place(matrix_out: Path) -> None:
    payload = json.loads((matrix_out / "matrix.json").read_text())
    rows = _rows(matrix_out)
    assert list(rows) == ["default", *VARIANTS]
    assert rows["default"]["status"] == rows["moh"]["status"] == "ok"
    assert rows["default"]["attention_variants"] == ["mha"] and rows["moh"]["attention_variants"] == ["moh"]
    assert rows["moh"]["configs"] == {"model.attention": {"name": "moh"}}
    # Failures are reported where the cell would be, and did not stop the cells after them.
    assert rows["gaam"]["status"] == "failed"
    assert rows["gaam"]["errors"] == ["RuntimeError: fake domain: gaam breaks this model"]
    assert rows["rcmha"]["errors"] == ["SystemExit(3)"]
    assert "2-D variant" in rows["halo"]["reason"] and "causal only" in rows["duo"]["reason"]
    assert not (matrix_out / "cells/tiny/fake/halo").exists()  # not applicable: never run
    assert payload["domains"]["bare"]["status"] == "not matrix-ready"
    assert "declares no sites/cli/metric" in payload["domains"]["bare"]["reason"]
    md = (matrix_out / "matrix.md").read_text()
    assert "failed: SystemExit(3)" in md and "not matrix-ready" in md
    assert (matrix_out / "heatmap.png").stat().st_size > 5000


def test_wandb_run_holds_the_table(matrix_out: Path) -> None:
    from polyhead.train import read_offline_run

    payload = json.loads((matrix_out / "matrix.json").read_text())
    run = read_offline_run(payload["wandb_run"])
    assert run.summary["matrix/_type"] == "table-file" and run.summary["heatmap/_type"] == "image-file"
    table = json.loads((Path(payload["wandb_run"]) / "files" / run.summary["matrix/path"]).read_text())
    md = _md_table((matrix_out / "matrix.md").read_text(), "fake")
    assert [row[1:] for row in table["data"]] == list(md.values())  # same rows as matrix.md
    assert math.isclose(run.summary["fake/moh/metric"], _rows(matrix_out)["moh"]["metric_mean"])


def _md_table(md: str, domain: str) -> dict[str, list[str]]:
    section = md.split(f"## {domain}:", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and not ln.startswith("| variant")]
    return {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split(" | ")] for ln in lines)}


def test_table_numbers_equal_the_cells_json(matrix_out: Path) -> None:
    table = _md_table((matrix_out / "matrix.md").read_text(), "fake")
    ref = None
    for variant, label in (("default", "default (mha)"), ("moh", "moh")):
        cells = _cells(matrix_out, variant)
        assert len(cells) == 1 and cells[0]["status"] == "ok"
        res = cells[0]["result"]
        fit, test = res["cost"]["fit"], res["cost"]["test"]
        metric = statistics.fmean(c["result"]["metric"] for c in cells)
        row = table[label]
        assert float(row[1]) == pytest.approx(metric, abs=5e-5)
        assert float(row[3]) == pytest.approx(fit["step_ms_median"], abs=0.05)
        assert float(row[5]) == pytest.approx(fit["peak_rss_mb"], abs=0.5)
        assert int(row[7].replace(",", "")) == fit["params"]
        assert float(row[9]) == pytest.approx(fit["throughput"], abs=0.05)
        assert float(row[10]) == pytest.approx(test["attn_entropy"], abs=5e-4)
        assert float(row[11]) == pytest.approx(test["attn_distance"], abs=5e-3)
        if ref is None:
            ref = (metric, fit)
        else:
            assert float(row[2]) == pytest.approx(metric - ref[0], abs=5e-5)
            assert float(row[4].rstrip("x")) == pytest.approx(
                fit["step_ms_median"] / ref[1]["step_ms_median"], abs=0.005
            )
            assert float(row[8].rstrip("x")) == pytest.approx(fit["params"] / ref[1]["params"], abs=0.005)


def test_cost_stats_describe_the_trained_model(matrix_out: Path) -> None:
    res = _cells(matrix_out, "moh")[0]["result"]
    fit, test = res["cost"]["fit"], res["cost"]["test"]
    model = MatrixPointerModel(attention={"name": "moh"})
    assert fit["params"] == sum(p.numel() for p in model.parameters())
    assert fit["attention_params"] == sum(p.numel() for p in model.attn.parameters())
    assert fit["batches"] == 5 and fit["timed_batches"] == 3  # 320 samples / 64, two warm-up batches
    assert fit["throughput"] == pytest.approx(64 / (fit["step_ms_mean"] / 1e3), rel=1e-6)
    assert fit["peak_rss_mb"] > 50
    # Entropy of rows over 12 keys is at most log 12; distances on 12 positions at most 11.
    assert 0 < test["attn_entropy"] <= math.log(12) + 1e-6
    assert 0 < test["attn_entropy_norm"] <= 1 + 1e-6
    assert 0 < test["attn_distance"] <= 11
    heads = test["modules"]["attn"]
    assert heads["kind"] == "self" and len(heads["entropy"]) == 4 and heads["distance_unit"] == "positions"
    assert res["metric"] == res["metrics"]["test/acc"]


def test_resume_reuses_finished_cells_and_redoes_a_killed_one(matrix_out: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    shutil.copytree(matrix_out, out)
    before = {v: (out / f"cells/tiny/fake/{v}/seed0/cell.json").read_text() for v in ("default", "gaam")}
    # A killed cell: its run directory (with a checkpoint) exists but cell.json was never written.
    killed = out / "cells/tiny/fake/moh/seed0"
    (killed / "cell.json").unlink()
    assert any((killed / "runs").rglob("*.ckpt"))
    logs: list[str] = []
    payload = run_matrix(
        resolve_domains([FAKE_TARGET]),
        variants=["moh", "gaam"],
        budget="tiny",
        seeds=1,
        out=out,
        isolate=False,
        log=logs.append,
    )
    assert "[matrix] fake/default/seed0: reused (ok)" in logs
    assert "[matrix] fake/gaam/seed0: reused (failed)" in logs
    assert "[matrix] fake/moh/seed0: running ..." in logs
    for v, text in before.items():
        assert (out / f"cells/tiny/fake/{v}/seed0/cell.json").read_text() == text
    moh = {r["variant"]: r for r in payload["rows"]}["moh"]
    assert moh["status"] == "ok" and json.loads((killed / "cell.json").read_text())["status"] == "ok"
    # --retry-failed runs failed cells again.
    logs.clear()
    run_matrix(resolve_domains([FAKE_TARGET]), variants=["gaam"], budget="tiny", seeds=1, out=out,
               isolate=False, retry_failed=True, log=logs.append)  # fmt: skip
    assert "[matrix] fake/gaam/seed0: running ..." in logs


def test_a_changed_spec_is_not_reused(matrix_out: Path) -> None:
    record = _cells(matrix_out, "moh")[0]
    spec = CellSpec(**{**record["spec"], "budget_args": tuple(record["spec"]["budget_args"])})
    cell_dir = matrix_out / "cells/tiny/fake/moh/seed0"
    assert reusable(cell_dir, spec, retry_failed=False) is not None
    other = CellSpec(**{**record["spec"], "budget_args": (*spec.budget_args, "--trainer.max_epochs", "2")})
    assert reusable(cell_dir, other, retry_failed=False) is None


def test_subprocess_cell_killed_by_a_signal_is_reported(tmp_path: Path) -> None:
    spec = CellSpec("fake", FAKE_TARGET, "single_head", 0, "tiny", "cpu", {"model.attention": {"name": "single_head"}},
                    tuple(FAKE.matrix_args["tiny"]))  # fmt: skip
    record = execute_cell(spec, tmp_path / "cell")
    assert record["status"] == "failed" and record["error"] == "killed by signal 9"
    assert record["returncode"] == -9 and record["process_peak_rss_mb"] > 50
    assert json.loads((tmp_path / "cell" / "cell.json").read_text())["error"] == "killed by signal 9"


@pytest.mark.slow
def test_subprocess_cell_runs_and_measures(tmp_path: Path) -> None:
    spec = CellSpec("fake", FAKE_TARGET, "moh", 1, "tiny", "cpu", {"model.attention": {"name": "moh"}},
                    tuple(FAKE.matrix_args["tiny"]))  # fmt: skip
    record = execute_cell(spec, tmp_path / "cell")
    assert record["status"] == "ok", record.get("log_tail")
    assert record["result"]["cost"]["fit"]["variants"] == ["moh"]
    assert record["process_peak_rss_mb"] >= record["result"]["cost"]["fit"]["peak_rss_mb"] - 1


# ---- applicability (no training) -------------------------------------------------------------------
SELF = AttentionSite("encoder self-attention")
CAUSAL = AttentionSite("decoder self-attention", causal=True, config_key="model.decoder_attention")
CROSS = AttentionSite("decoder cross-attention", kind="cross", config_key="model.decoder_attention")
GRID = AttentionSite("patch self-attention", layout="2d", shape=(4, 4))


def test_applicability_rules() -> None:
    def plan(name: str, *sites: AttentionSite):
        return plan_variant(name, get_attention_class(name), sites)

    assert not plan("halo", SELF).applies and "2-D variant" in plan("halo", SELF).reason
    assert plan("halo", GRID).configs == {"model.attention": {"name": "halo"}}
    assert "supports_cross=False" in plan("rel_mha", CROSS).reason
    assert "cross_is_prefix" in plan("s2", CROSS).reason
    assert "supports_causal=False" in plan("gaam", CAUSAL).reason
    assert "causal only" in plan("duo", SELF).reason
    assert plan("duo", CAUSAL).configs == {"model.decoder_attention": {"name": "duo"}}
    # Variants whose causal option defaults to True are made bidirectional at bidirectional sites only.
    assert plan("s2", SELF).configs == {"model.attention": {"name": "s2", "causal": False}}
    assert plan("s2", CAUSAL).configs == {"model.decoder_attention": {"name": "s2"}}
    assert plan("mha", SELF).configs == {"model.attention": {"name": "mha"}}
    # Sites sharing a key take the variant together or not at all; other keys still take it.
    speech_like = plan("rel_mha", SELF, CAUSAL, CROSS)
    assert speech_like.configs == {"model.attention": {"name": "rel_mha"}}
    assert speech_like.applied == ("encoder self-attention",)
    assert speech_like.kept == {
        "decoder self-attention": "shares --model.decoder_attention with: decoder cross-attention",
        "decoder cross-attention": "no cross-attention (supports_cross=False)",
    }
    full = plan("mha", SELF, CAUSAL, CROSS)
    assert full.kept == {} and set(full.configs) == {"model.attention", "model.decoder_attention"}


@pytest.mark.parametrize("site", [SELF, CAUSAL, CROSS, GRID], ids=lambda s: s.name)
def test_every_applicable_variant_runs_at_the_site(site: AttentionSite) -> None:
    """Applicable (from the declarations) means it builds and runs there, as a domain would call it."""
    torch.manual_seed(0)
    x = torch.randn(2, 16, 32)
    for name in list_attention():
        plan = plan_variant(name, get_attention_class(name), [site])
        if not plan.applies:
            continue
        cfg = dict(plan.configs[site.config_key])
        cfg.pop("name")
        if site.causal:
            cfg["causal"] = True  # what a domain's causal site sets
        m = create_attention(name, dim=32, num_heads=4, **cfg)
        if site.kind == "cross":
            ctx = torch.randn(2, 23, 32)
            out = m(x, ctx, mask=torch.ones(2, 23, dtype=torch.bool)).output
        else:
            out = m(
                x, shape=(4, 4) if site.layout == "2d" else None, mask=torch.ones(2, 16, dtype=torch.bool)
            ).output
        assert out.shape == x.shape and torch.isfinite(out).all(), name


def test_readiness() -> None:
    assert readiness(FAKE, "tiny") is None
    assert readiness(FAKE, "quick") == "not matrix-ready: no matrix_args for budget 'quick'"
    bare = Domain(name="b", title="t", quick=lambda out: [], sites=(SELF,))
    assert readiness(bare, "tiny") == "not matrix-ready: declares no cli/metric"


def test_aggregate_over_seeds() -> None:
    def rec(metric: float, step: float, rss: float) -> dict:
        fit = {"step_ms_median": step, "throughput": 100 / step, "peak_rss_mb": rss, "params": 7}
        return {
            "status": "ok",
            "result": {"metric": metric, "cost": {"fit": fit, "test": {"attn_entropy": 1.0}}},
        }

    agg = aggregate([rec(0.5, 10, 300), rec(0.7, 20, 350), {"status": "failed", "error": "boom"}])
    assert agg["status"] == "partly failed" and agg["seeds_ok"] == 2 and agg["errors"] == ["boom"]
    assert agg["metric_mean"] == pytest.approx(0.6) and agg["metric_sd"] == pytest.approx(math.sqrt(0.02))
    assert agg["step_ms"] == pytest.approx(15) and agg["peak_rss_mb"] == 350 and agg["params"] == 7
    assert aggregate([rec(0.5, 10, 300)])["metric_sd"] is None


def test_cli_errors_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--domains", "no_such_domain"], ["--variants", "no_such_variant"], ["--seeds", "0"]):
        with pytest.raises(SystemExit) as exc:
            polyhead_main(["matrix", *bad])
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("polyhead matrix: error:") and "\n" not in err


def test_attention_modules_are_found_in_the_fake_domain() -> None:
    model = MatrixPointerModel(attention={"name": "s2", "causal": False})
    assert isinstance(model.attn, AttentionBase) and model.attn.causal is False


def test_table_shows_cross_entropy_and_cuda_memory_where_they_apply() -> None:
    row = {"domain": "d", "variant": "moh", "status": "ok", "metric_mean": 0.5, "metric_sd": None, "kept": {},
           "attn_entropy": None, "cross_entropy": 1.23456, "peak_rss_mb": 900.0, "cuda_peak_mb": 42.0,
           "cuda_peak_mb_ratio": 0.5, "peak_rss_mb_ratio": 2.0}  # fmt: skip
    cpu = table_rows({"device": "cpu", "rows": [row]}, "d")[0]
    cuda = table_rows({"device": "cuda", "rows": [row]}, "d")[0]
    assert cpu[10] == "1.235 (cross)" and cpu[11] == "-"
    assert (cpu[5], cpu[6]) == ("900", "2.00x") and (cuda[5], cuda[6]) == ("42", "0.50x")
