"""The 86-keypoint layout of Isharah-1000 (SignEval 2025): right hand 21, left hand 21, lips 19, body 25.

Indices into the ``(T, 86, C)`` keypoint arrays, and the MediaPipe landmark each point comes from:
hands are MediaPipe Hands 0-20 (wrist first), the body is MediaPipe Pose 0-24 (nose first), the lips
are points of MediaPipe FaceMesh's outer lip contour. The exact 19 lip indices of the release are not
published in the material available here; ``LIPS_MEDIAPIPE`` is the outer-lip ring of ``FACEMESH_LIPS``
without its last point (185), in contour order. Check it against the release before mixing keypoints
extracted by polyhead with the official files.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 86
RIGHT_HAND = slice(0, 21)
LEFT_HAND = slice(21, 42)
LIPS = slice(42, 61)
BODY = slice(61, 86)
PARTS: dict[str, slice] = {"right_hand": RIGHT_HAND, "left_hand": LEFT_HAND, "lips": LIPS, "body": BODY}

HAND_MEDIAPIPE = list(range(21))
LIPS_MEDIAPIPE = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40]
BODY_MEDIAPIPE = list(range(25))

# MediaPipe Hands skeleton (bones as (parent, child) within a hand).
HAND_BONES: list[tuple[int, int]] = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
    (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20),
]  # fmt: skip


def bones() -> np.ndarray:
    """All bones of the 86-point layout as ``(n, 2)`` global indices (both hands, lip ring, upper body)."""
    out = [(a + s.start, b + s.start) for s in (RIGHT_HAND, LEFT_HAND) for a, b in HAND_BONES]
    lip = list(range(LIPS.start, LIPS.stop))
    out += list(zip(lip, lip[1:] + lip[:1]))
    # Pose: shoulders, arms, hips (MediaPipe Pose 11-24 connections).
    pose = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24)]
    out += [(a + BODY.start, b + BODY.start) for a, b in pose]
    return np.asarray(out, dtype=np.int64)
