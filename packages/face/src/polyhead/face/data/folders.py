"""Readers for face datasets on disk: FFHQ-style folders and paired LQ/HQ folders.

- FFHQ-style: a folder of aligned face images (any size, any of :data:`IMAGE_SUFFIXES`), resized to the
  model resolution (area interpolation), e.g. ``ffhq/images1024x1024/00000.png`` flattened or not
  (``recursive=True`` walks sub-folders, as FFHQ ships in 1000-image folders).
- Paired: CelebA-Test style ``lq/`` and ``hq/`` folders whose files are matched by file stem
  (``00001.png`` in both, or ``00001.jpg`` against ``00001.png``).

Every file is validated by :func:`polyhead.face.data.images.load_image`; with ``skip_bad`` a bad file is
skipped and counted by reason, otherwise the first bad file raises an error naming it. The decoded,
resized faces are cached as one ``uint8`` array per (folder, file list, resolution).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from polyhead.face.data.images import IMAGE_SUFFIXES, ImageError, list_images, load_image


@dataclass
class FaceArray:
    """Faces ``(N, R, R, 3)`` uint8 with their names and the files skipped, by reason."""

    images: np.ndarray
    names: list[str]
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[str] = field(default_factory=list)


def _files(folder: Path, recursive: bool) -> list[Path]:
    if not recursive:
        return list_images(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a directory")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _to_resolution(rgb: np.ndarray, resolution: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h != w:  # aligned faces are square; a non-square file is centre-cropped, not stretched
        s = min(h, w)
        rgb = rgb[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if rgb.shape[0] == resolution:
        return rgb
    interp = cv2.INTER_AREA if rgb.shape[0] > resolution else cv2.INTER_CUBIC
    return cv2.resize(rgb, (resolution, resolution), interpolation=interp)


def _cache_key(files: list[Path], resolution: int) -> str:
    h = hashlib.sha256(str(resolution).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_faces(
    files: list[Path],
    resolution: int,
    *,
    skip_bad: bool = False,
    cache_dir: Path | str | None = None,
    min_side: int = 16,
) -> FaceArray:
    """Decode, centre-crop to square and resize ``files`` to ``resolution``.

    Raises:
        ImageError: the first bad file when ``skip_bad`` is False.
        ValueError: no usable image at all.
    """
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"faces-{_cache_key(files, resolution)}"
        if (cache / "images.npy").is_file():
            meta = json.loads((cache / "meta.json").read_text())
            return FaceArray(
                np.load(cache / "images.npy"),
                meta["names"],
                Counter(meta["skipped"]),
                meta["skipped_files"],
            )
    out: list[np.ndarray] = []
    names: list[str] = []
    skipped: Counter[str] = Counter()
    bad: list[str] = []
    for f in files:
        try:
            img = load_image(f, min_side=min_side)
        except ImageError as err:
            if not skip_bad:
                raise
            skipped[err.reason] += 1
            bad.append(str(err))
            continue
        out.append(_to_resolution(img.rgb, resolution))
        names.append(f.name)
    if not out:
        raise ValueError(f"no usable image among {len(files)} file(s); skipped by reason: {dict(skipped)}")
    arr = FaceArray(np.stack(out), names, skipped, bad)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "images.npy", arr.images)
        meta = {"names": names, "skipped": dict(skipped), "skipped_files": bad}
        (cache / "meta.json").write_text(json.dumps(meta))
    return arr


def read_face_folder(
    folder: Path | str,
    resolution: int,
    *,
    recursive: bool = True,
    skip_bad: bool = False,
    cache_dir: Path | str | None = None,
) -> FaceArray:
    """An FFHQ-style folder of aligned faces at ``resolution``."""
    files = _files(Path(folder), recursive)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return read_faces(files, resolution, skip_bad=skip_bad, cache_dir=cache_dir)


def match_pairs(
    lq_dir: Path | str, hq_dir: Path | str
) -> tuple[list[Path], list[Path], dict[str, list[str]]]:
    """Match LQ and HQ files by stem; returns the matched lists and the unmatched names per side."""
    lq = {p.stem: p for p in list_images(lq_dir)}
    hq = {p.stem: p for p in list_images(hq_dir)}
    common = sorted(lq.keys() & hq.keys())
    unmatched = {"lq_only": sorted(lq.keys() - hq.keys()), "hq_only": sorted(hq.keys() - lq.keys())}
    if not common:
        raise ValueError(
            f"no file name of {lq_dir} matches one in {hq_dir} (matched by name without suffix; "
            f"{len(lq)} LQ and {len(hq)} HQ files)"
        )
    return [lq[s] for s in common], [hq[s] for s in common], unmatched


def read_paired_folders(
    lq_dir: Path | str,
    hq_dir: Path | str,
    resolution: int,
    *,
    skip_bad: bool = False,
    cache_dir: Path | str | None = None,
) -> tuple[FaceArray, FaceArray, dict[str, list[str]]]:
    """Paired LQ/HQ folders at ``resolution``; a pair with a bad side is dropped (counted) as a whole."""
    lq_files, hq_files, unmatched = match_pairs(lq_dir, hq_dir)
    keep_lq: list[Path] = []
    keep_hq: list[Path] = []
    skipped: Counter[str] = Counter()
    bad: list[str] = []
    for a, b in zip(lq_files, hq_files, strict=True):
        try:
            for f in (a, b):
                load_image(f)
        except ImageError as err:
            if not skip_bad:
                raise
            skipped[err.reason] += 1
            bad.append(str(err))
            continue
        keep_lq.append(a)
        keep_hq.append(b)
    if not keep_lq:
        raise ValueError(f"no usable pair in {lq_dir} / {hq_dir}; skipped by reason: {dict(skipped)}")
    lq = read_faces(keep_lq, resolution, cache_dir=cache_dir)
    hq = read_faces(keep_hq, resolution, cache_dir=cache_dir)
    lq.skipped, lq.skipped_files = skipped, bad
    return lq, hq, unmatched
