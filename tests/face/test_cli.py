import json

import pytest

from polyhead.face.cli import main

from .conftest import TINY_MODEL

DATA = ["--data.num_train", "32", "--data.num_val", "8", "--data.num_test", "16", "--data.batch_size", "8"]


def _run(tmp_path, *args):
    main([*args, "--run.root", str(tmp_path), "--run.wandb", "disabled", "--run.progress", "none",
          "--data.cache_dir", str(tmp_path / "cache"), *DATA])  # fmt: skip


@pytest.mark.slow
def test_fit_both_stages_test_and_restore(tmp_path, astronaut, capsys):
    _run(tmp_path, "fit", *TINY_MODEL, "--trainer.max_epochs", "2", "--model.stage1_epochs", "1",
         "--trainer.limit_train_batches", "2", "--model.landmark_images", "4")  # fmt: skip
    _run(tmp_path, "test", "--model.landmark_images", "4")
    run = tmp_path / "face" / "default" / "version_0"
    payload = json.loads((run / "metrics.json").read_text())
    m = payload["metrics"]
    for k in ("test/psnr", "test/ssim", "test/input_psnr", "test/input_ssim", "test/codebook_usage"):
        assert k in m and m[k] == m[k]  # present and not NaN
    assert m["test/lmd_scored_faces"] >= 1
    rows = [json.loads(x) for x in (run / "test_images.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and "blur_sigma_x" in rows[0] and "jpeg" in rows[0]
    settings = json.loads((run / "data_settings.json").read_text())
    assert settings["trained_on"]["resolution"] == 32 and "rendered" in settings["trained_on"]["source"]
    assert list((run / "media").glob("val_side_by_side*.png"))
    out = tmp_path / "restored"
    main(["restore", str(astronaut), "--out", str(out), "--run-root", str(tmp_path), "--no-figures"])
    assert (out / "astronaut.jpg").is_file()
    assert json.loads((out / "report.jsonl").read_text())["status"] == "restored"
    # explain: per-head attention figures (2 fusion sites by default) for held-out faces and for given
    # aligned faces (one unreadable: reported, the others explained)
    expl = tmp_path / "explain"
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    assert main(["explain", "--out", str(expl), "--run-root", str(tmp_path), "--num", "2"]) in (0, None)
    assert len(list(expl.glob("face*_site*.png"))) == 2 * 2
    one = tmp_path / "explain_one"
    assert main(["explain", str(astronaut), str(bad), "--out", str(one), "--run-root", str(tmp_path)]) in (
        0,
        None,
    )
    assert len(list(one.glob("face0_site*.png"))) == 2
    assert "broken.png" in capsys.readouterr().err


def test_stage_two_needs_restoreformer(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, "fit", "--model.model", "unet", "--model.stage", "2")
    assert e.value.code == 2
    assert "model.stage" in capsys.readouterr().err


def test_restore_without_a_model_is_one_line_exit_2(tmp_path, astronaut, capsys):
    with pytest.raises(SystemExit) as e:
        main(["restore", str(astronaut), "--out", str(tmp_path / "o"), "--run-root", str(tmp_path)])
    assert e.value.code == 2
    assert "no trained model" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_restores_a_folder_of_aligned_faces(tmp_path, astronaut):
    import cv2

    faces = tmp_path / "aligned"
    faces.mkdir()
    img = cv2.imread(str(astronaut))
    cv2.imwrite(str(faces / "a.png"), img[60:190, 160:290])
    (faces / "broken.png").write_bytes(b"")
    _run(tmp_path, "fit", *TINY_MODEL, "--model.model", "unet", "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "1")  # fmt: skip
    _run(tmp_path, "predict", "--data.predict_dir", str(faces), "--data.skip_bad", "true")
    out = tmp_path / "face" / "default" / "version_0" / "predictions" / "a.png"
    assert cv2.imread(str(out)).shape == (32, 32, 3)
