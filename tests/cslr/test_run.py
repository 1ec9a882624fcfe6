"""A polyhead-cslr run is self-describing: test/predict read annotations against the checkpoint's vocabulary
and preprocessing; bad data stops with a one-line report (exit 2) or is skipped and counted in metrics.json."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from polyhead.attention.base import AttentionBase
from polyhead.cslr.cli import main
from polyhead.cslr.data.isharah import write_release
from polyhead.cslr.data.synthetic import generate_corpus
from polyhead.cslr.module import CSLRModule

TINY_MODEL = ["--model.model", "baseline", "--model.d_model", "32", "--model.layers", "1", "--model.heads", "4",
              "--run.wandb", "disabled", "--run.progress", "none"]  # fmt: skip


def _release(root: Path) -> dict[str, Path]:
    """A small generated corpus written as an Isharah release (pickle + three annotation files)."""
    corpus = generate_corpus(num_glosses=6, num_sentences=10, samples_per_sentence=2, seed=3)[
        "unseen_sentences"
    ]
    root.mkdir(parents=True, exist_ok=True)
    files = {"kp": root / "pose.pkl"}
    write_release([s for part in corpus.values() for s in part], files["kp"], root / "all.txt")
    for split, samples in corpus.items():
        files[split] = root / f"{split}.txt"
        write_release(samples, root / "unused.pkl", files[split])
    return files


def _args(files: dict[str, Path], **override: Path) -> list[str]:
    f = {**files, **override}
    return ["--data.keypoints", str(f["kp"]), "--data.train_annotations", str(f["train"]),
            "--data.dev_annotations", str(f["dev"]), "--data.test_annotations", str(f["test"])]  # fmt: skip


def test_attention_modules_exist_at_construction() -> None:
    for model in ("conformer", "msft", "baseline"):
        m = CSLRModule(model=model, d_model=32, layers=1, heads=4)
        assert any(isinstance(x, AttentionBase) for x in m.modules()), model


@pytest.mark.slow
def test_test_uses_the_checkpoint_vocabulary(tmp_path: Path) -> None:
    files = _release(tmp_path / "data")
    run = ["--run.root", str(tmp_path / "runs"), *TINY_MODEL]
    main(["fit", *run, *_args(files), "--trainer.max_epochs", "2"])
    main(["test", *run, *_args(files)])
    metrics_file = tmp_path / "runs" / "cslr" / "default" / "version_0" / "metrics.json"
    first = json.loads(metrics_file.read_text())["metrics"]

    # The same checkpoint with a training file whose glosses have another frequency order (and another
    # vocabulary altogether): test reads the checkpoint's vocabulary, so nothing changes.
    lines = files["train"].read_text().splitlines()
    counts = {}
    for line in lines[1:]:
        for g in line.split("|")[1].split():
            counts[g] = counts.get(g, 0) + 1
    rare = min(counts, key=counts.get)
    other = tmp_path / "data" / "train_other.txt"
    other.write_text(
        "\n".join([lines[0], *[f"{line.split('|')[0]}|{rare} {rare} {rare}" for line in lines[1:]]])
    )
    main(["test", *run, *_args(files, train=other)])
    again = json.loads(metrics_file.read_text())["metrics"]
    assert again == first

    # A test file with glosses outside the vocabulary: reported, counted as errors and in metrics.json.
    test_lines = files["test"].read_text().splitlines()
    oov = tmp_path / "data" / "test_oov.txt"
    sid = test_lines[1].split("|")[0]
    oov.write_text("\n".join([test_lines[0], f"{sid}|NEWSIGN ANOTHER", *test_lines[2:]]))
    main(["test", *run, *_args(files, test=oov)])
    m = json.loads(metrics_file.read_text())["metrics"]
    assert m["data/oov_samples/test"] == 1 and m["data/oov_glosses/test"] == 2
    assert m["data/oov_samples/dev"] == 0

    # predict: every row scored; abstain above every score
    main(["predict", *run, *_args(files), "--data.predict_keypoints", str(files["kp"]),
          "--model.abstain_below", "1.0"])  # fmt: skip
    with open(metrics_file.parent / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(pickle.loads(files["kp"].read_bytes()))
    assert {r["status"] for r in rows} == {"abstained"} and all(r["gloss"] == "" for r in rows)

    ckpt = next((metrics_file.parent / "checkpoints").glob("best-*.ckpt"))
    state = torch.load(ckpt, weights_only=True)
    dm_state = state["CSLRDataModule"]
    assert dm_state["vocab"] == json.loads((metrics_file.parent / "vocab.json").read_text())
    assert dm_state["normalization"] and dm_state["augment"]["hand_dropout"] == 0.1
    assert dm_state["min_frames"] >= 1


@pytest.mark.slow
def test_bad_data_one_line_exit_2_or_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    files = _release(tmp_path / "data")
    lines = files["test"].read_text().splitlines()
    bad = tmp_path / "data" / "test_bad.txt"
    bad.write_text("\n".join([*lines, "nosuchid|G000", "broken line", f"{lines[1].split('|')[0]}|"]))
    run = ["--run.root", str(tmp_path / "runs"), *TINY_MODEL]
    main(["fit", *run, *_args(files), "--trainer.max_epochs", "1"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["test", *run, *_args(files, test=bad)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"polyhead-cslr: error: {bad}: 3 problems")
    n = len(lines)
    assert all(f"line {k}" in err[0] for k in (n + 1, n + 2, n + 3))
    main(["test", *run, *_args(files, test=bad), "--data.skip_bad", "true"])
    m = json.loads((tmp_path / "runs" / "cslr" / "default" / "version_0" / "metrics.json").read_text())[
        "metrics"
    ]
    assert m["data/skipped/unknown_id"] == 1 and m["data/skipped/malformed_line"] == 1
    assert m["data/skipped/empty_gloss"] == 1


def test_all_nan_training_sample_is_rejected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = _release(tmp_path / "data")
    kp = pickle.loads(files["kp"].read_bytes())
    first = files["train"].read_text().splitlines()[1].split("|")[0]
    kp[first]["keypoints"] = np.full_like(kp[first]["keypoints"], np.nan)
    files["kp"].write_bytes(pickle.dumps(kp))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--run.root", str(tmp_path / "runs"), *TINY_MODEL, *_args(files)])
    assert exc.value.code == 2
    assert f"sample '{first}': no point observed in any of its" in capsys.readouterr().err
