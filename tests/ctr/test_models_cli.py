"""CTR models (shapes, a short training run whose loss decreases) and the CLI with a config file."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from polyhead.ctr.cli import main
from polyhead.ctr.data.synthetic import generate_criteo
from polyhead.ctr.models import DNN, AutoInt, FactorizationMachine, LogisticRegression

CARDS = [5, 7, 3, 11]


@pytest.mark.parametrize(
    "make",
    [
        lambda: AutoInt(CARDS),
        lambda: AutoInt(CARDS, dnn_hidden=[8]),
        lambda: AutoInt(CARDS, wide=True),
        lambda: AutoInt(CARDS, attention={"name": "moh"}),
        lambda: LogisticRegression(CARDS),
        lambda: FactorizationMachine(CARDS, 4),
        lambda: DNN(CARDS, 4, [8]),
    ],
)
def test_model_shapes(make) -> None:
    torch.manual_seed(0)
    idx = torch.stack([torch.randint(0, c, (6,)) for c in CARDS], 1)
    logit, aux = make()(idx, torch.ones(6, 4))
    assert logit.shape == (6,)


def test_autoint_wide_adds_the_first_order_logit() -> None:
    torch.manual_seed(0)
    model = AutoInt(CARDS, num_layers=1, attn_size=4, wide=True)
    idx = torch.stack([torch.randint(0, c, (5,)) for c in CARDS], 1)
    val = torch.ones(5, 4)
    with torch.no_grad():
        model.wide.weights.table.weight.normal_()
    deep = model.out(model.layers[0](model.embedding(idx, val))[0].flatten(1)).squeeze(-1)
    first = model.wide.weights.table.weight[idx + model.wide.weights.offsets].sum((1, 2)) + model.wide.bias
    torch.testing.assert_close(model(idx, val)[0], deep + first)


def test_fm_matches_pairwise_definition() -> None:
    torch.manual_seed(0)
    fm = FactorizationMachine(CARDS, 3)
    idx = torch.stack([torch.randint(0, c, (5,)) for c in CARDS], 1)
    val = torch.rand(5, 4)
    v = fm.embedding(idx, val)
    pairs = sum((v[:, i] * v[:, j]).sum(-1) for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(fm(idx, val)[0], fm.linear(idx, val)[0] + pairs)


def test_autoint_learns_an_interaction() -> None:
    """A planted XOR-like pair interaction: the training loss must drop well below the label entropy."""
    torch.manual_seed(0)
    n = 4096
    idx = torch.stack([torch.randint(0, c, (n,)) for c in CARDS], 1)
    y = ((idx[:, 0] % 2) ^ (idx[:, 1] % 2)).float()
    model = AutoInt(CARDS, num_layers=2, attn_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        b = torch.randint(0, n, (256,))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(idx[b], torch.ones(256, 4))[0], y[b]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[:10]) / 10 > 0.65 and sum(losses[-20:]) / 20 < 0.2


@pytest.mark.parametrize("variant", ["mha", "moh"])
def test_autoint_layers_concatenate_heads_without_output_projection(variant: str) -> None:
    """``out_proj=False``: the paper's interacting layer, no W_o: the heads' concatenation plus the
    residual, then ReLU. The default keeps the attention module's W_o."""
    net = AutoInt(CARDS, attention={"name": variant}, out_proj=False)
    assert all(isinstance(layer.attn.out_proj, torch.nn.Identity) for layer in net.layers)
    kept = AutoInt(CARDS, attention={"name": variant})
    assert all(isinstance(layer.attn.out_proj, torch.nn.Linear) for layer in kept.layers)
    # The layer output is exactly ReLU(attention of the heads + W_res e) with nothing after the heads.
    layer = net.layers[1]
    h = torch.randn(4, len(CARDS), 64)
    attn = layer.attn(h).output
    assert torch.equal(layer(h)[0], torch.relu(attn + layer.res(h)))
    assert kept(torch.zeros(2, len(CARDS), dtype=torch.long), torch.ones(2, len(CARDS)))[0].shape == (2,)


