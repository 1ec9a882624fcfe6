"""DARK FACE (UG2+ challenge, Yang et al. 2020) face boxes.

Layout: ``image/<n>.png`` and ``label/<n>.txt``; a label file's first line is the number of faces, then one
``x1 y1 x2 y2`` line per face (pixels). One category, ``face``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyhead.lowlight.data.images import IMAGE_SUFFIXES, image_size
from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.validation import IssueLog, check_boxes

CATEGORIES = ["face"]


def read_darkface(label_dir: str | Path, image_dir: str | Path, *, skip_bad: bool = False) -> DetectionSet:
    """Read every ``label_dir/<n>.txt``; the image is ``image_dir/<n>.<any image suffix>``."""
    label_root, img_root = Path(label_dir), Path(image_dir)
    files = sorted(label_root.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"{label_root}: no DARK FACE .txt label files")
    log = IssueLog(str(label_root), skip_bad)
    records: list[ImageRecord] = []
    for f in files:
        image = next((img_root / f"{f.stem}{s}" for s in (".png", *IMAGE_SUFFIXES)
                      if (img_root / f"{f.stem}{s}").is_file()), None)  # fmt: skip
        if image is None:
            log.add("missing_image", str(f), f"no image {img_root / f.stem}.png (or another image suffix)")
            continue
        lines = [ln for ln in f.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        try:
            count = int(lines[0].split()[0]) if lines else -1
        except ValueError:
            count = -1
        if count < 0:
            log.add("bad_record", f"{f}:1", "expected the number of faces on the first line")
            continue
        if count != len(lines) - 1:
            log.add("bad_record", f"{f}:1", f"says {count} faces but {len(lines) - 1} box lines follow")
            continue
        width, height = image_size(image)
        boxes, wheres = [], []
        for n, line in enumerate(lines[1:], start=2):
            try:
                x1, y1, x2, y2 = (float(v) for v in line.split())
            except ValueError:
                log.add("bad_record", f"{f}:{n}", f"{line!r}; expected 'x1 y1 x2 y2'")
                continue
            boxes.append((x1, y1, x2, y2))
            wheres.append(f"{f}:{n}")
        clipped, keep = check_boxes(np.array(boxes, np.float32), width, height, log=log, where=wheres)
        records.append(ImageRecord(image, width, height, clipped[keep], np.zeros(int(keep.sum()), np.int64),
                                   image_id=len(records), source=str(f)))  # fmt: skip
    return DetectionSet(records, list(CATEGORIES), log.finish())


def write_darkface(data: DetectionSet, label_dir: str | Path) -> Path:
    """Write ``label_dir/<image stem>.txt`` per image (every box, whatever its category)."""
    root = Path(label_dir)
    root.mkdir(parents=True, exist_ok=True)
    for rec in data.records:
        rows = [str(len(rec.boxes))] + [" ".join(f"{v:g}" for v in b) for b in rec.boxes.tolist()]
        (root / f"{Path(rec.path).stem}.txt").write_text("\n".join(rows) + "\n")
    return root
