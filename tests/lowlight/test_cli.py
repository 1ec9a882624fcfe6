"""End to end through ``polyhead-lowlight``: fit -> test (COCO metrics in metrics.json, explain figures) ->
predict on a file and a folder (COCO JSON + drawn images); bad real data gives one-line errors (exit 2)
or counted skips in metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from polyhead.lowlight.cli import main
from polyhead.lowlight.data import DetectionSet, ImageRecord, write_coco

TINY = ["--data.image_size", "64", "--data.generated_train", "16", "--data.generated_val", "8",
        "--data.generated_test", "8", "--data.batch_size", "8", "--model.fpn_channels", "32",
        "--model.enhancer_channels", "4", "--model.fusion_dim", "16", "--run.wandb", "disabled",
        "--run.progress", "none", "--trainer.enable_model_summary", "false"]  # fmt: skip


@pytest.mark.slow
def test_fit_test_predict(tmp_path):
    common = [*TINY, "--run.root", str(tmp_path / "runs"), "--data.cache_dir", str(tmp_path / "cache")]
    main(["fit", *common, "--trainer.max_epochs", "1"])
    main(["test", *common])
    run = tmp_path / "runs" / "lowlight" / "default" / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    for key in ("test/map", "test/ap50", "test/ap75", "test/ap_small", "test/ap_medium", "test/ap_large"):
        assert key in metrics and -1 <= metrics[key] <= 1
    data = json.loads((run / "data.json").read_text())
    assert (
        data["categories"] == ["disk", "ring", "box", "triangle", "cross", "star"]
        and data["image_size"] == 64
    )
    for fig in ("explain_scales.png", "explain_scale_weights.png", "explain_predictions.png"):
        assert (run / "media" / fig).is_file()
    weights = json.loads((run / "media" / "explain.json").read_text())["scale_weights_mean"]
    assert len(weights) == 4 and all(abs(sum(h.values()) - 1) < 1e-4 for h in weights.values())

    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 60, (50, 90, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 60, (70, 40), dtype=np.uint8)).save(folder / "b.png")  # greyscale
    main(["predict", str(folder / "a.jpg"), *common])
    main(["predict", str(folder), *common, "--model.score_thresh", "0.0", "--model.draw_thresh", "0.0"])
    out = run / "predictions"
    coco = json.loads((out / "predictions.json").read_text())
    assert [im["width"] for im in coco["images"]] == [90, 40]
    assert {c["name"] for c in coco["categories"]} == set(data["categories"])
    for ann in coco["annotations"]:  # boxes in the original pixels
        im = coco["images"][ann["image_id"] - 1]
        x, y, w, h = ann["bbox"]
        assert x >= 0 and x + w <= im["width"] + 1e-3 and y >= 0 and y + h <= im["height"] + 1e-3
    assert len(json.loads((out / "results.json").read_text())) == len(coco["annotations"]) > 0
    assert (out / "images" / "a.png").is_file() and (out / "images" / "b.png").is_file()


def _coco_set(tmp_path, bad: bool) -> list[str]:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    recs = []
    for i in range(6):
        p = tmp_path / "img" / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(p)
        recs.append(ImageRecord(p, 64, 48, [[4, 4, 30, 30]], [i % 2], image_id=i + 1))
    path = write_coco(DetectionSet(recs, ["cat", "dog"]), tmp_path / "ann.json", tmp_path)
    if bad:
        raw = json.loads(path.read_text())
        raw["annotations"][1]["bbox"] = [60, 40, 30, 30]
        path.write_text(json.dumps(raw))
    return [
        "--data.format",
        "coco",
        "--data.train",
        str(path),
        "--data.val",
        str(path),
        "--data.test",
        str(path),
    ]


def test_bad_annotation_is_one_line_error(tmp_path, capsys):
    args = _coco_set(tmp_path, bad=True)
    with pytest.raises(SystemExit) as err:
        main(["fit", *args, *TINY, "--run.root", str(tmp_path / "runs"), "--trainer.max_epochs", "1"])
    assert err.value.code == 2
    msg = capsys.readouterr().err
    assert "ann.json" in msg and "annotations[1] (id 2" in msg and "box_outside" in msg


@pytest.mark.slow
def test_skip_bad_counts_reach_metrics(tmp_path):
    args = [
        *_coco_set(tmp_path, bad=True),
        "--data.skip_bad",
        "true",
        *TINY,
        "--run.root",
        str(tmp_path / "runs"),
    ]
    main(["fit", *args, "--trainer.max_epochs", "1", "--model.enhancer", "none"])
    main(["test", *args])
    metrics = json.loads(
        (tmp_path / "runs" / "lowlight" / "default" / "version_0" / "metrics.json").read_text()
    )
    assert metrics["metrics"]["test/skipped_box_outside"] == 1.0


def test_domain_entry_point_declares_the_fusion_site():
    from polyhead.lowlight.pipeline import DOMAIN, VARIANTS

    assert DOMAIN.name == "lowlight" and DOMAIN.metric == "test/map" and DOMAIN.higher_is_better
    assert [s.kind for s in DOMAIN.sites] == ["cross"] and DOMAIN.sites[0].config_key == "model.attention"
    assert set(DOMAIN.matrix_args) == {"tiny", "quick", "full"}
    assert set(VARIANTS) == {"detector", "zero_dce", "featenhancer", "normal_light"}
    assert VARIANTS["normal_light"][-2:] == ["--data.light", "normal"]
