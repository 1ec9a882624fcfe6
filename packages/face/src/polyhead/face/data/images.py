"""Reading user images defensively: every problem becomes an :class:`ImageError` naming the file.

Handled rather than refused: grayscale (copied to three channels), 16-bit (scaled to 8-bit range),
RGBA / LA (the alpha channel is returned separately so a restored image can keep it), palette images,
and very large photos (decoded as 8-bit; callers work on face regions, never on a float copy of the
whole photo). Refused with a clear reason: missing, empty, undecodable, below ``min_side`` pixels, above
``max_pixels`` (a decompression-bomb guard, 200 MP by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image that cannot be used; ``reason`` is a short key used for skip counts."""

    def __init__(self, path: Path | str, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = str(path)
        self.reason = reason


@dataclass
class LoadedImage:
    """An RGB uint8 image, its alpha channel if it had one, and what was converted on the way."""

    path: Path
    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None  # (H, W) uint8
    notes: list[str]


def list_images(folder: Path | str) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name); a missing folder is a clear error."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: Path | str, *, min_side: int = 16, max_pixels: int = 200_000_000) -> LoadedImage:
    """Decode ``path`` into :class:`LoadedImage`; raises :class:`ImageError` for what cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "missing", "file not found")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty", "file is empty (0 bytes)")
    from PIL import Image

    # Read the header first (cheap) so that a huge or corrupt file is refused before decoding.
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception as err:  # PIL raises many types for undecodable data
        raise ImageError(path, "unreadable", f"not a readable image ({type(err).__name__}: {err})") from None
    if w * h > max_pixels:
        raise ImageError(path, "too_large", f"{w}x{h} has more than max_pixels={max_pixels} pixels")
    if min(w, h) < min_side:
        raise ImageError(path, "too_small", f"{w}x{h} is smaller than {min_side}x{min_side} pixels")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    notes: list[str] = []
    if raw is None:  # formats OpenCV lacks (e.g. palette GIF-like PNG variants): fall back to PIL
        try:
            with Image.open(path) as im:
                raw = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))[..., ::-1]
        except Exception as err:
            raise ImageError(path, "unreadable", f"could not decode ({type(err).__name__}: {err})") from None
    if raw.dtype == np.uint16:
        raw = (raw.astype(np.float32) / 257.0).round().astype(np.uint8)
        notes.append("16-bit converted to 8-bit")
    elif raw.dtype in (np.float32, np.float64):
        raw = (np.clip(raw, 0, 1) * 255).round().astype(np.uint8)
        notes.append("float image scaled to 8-bit")
    elif raw.dtype != np.uint8:
        raise ImageError(path, "unsupported", f"unsupported pixel type {raw.dtype}")
    alpha = None
    if raw.ndim == 2:
        rgb = np.repeat(raw[..., None], 3, axis=-1)
        notes.append("grayscale copied to 3 channels")
    elif raw.shape[2] == 2:  # gray + alpha
        rgb, alpha = np.repeat(raw[..., :1], 3, axis=-1), raw[..., 1]
        notes.append("grayscale+alpha: alpha kept aside")
    elif raw.shape[2] == 4:
        rgb, alpha = raw[..., 2::-1], raw[..., 3]
        notes.append("RGBA: alpha kept aside")
    elif raw.shape[2] == 3:
        rgb = raw[..., ::-1]
    else:
        raise ImageError(path, "unsupported", f"unsupported channel count {raw.shape[2]}")
    return LoadedImage(path, np.ascontiguousarray(rgb), alpha, notes)


def save_image(path: Path | str, rgb: np.ndarray, alpha: np.ndarray | None = None) -> Path:
    """Write an RGB(A) uint8 image; the format follows the suffix (alpha needs PNG/WebP/TIFF)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if alpha is not None:
        bgr = np.concatenate([bgr, alpha[..., None]], axis=-1)
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"could not write {path}")
    return path
