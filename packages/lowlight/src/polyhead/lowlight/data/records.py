"""The in-memory annotation model every reader produces and every writer consumes.

A dataset is a list of :class:`ImageRecord` (one image file, its size and its boxes in absolute pixel
``x1, y1, x2, y2`` coordinates with category indices into ``categories``) plus the ordered category names.
Readers check every record against the rules in :mod:`polyhead.lowlight.data.validation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageRecord:
    """One annotated image.

    Attributes:
        path: the image file.
        width, height: image size in pixels (as annotated; checked against the file when it is opened).
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in pixels.
        labels: ``(N,)`` int64 indices into the dataset's categories.
        image_id: the id in the source annotation (COCO ``id``; a running index for other formats).
        source: where the record came from (annotation file and record), for messages.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    image_id: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.boxes) != len(self.labels):
            raise ValueError(
                f"{self.source or self.path}: {len(self.boxes)} boxes but {len(self.labels)} labels"
            )


@dataclass
class DetectionSet:
    """Images with boxes and the ordered category names (index = label)."""

    records: list[ImageRecord]
    categories: list[str]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(r.boxes) for r in self.records))
