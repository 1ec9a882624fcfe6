"""Checks of annotation records, and one report of every problem of a file (or a counted skip).

Rules (each problem is reported with the annotation file, the record and what was expected):

- ``missing_image``: the image file does not exist;
- ``unknown_category``: a box's category is not among the dataset's categories;
- ``empty_box``: zero or negative width or height;
- ``box_outside``: the box reaches more than ``tolerance`` pixels outside the image (boxes that overhang by
  less are clipped, as annotation tools round to the pixel grid);
- ``bad_record``: a record that cannot be parsed (wrong field count, non-numbers, broken JSON/XML).

With ``skip_bad=False`` the reader collects every problem and raises :class:`AnnotationError` listing them
all; with ``skip_bad=True`` it drops the offending box (or image, or file) and counts it by reason, and the
counts reach ``metrics.json`` through the datamodule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

MAX_LISTED = 20


class AnnotationError(ValueError):
    """Every problem found in one annotation source, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        super().__init__(
            f"{source}: {len(problems)} invalid annotation(s) (pass skip_bad to skip and count them):\n  "
            + "\n  ".join(shown)
            + more
        )


@dataclass
class IssueLog:
    """Collects problems while reading; ``finish`` raises them all or returns the skip counts."""

    source: str
    skip_bad: bool
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, where: str, message: str) -> None:
        self.problems.append(f"{where}: {reason}: {message}")
        self.counts[reason] += 1

    def finish(self) -> dict[str, int]:
        if self.problems and not self.skip_bad:
            raise AnnotationError(self.source, self.problems)
        return dict(self.counts)


def check_boxes(
    boxes: np.ndarray,
    width: int,
    height: int,
    *,
    log: IssueLog,
    where: list[str],
    tolerance: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``(N, 4)`` xyxy boxes against the image size.

    Returns:
        ``(clipped boxes, keep mask)``: good boxes clipped to the image; bad ones logged (``where[i]`` names
        box ``i``) and marked ``False``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    finite = np.isfinite(boxes).all(axis=1)
    empty = ~finite | (w <= 0) | (h <= 0)
    outside = (
        (boxes[:, 0] < -tolerance)
        | (boxes[:, 1] < -tolerance)
        | (boxes[:, 2] > width + tolerance)
        | (boxes[:, 3] > height + tolerance)
    ) & ~empty
    for i in np.flatnonzero(empty):
        log.add("empty_box", where[i], f"box {boxes[i].tolist()} (x1,y1,x2,y2) has width {w[i]:g} and height "
                f"{h[i]:g}; expected both > 0")  # fmt: skip
    for i in np.flatnonzero(outside):
        log.add("box_outside", where[i], f"box {boxes[i].tolist()} (x1,y1,x2,y2) lies outside the "
                f"{width}x{height} image; expected 0 <= x <= {width}, 0 <= y <= {height}")  # fmt: skip
    keep = ~(empty | outside)
    clipped = boxes.copy()
    np.clip(clipped[:, 0::2], 0, width, out=clipped[:, 0::2])
    np.clip(clipped[:, 1::2], 0, height, out=clipped[:, 1::2])
    return clipped, keep


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    total: Counter = Counter()
    for c in counts:
        total.update(c)
    return dict(total)