def test_autoint_init_std_draws_projections_like_deepctr() -> None:
    """``init_std``: every Linear of the interacting layers (q/k/v, W_o, W_res, the input projection) from
    N(0, std) with zero biases; the rest of the model (embeddings, output layer) keeps its own init."""
    torch.manual_seed(0)
    net = AutoInt(CARDS, init_std=0.05, attn_size=64)
    linears = [m for layer in net.layers for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 * 5 + 1  # q, k, v, W_o and W_res per layer; the first layer's input projection
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert abs(weights.std().item() - 0.05) < 0.002 and abs(weights.mean().item()) < 0.002
    assert all(m.bias is None or not m.bias.any() for m in linears)
    default = AutoInt(CARDS, attn_size=64)
    q = default.layers[1].attn.q_proj
    assert (
        q.bias.any() and abs(q.weight.std().item() - (3 * 128) ** -0.5) < 0.01
    )  # Kaiming-uniform, fan_in 128
    torch.testing.assert_close(net.out.weight.std(), default.out.weight.std(), atol=2e-3, rtol=0.0)


@pytest.mark.slow
def test_cli_fit_test_predict_with_config(tmp_path: Path) -> None:
    data = generate_criteo(tmp_path / "train.tsv", 12_000, seed=2)
    cfg = tmp_path / "ctr.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "model": {"model": "autoint", "num_layers": 2},
                "data": {"data_path": str(data), "cache_dir": str(tmp_path / "cache"), "batch_size": 512},
                "trainer": {"max_epochs": 2},
                "run": {"root": str(tmp_path / "runs")},
            }
        )
    )
    main(["fit", "--config", str(cfg)])
    main(["test", "--config", str(cfg)])
    run = tmp_path / "runs" / "ctr" / "default" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0.5 < metrics["test/auc"] <= 1.0 and metrics["test/logloss"] > 0
    assert (run / "encoder.json").is_file() and (run / "explain.json").is_file()
    assert list((run / "media").glob("explain_field_attention*.png"))
    from polyhead.train import read_offline_run

    logged = read_offline_run(run)
    assert logged.summary["test/auc"] == pytest.approx(metrics["test/auc"])
    assert 0 <= metrics["test/ece"] < 0.2 and list((run / "media").glob("test_reliability*.png"))
    calib = json.loads((run / "explain.json").read_text())["calibration"]
    assert (
        sum(calib["count"])
        == json.loads(next((tmp_path / "cache").glob("*/meta.json")).read_text())["rows"]["test"]
    )
    # Criteo's test format (39 columns, no label), scored with the encoder and format saved in the
    # checkpoint: the training data and its cache are gone, nothing is rebuilt from them.
    new = generate_criteo(tmp_path / "new.tsv", 300, seed=9)
    unlabeled = tmp_path / "test.txt"
    unlabeled.write_text("".join(line.split("\t", 1)[1] for line in new.read_text().splitlines(True)))
    data.unlink()
    for f in (tmp_path / "cache").rglob("*"):
        f.unlink() if f.is_file() else None
    out = tmp_path / "scores.csv"
    main(
        [
            "predict",
            "--config",
            str(cfg),
            "--data.predict_path",
            str(unlabeled),
            "--data.predict_output",
            str(out),
            "--threads",
            "1",
        ]
    )
    preds = pl.read_csv(out)
    assert preds.columns == ["line", "probability"] and preds["line"].to_list() == list(range(1, 301))
    assert preds["probability"].is_between(0, 1).all() and preds["probability"].std() > 0


@pytest.mark.integration
def test_pipeline_runs_models_and_writes_report(tmp_path: Path) -> None:
    from polyhead.ctr.pipeline import run_models, write_report

    results = run_models(
        tmp_path / "ctr",
        models=("lr", "fm"),
        data_args=["--data.generate_rows", "8000"],
        extra_args=["--trainer.max_epochs", "1", "--run.wandb", "disabled"],
    )
    assert set(results) == {"lr", "fm"}
    assert all(0.4 < r["metrics"]["test/auc"] <= 1 for r in results.values())
    report = tmp_path / "report.md"
    write_report(results, report, "t")
    text = report.read_text()
    assert "| lr |" in text and "| fm |" in text
    # Generated data: every model's test logit is fitted against the planted effects.
    for r in results.values():
        rec = r["explain"]["effect_recovery"]
        assert set(rec) == {"main", "pair:C1xC2", "pair:C3xC8", "pair:C5xI4", "pair:C10xC14", "triple", "r2"}
        assert 0 <= rec["r2"] <= 1
    assert "| model | main | pair:C1xC2 |" in text and text.count("| fm |") == 2
    assert "Bayes-optimal test AUC" in text  # from any model's run on generated data, not only AutoInt's


def test_fit_help_imports_no_data_engine() -> None:
    """``polyhead-ctr fit --help`` needs the signatures only: polars, onnx and matplotlib's pyplot stay unimported."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from polyhead.ctr.cli import main\n"
        "try:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('polars', 'onnx', 'onnxruntime', 'polyhead.ctr.data.prepare') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--data.holdout_last" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "[]"
