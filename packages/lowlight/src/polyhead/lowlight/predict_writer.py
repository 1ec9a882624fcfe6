"""``predict`` output: COCO-format detections and the images with their boxes drawn.

``predictions/predictions.json`` is a COCO dataset (``images`` with the input paths, ``categories``,
``annotations`` with a ``score``) and ``predictions/results.json`` the plain COCO results list
(``image_id, category_id, bbox, score``) that ``COCO.loadRes`` reads. ``predictions/images/`` holds each
input image with the boxes at or above ``draw_thresh`` drawn and labelled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from polyhead.lowlight.data.coco import write_coco_results
from polyhead.lowlight.data.images import load_image

PALETTE = ["#ff3b30", "#34c759", "#0a84ff", "#ffd60a", "#bf5af2", "#ff9f0a", "#64d2ff", "#ff375f"]


def draw_detections(
    image: np.ndarray, boxes: torch.Tensor, labels: list[str], colors: list[str]
) -> np.ndarray:
    """``(H, W, 3)`` uint8 with boxes and labels drawn."""
    img = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)
    if len(boxes):
        img = draw_bounding_boxes(
            img, boxes.float(), labels=labels, colors=colors, width=max(1, min(image.shape[:2]) // 160)
        )
    return img.permute(1, 2, 0).numpy()


def write_predictions(
    out_dir: Path, images: list[dict], results: list[dict], categories: list[str], *, draw_thresh: float
) -> Path:
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    write_coco_results([{k: r[k] for k in ("image_id", "category_id", "bbox", "score")} for r in results],
                       out_dir / "results.json")  # fmt: skip
    annotations = [{"id": i + 1, **r, "area": round(r["bbox"][2] * r["bbox"][3], 2), "iscrowd": 0}
                   for i, r in enumerate(results)]  # fmt: skip
    coco = {
        "images": [{k: im[k] for k in ("id", "file_name", "width", "height")} for im in images],
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(categories)],
    }
    path = out_dir / "predictions.json"
    path.write_text(json.dumps(coco, indent=1))
    names: set[str] = set()
    for im in images:
        d = im["detections"]
        keep = d["scores"] >= draw_thresh
        labels = [
            f"{categories[int(lab)]} {float(s):.2f}" for lab, s in zip(d["labels"][keep], d["scores"][keep])
        ]
        colors = [PALETTE[int(lab) % len(PALETTE)] for lab in d["labels"][keep]]
        drawn = draw_detections(load_image(im["file_name"]), d["boxes"][keep], labels, colors)
        stem = Path(im["file_name"]).stem
        name = stem if stem not in names else f"{stem}_{im['id']}"
        names.add(name)
        Image.fromarray(drawn).save(out_dir / "images" / f"{name}.png")
    return path
