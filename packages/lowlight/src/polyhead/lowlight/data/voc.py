"""Pascal VOC XML annotations (``Annotations/*.xml`` + ``JPEGImages/``), read and written.

VOC corners are 1-based inclusive pixels: ``xmin, ymin, xmax, ymax`` -> ``x1 = xmin - 1, y1 = ymin - 1,
x2 = xmax, y2 = ymax`` (and back in :func:`write_voc`). ``difficult`` objects are left out by default (VOC
evaluation ignores them) and counted. XML itself is parsed by ``xml.etree``; a file that does not parse is
reported with its line and column.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np

from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.validation import IssueLog, check_boxes

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def read_voc(
    root: str | Path,
    *,
    split: str | None = None,
    categories: list[str] | None = None,
    skip_bad: bool = False,
    keep_difficult: bool = False,
    image_dir: str | Path | None = None,
) -> DetectionSet:
    """Read a VOC-style folder.

    Args:
        root: folder with ``Annotations/`` (and ``JPEGImages/``, ``ImageSets/Main/<split>.txt``), or a folder
            of XML files.
        split: read only the ids listed in ``ImageSets/Main/<split>.txt``.
        categories: known class names (default: every name found, sorted).
        skip_bad: skip and count bad objects/files instead of raising one report of all of them.
        keep_difficult: keep objects marked ``difficult``.
        image_dir: image folder (default ``root/JPEGImages``, else the XML's folder).
    """
    root = Path(root)
    ann_dir = root / "Annotations" if (root / "Annotations").is_dir() else root
    if split is not None:
        list_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"{list_file}: split list not found")
        files = [
            ann_dir / f"{line.split()[0]}.xml" for line in list_file.read_text().splitlines() if line.strip()
        ]
    else:
        files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise FileNotFoundError(f"{ann_dir}: no VOC .xml annotation files")
    img_dir = (
        Path(image_dir) if image_dir else (root / "JPEGImages" if (root / "JPEGImages").is_dir() else ann_dir)
    )
    log = IssueLog(str(ann_dir), skip_bad)
    counts: Counter = Counter()
    parsed = []
    for f in files:
        try:
            tree = ET.parse(f).getroot()
        except FileNotFoundError:
            log.add("bad_record", str(f), "annotation file listed in the split but not found")
            continue
        except ET.ParseError as err:
            line, col = err.position
            log.add("bad_record", f"{f}:{line}:{col}", f"broken XML: {err}")
            continue
        parsed.append((f, tree))
    names = (
        list(categories)
        if categories is not None
        else sorted({(_text(o, "name") or "") for _, t in parsed for o in t.iter("object")} - {""})
    )
    index = {n: i for i, n in enumerate(names)}
    records: list[ImageRecord] = []
    for f, tree in parsed:
        filename = _text(tree, "filename") or f"{f.stem}.jpg"
        image = img_dir / filename
        if not image.is_file():
            log.add("missing_image", str(f), f"image file {image} not found")
            continue
        size = tree.find("size")
        try:
            width = int(float(_text(size, "width")))  # type: ignore[arg-type]
            height = int(float(_text(size, "height")))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            log.add("bad_record", f"{f}: <size>", "expected <size><width>W</width><height>H</height></size>")
            continue
        boxes, labels, wheres = [], [], []
        for k, obj in enumerate(tree.iter("object")):
            where = f"{f}: object {k}"
            name = _text(obj, "name")
            if name not in index:
                log.add("unknown_category", where, f"name {name!r} is not one of: {', '.join(names)}")
                continue
            if not keep_difficult and (_text(obj, "difficult") or "0") == "1":
                counts["difficult"] += 1
                continue
            bnd = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(_text(bnd, t)) for t in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                log.add("bad_record", where, "expected <bndbox> with numeric xmin, ymin, xmax, ymax")
                continue
            boxes.append((xmin - 1, ymin - 1, xmax, ymax))
            labels.append(index[name])
            wheres.append(where)
        clipped, keep = check_boxes(np.array(boxes, np.float32), width, height, log=log, where=wheres)
        records.append(ImageRecord(image, width, height, clipped[keep], np.array(labels, np.int64)[keep],
                                   image_id=len(records), source=str(f)))  # fmt: skip
    counts.update(log.finish())
    return DetectionSet(records, names, dict(counts))


def write_voc(data: DetectionSet, root: str | Path) -> Path:
    """Write one ``Annotations/<stem>.xml`` per image (filename relative to the image's own folder)."""
    ann_dir = Path(root) / "Annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    for rec in data.records:
        top = ET.Element("annotation")
        ET.SubElement(top, "filename").text = Path(rec.path).name
        size = ET.SubElement(top, "size")
        for tag, v in (("width", rec.width), ("height", rec.height), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
        for box, label in zip(rec.boxes.tolist(), rec.labels.tolist()):
            obj = ET.SubElement(top, "object")
            ET.SubElement(obj, "name").text = data.categories[label]
            ET.SubElement(obj, "difficult").text = "0"
            bnd = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (box[0] + 1, box[1] + 1, box[2], box[3])):
                ET.SubElement(bnd, tag).text = f"{v:g}"
        ET.indent(top)
        ET.ElementTree(top).write(ann_dir / f"{Path(rec.path).stem}.xml", encoding="unicode")
    return ann_dir
