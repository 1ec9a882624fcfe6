"""polyhead-cslr through the CLI on a tiny generated corpus: fit, test, metrics.json, task switch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
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
    assert {k for k in metrics if not k.startswith("data/")} == {
        "test/wer",
        "test/exact",
        "dev/wer",
        "dev/exact",
    }
    assert metrics["data/oov_samples/test"] == 0 and metrics["data/oov_glosses/dev"] == 0
    assert metrics["test/wer"] >= 0 and metrics["dev/wer"] >= 0
    assert (run / "vocab.json").is_file()
    (split_dir,) = (tmp_path / "cache").glob(f"generated_*/{task}")

    # predict on the test split's keypoints (the release pickle holds every sample of the corpus)
    main(["predict", *common, "--data.predict_keypoints", str(split_dir / "keypoints.pkl")])
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    vocab = {*json.loads((run / "vocab.json").read_text()), "<unk>"}
    ids = {line.split("|")[0] for line in (split_dir / "all.txt").read_text().splitlines()[1:]}
    assert rows[0] == ["id", "gloss", "score", "gloss_scores", "status", "frames"]
    assert {r[0] for r in rows[1:]} == ids
    for r in rows[1:]:
        assert set(r[1].split()) <= vocab and 0 < float(r[2]) <= 1 and r[4] == "ok"
        assert len(r[3].split()) == len(r[1].split())


@pytest.mark.slow
def test_predict_from_video(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("mediapipe")
    common = ["--run.root", str(tmp_path), "--data.cache_dir", str(tmp_path / "cache"), *TINY]
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"])
    videos = tmp_path / "videos"
    videos.mkdir()
    img = cv2.imread(str(Path(__file__).parents[2] / "shared" / "cslr" / "messi5.jpg"))
    out = cv2.VideoWriter(str(videos / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, img.shape[1::-1])
    for t in range(6):
        out.write(np.roll(img, 2 * t, axis=0))
    out.release()
    (videos / "broken.mp4").write_bytes(b"")
    main(["predict", *common, "--data.predict_videos", str(videos)])
    run = tmp_path / "cslr" / "default" / "version_0"
    with open(run / "predictions.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["id", "clip"]  # the empty file is reported and skipped
    assert rows[1][4] == "too_short" and rows[1][1] == ""  # 6 frames: shorter than any sign in training
    assert (run / "extracted" / "keypoints" / "clip.npy").is_file()


def test_real_data_paths_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--run.root", str(tmp_path), "--data.keypoints", str(tmp_path / "nope.pkl")])
    assert exc.value.code == 2
    assert "data.keypoints needs annotation files" in capsys.readouterr().err
    (tmp_path / "kp.pkl").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--run.root", str(tmp_path), "--data.keypoints", str(tmp_path / "kp.pkl"),
              "--data.train_annotations", str(tmp_path / "train.txt")])  # fmt: skip
    assert exc.value.code == 2
    assert "data.train_annotations: no such file" in capsys.readouterr().err
