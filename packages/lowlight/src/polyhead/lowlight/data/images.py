"""Image files of any size and mode -> ``(H, W, 3)`` uint8 RGB arrays.

PIL opens the file; the conversion is explicit per mode so that nothing is silently truncated:

- ``RGBA`` / ``LA`` / ``PA`` / palette with transparency: alpha-composited over black (a transparent pixel
  carries no light);
- ``L`` / ``1``: grey replicated to three channels;
- 16-bit (``I;16*``) and 32-bit integer (``I``) greyscale: scaled by the bit depth's maximum (65535 for
  16-bit files, whose values PIL keeps in full), not clipped at 255;
- ``F`` (float) greyscale: assumed in [0, 1] when its maximum is <= 1, else scaled by the maximum;
- ``CMYK`` / ``YCbCr`` / ``LAB`` / ``HSV`` and 48-bit RGB: PIL's own conversion to RGB.

EXIF orientation is not applied: dataset boxes are annotated on the stored pixel grid, as torchvision's
``read_image`` and pycocotools assume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to ``(H, W, 3)`` uint8 RGB."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        rgb = rgba[..., :3] * (rgba[..., 3:4] / 255.0)
        return np.rint(rgb).astype(np.uint8)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        # PIL reads 16-bit files as "I;16*" or as "I" with values up to 65535.
        peak = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if arr.max(initial=0) > 65535:
            peak = float(arr.max())
        grey = np.rint(np.clip(arr / peak, 0, 1) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        peak = max(1.0, float(np.nanmax(arr, initial=0)))
        grey = np.rint(np.clip(np.nan_to_num(arr) / peak, 0, 1) * 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; errors name the file."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb_array(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    with Image.open(path) as img:
        return img.size


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def list_images(folder: str | Path) -> list[Path]:
    """Image files in a folder (sorted, recursive) or the file itself."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such file or directory")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
