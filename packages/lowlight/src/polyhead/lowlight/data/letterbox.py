"""Letterboxing: any image -> a square ``size x size`` canvas (long side scaled to ``size``, black padding).

Black padding is "no light", the right filler for dark scenes. Boxes scale by the same factor and
predictions map back to the original pixels by dividing by it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """``(H, W, 3)`` uint8 -> ``((size, size, 3)`` uint8 with the image at the top-left, scale)``."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        image = np.asarray(
            Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=None)
        )
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = image
    return canvas, scale
