"""COCO detection JSON: read through pycocotools, written in the same format.

Reader: ``json`` parses the file (a broken file is reported with its line and column), pycocotools' ``COCO``
indexes images, annotations and categories. Boxes ``[x, y, w, h]`` become ``x1, y1, x2, y2``; ``iscrowd``
regions are left out of training and evaluation targets (as torchvision's reference scripts do) and counted.
Category indices follow the order of the category ids.

Writer: :func:`write_coco` writes images, annotations (``bbox``, ``area``, ``iscrowd``) and categories with
``file_name`` relative to the image root; :func:`write_coco_results` writes the detection results list that
``COCO.loadRes`` and the COCO evaluation server read.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.validation import AnnotationError, IssueLog, check_boxes


def _load_coco(path: Path) -> COCO:
    try:
        dataset = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as err:
        raise AnnotationError(
            str(path), [f"line {err.lineno} column {err.colno}: broken JSON: {err.msg}"]
        ) from None
    except UnicodeDecodeError as err:
        raise AnnotationError(str(path), [f"byte {err.start}: not UTF-8 text"]) from None
    if not isinstance(dataset, dict):
        raise AnnotationError(str(path), [f"top level: expected a JSON object, got {type(dataset).__name__}"])
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(dataset.get(k), list)]
    if missing:
        raise AnnotationError(
            str(path), [f"top level: expected lists under {missing} (COCO detection format)"]
        )
    problems = []
    for key, need in (("images", ("id", "file_name")), ("annotations", ("id", "image_id", "category_id")),
                      ("categories", ("id", "name"))):  # fmt: skip
        for i, rec in enumerate(dataset[key]):
            lacking = [k for k in need if not isinstance(rec, dict) or k not in rec]
            if lacking:
                problems.append(f"{key}[{i}]: bad_record: missing field(s) {lacking}")
    if problems:
        raise AnnotationError(str(path), problems)
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def read_coco(
    annotation_file: str | Path,
    image_dir: str | Path | None = None,
    *,
    skip_bad: bool = False,
    categories: list[str] | None = None,
    check_images: bool = True,
) -> DetectionSet:
    """Read a COCO detection JSON.

    Args:
        annotation_file: the ``instances_*.json`` file.
        image_dir: folder that ``file_name`` is relative to (default: the JSON's folder).
        skip_bad: skip and count bad boxes/images instead of raising one report of all of them.
        categories: the category names a trained model knows; names outside it are ``unknown_category``
            (default: the file's own categories).
        check_images: check that every image file exists.
    """
    path = Path(annotation_file)
    root = Path(image_dir) if image_dir is not None else path.parent
    coco = _load_coco(path)
    cats = sorted(coco.dataset["categories"], key=lambda c: c["id"])
    names = list(categories) if categories is not None else [str(c["name"]) for c in cats]
    index = {n: i for i, n in enumerate(names)}
    cat_index = {c["id"]: index.get(str(c["name"])) for c in cats}
    log = IssueLog(str(path), skip_bad)
    counts: Counter = Counter()
    records = []
    ann_pos = {a["id"]: i for i, a in enumerate(coco.dataset["annotations"])}
    for img_pos, img in enumerate(coco.dataset["images"]):
        where_img = f"images[{img_pos}] (id {img['id']}, {img['file_name']})"
        file = root / str(img["file_name"])
        if check_images and not file.is_file():
            log.add("missing_image", where_img, f"image file {file} not found")
            continue
        width, height = img.get("width"), img.get("height")
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            log.add("bad_record", where_img, f"width/height {width}/{height}; expected positive integers")
            continue
        boxes, labels, wheres = [], [], []
        for ann in coco.imgToAnns.get(img["id"], []):
            where = f"annotations[{ann_pos[ann['id']]}] (id {ann['id']}, image {img['file_name']})"
            bbox = ann.get("bbox")
            if not (
                isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)
            ):
                log.add("bad_record", where, f"bbox {bbox!r}; expected [x, y, width, height] numbers")
                continue
            if ann["category_id"] not in cat_index or cat_index[ann["category_id"]] is None:
                known = ", ".join(names)
                log.add("unknown_category", where, f"category_id {ann['category_id']} is not one of: {known}")
                continue
            if ann.get("iscrowd", 0):
                counts["crowd_region"] += 1
                continue
            x, y, w, h = (float(v) for v in bbox)
            boxes.append((x, y, x + w, y + h))
            labels.append(cat_index[ann["category_id"]])
            wheres.append(where)
        clipped, keep = check_boxes(np.array(boxes, np.float32), width, height, log=log, where=wheres)
        records.append(
            ImageRecord(
                file,
                width,
                height,
                clipped[keep],
                np.array(labels, np.int64)[keep],
                image_id=int(img["id"]),
                source=f"{path}:{where_img}",
            )
        )
    counts.update(log.finish())
    return DetectionSet(records, names, dict(counts))


def write_coco(data: DetectionSet, annotation_file: str | Path, image_dir: str | Path | None = None) -> Path:
    """Write ``data`` as COCO detection JSON (``file_name`` relative to ``image_dir``, default the JSON's folder)."""
    path = Path(annotation_file)
    root = Path(image_dir) if image_dir is not None else path.parent
    images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    for rec in data.records:
        try:
            name = Path(rec.path).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = str(Path(rec.path).resolve())
        images.append(
            {"id": int(rec.image_id), "file_name": name, "width": int(rec.width), "height": int(rec.height)}
        )
        wh = rec.boxes[:, 2:] - rec.boxes[:, :2]
        for box, size, label in zip(rec.boxes.tolist(), wh.tolist(), rec.labels.tolist()):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": int(rec.image_id),
                "category_id": int(label) + 1,
                "bbox": [round(box[0], 2), round(box[1], 2), round(size[0], 2), round(size[1], 2)],
                "area": round(size[0] * size[1], 2),
                "iscrowd": 0,
            })  # fmt: skip
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(data.categories)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def write_coco_results(results: list[dict], path: str | Path) -> Path:
    """Write COCO detection results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    return path
