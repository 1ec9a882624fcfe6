"""Letterboxing and its inverse, the generated set on disk, and the datamodule's binding to a checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from polyhead.lowlight.data import read_coco
from polyhead.lowlight.data.letterbox import letterbox
from polyhead.lowlight.data.scenes import generate_scenes
from polyhead.lowlight.datamodule import DetectionDataset, LowLightDataModule, collate
from polyhead.lowlight.module import _to_original


def test_letterbox_and_back():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (30, 60, 3), dtype=np.uint8)
    canvas, scale = letterbox(img, 96)
    assert canvas.shape == (96, 96, 3) and scale == pytest.approx(1.6)
    assert canvas[48:].max() == 0  # padding below the 96 x 48 image is black
    boxes = torch.tensor([[6.0, 3.0, 30.0, 27.0]]) * scale
    back = _to_original([{"boxes": boxes, "scores": torch.ones(1), "labels": torch.zeros(1)}],
                        [{"scale": scale, "width": 60, "height": 30}])  # fmt: skip
    torch.testing.assert_close(back[0]["boxes"], torch.tensor([[6.0, 3.0, 30.0, 27.0]]))
    over = _to_original([{"boxes": torch.tensor([[-5.0, -5.0, 200.0, 200.0]]), "scores": torch.ones(1),
                          "labels": torch.zeros(1)}], [{"scale": 1.0, "width": 60, "height": 30}])  # fmt: skip
    assert over[0]["boxes"].tolist() == [[0.0, 0.0, 60.0, 30.0]]


def test_generated_set_dark_and_normal_share_annotations(tmp_path):
    root = generate_scenes(tmp_path / "s", splits={"train": 6, "test": 3}, image_size=64, seed=1)
    settings = json.loads((root / "settings.json").read_text())
    assert settings["splits"] == {"train": 6, "test": 3}
    dark = read_coco(root / "annotations" / "train.json", root / "dark")
    normal = read_coco(root / "annotations" / "train.json", root / "normal")
    assert len(dark) == len(normal) == 6 and dark.num_boxes == normal.num_boxes > 0
    ds_d = DetectionDataset(dark.records, image_size=64)
    ds_n = DetectionDataset(normal.records, image_size=64)
    assert ds_d[0][0].float().mean() < 0.6 * ds_n[0][0].float().mean()  # the dark copy is darker
    log = (root / "synthesis.jsonl").read_text().splitlines()
    assert len(log) == 9 and {"exposure", "photons", "read_std", "gains"} <= set(json.loads(log[0]))
    mtime = (root / "settings.json").stat().st_mtime_ns
    generate_scenes(tmp_path / "s", splits={"train": 6, "test": 3}, image_size=64, seed=1)  # cached
    assert (root / "settings.json").stat().st_mtime_ns == mtime


def test_datamodule_binds_checkpoint_categories_and_flips_boxes(tmp_path):
    dm = LowLightDataModule(image_size=64, generated_train=4, generated_val=2, generated_test=2,
                            cache_dir=str(tmp_path), batch_size=2)  # fmt: skip
    dm.setup("fit")
    assert dm.categories == ["disk", "ring", "box", "triangle", "cross", "star"]
    with pytest.raises(ValueError, match="differ from the checkpoint"):
        LowLightDataModule(categories=["a"], cache_dir=str(tmp_path)).bind(categories=["b"], image_size=64)
    torch.manual_seed(0)
    data = dm.dataset("train")
    ds = DetectionDataset(data.records, image_size=64, train=True)
    plain = DetectionDataset(data.records, image_size=64)
    for i in range(len(ds)):
        img, tgt, meta = ds[i]
        ref, ref_tgt, _ = plain[i]
        if not torch.equal(img, ref):  # flipped: image mirrored and x1/x2 mirrored
            assert torch.equal(img, ref.flip(-1))
            torch.testing.assert_close(tgt["boxes"][:, 0], 64 - ref_tgt["boxes"][:, 2])
    images, targets, metas = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32 and images.max() <= 1
