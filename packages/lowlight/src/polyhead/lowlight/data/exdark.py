"""ExDark (Exclusively Dark, Loh & Chan 2019) annotations: Piotr Dollar's bbGt text format.

Layout of the release: ``ExDark/<Class>/<image>`` and ``ExDark_Annno/<Class>/<image>.txt`` (the image's full
name plus ``.txt``). Each file starts with ``% bbGt version=3``, then one object per line:
``<class> <left> <top> <width> <height> <occ> <ol> <ot> <ow> <oh> <ign> <ang>`` (the trailing bbGt fields
are read past). The image size is not in the file, so it is taken from the image header.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyhead.lowlight.data.images import image_size
from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.validation import IssueLog, check_boxes

EXDARK_CLASSES = (
    "Bicycle", "Boat", "Bottle", "Bus", "Car", "Cat", "Chair", "Cup", "Dog", "Motorbike", "People", "Table",
)  # fmt: skip
HEADER = "% bbGt version=3"


def read_exdark(
    annotation_dir: str | Path,
    image_dir: str | Path,
    *,
    categories: list[str] | None = None,
    skip_bad: bool = False,
) -> DetectionSet:
    """Read every ``*.txt`` under ``annotation_dir``; the image is the same relative path without ``.txt``."""
    ann_root, img_root = Path(annotation_dir), Path(image_dir)
    files = sorted(ann_root.rglob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{ann_root}: no ExDark .txt annotation files")
    names = list(categories) if categories is not None else list(EXDARK_CLASSES)
    index = {n.lower(): i for i, n in enumerate(names)}
    log = IssueLog(str(ann_root), skip_bad)
    records: list[ImageRecord] = []
    for f in files:
        image = img_root / f.relative_to(ann_root).with_suffix("")
        if not image.is_file():
            log.add("missing_image", str(f), f"image file {image} not found")
            continue
        lines = f.read_text(encoding="utf-8", errors="replace").splitlines()
        if not lines or not lines[0].startswith("% bbGt"):
            log.add("bad_record", f"{f}:1", f"expected the header {HEADER!r}")
            continue
        width, height = image_size(image)
        boxes, labels, wheres = [], [], []
        for n, line in enumerate(lines[1:], start=2):
            parts = line.split()
            if not parts:
                continue
            where = f"{f}:{n}"
            if len(parts) < 5:
                log.add(
                    "bad_record", where, f"{line!r}; expected '<class> <left> <top> <width> <height> ...'"
                )
                continue
            if parts[0].lower() not in index:
                log.add("unknown_category", where, f"class {parts[0]!r} is not one of: {', '.join(names)}")
                continue
            try:
                left, top, w, h = (float(v) for v in parts[1:5])
            except ValueError:
                log.add("bad_record", where, f"{line!r}; expected numbers for left top width height")
                continue
            boxes.append((left, top, left + w, top + h))
            labels.append(index[parts[0].lower()])
            wheres.append(where)
        clipped, keep = check_boxes(np.array(boxes, np.float32), width, height, log=log, where=wheres)
        records.append(ImageRecord(image, width, height, clipped[keep], np.array(labels, np.int64)[keep],
                                   image_id=len(records), source=str(f)))  # fmt: skip
    return DetectionSet(records, names, log.finish())


def write_exdark(data: DetectionSet, annotation_dir: str | Path, image_dir: str | Path) -> Path:
    """Write bbGt files mirroring the images' paths under ``image_dir``."""
    ann_root, img_root = Path(annotation_dir), Path(image_dir)
    for rec in data.records:
        rel = Path(rec.path).resolve().relative_to(img_root.resolve())
        out = ann_root / f"{rel}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = [HEADER]
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            rows.append(f"{data.categories[label]} {box[0]:g} {box[1]:g} {w:g} {h:g} 0 0 0 0 0 0 0")
        out.write_text("\n".join(rows) + "\n")
    return ann_root
