"""Procedurally rendered detection scenes: the embedded default data (no download needed).

Each scene is a textured background (smooth noise, a lighting gradient and a random pattern of stripes,
checks or bricks) with clutter (lines, arcs, low-contrast blobs that belong to no class) and 1-6 objects
of six classes (disk, ring, box, triangle, cross, star) at random positions, scales (about 8-60% of the
image side), rotations, aspect ratios, colours and textures (solid, stripes, checks, dots, noise). Objects
may occlude each other; a placement that would hide more than half of an earlier object is redrawn, and
every box is the tight box of the object's visible pixels (as COCO annotates).

Rendering is vectorised: each object is one boolean mask computed on its own bounding patch from rotated
coordinates, composited with ``np.where``; the visible boxes come from one pass over the label map.

:func:`generate_scenes` writes the normal-light images, their darkened copies (through
:class:`~polyhead.lowlight.data.synthesis.LowLightSynthesizer`) and one COCO JSON per split whose
``file_name`` is relative to either image root, plus the synthesiser's per-image parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from polyhead.lowlight.data.coco import write_coco
from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.synthesis import LowLightSynthesizer

GENERATOR_VERSION = 1
CLASSES = ("disk", "ring", "box", "triangle", "cross", "star")


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Mask of class ``kind`` on rotated unit coordinates ``u, v`` (the object spans [-1, 1])."""
    r2 = u * u + v * v
    if kind == 0:  # disk (always round: elongated blobs are clutter)
        return r2 <= 1
    if kind == 1:  # ring
        return (r2 <= 1) & (r2 >= 0.35)
    if kind == 2:  # box
        return (np.abs(u) <= 1) & (np.abs(v) <= aspect)
    if kind == 3:  # triangle inscribed in the unit circle: inradius 0.5 along the three edge normals
        normals = np.array([[0.0, -1.0], [0.866, 0.5], [-0.866, 0.5]], np.float32)
        d = u[..., None] * normals[:, 0] + v[..., None] * normals[:, 1]
        return (d <= 0.5).all(axis=-1)
    if kind == 4:  # cross
        w = 0.22 + 0.15 * (aspect - 0.5)
        return ((np.abs(u) <= w) & (np.abs(v) <= 1)) | ((np.abs(v) <= w) & (np.abs(u) <= 1))
    theta = np.arctan2(v, u)  # 5-pointed star
    return np.sqrt(r2) <= 0.42 + 0.58 * ((np.cos(5 * theta) + 1) / 2) ** 2


def _texture(rng: np.random.Generator, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` float texture around colour ``base``: solid, stripes, checks, dots or noise."""
    kind = rng.integers(5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    other = np.clip(base + rng.uniform(-0.45, 0.45, 3), 0, 1).astype(np.float32)
    if kind == 0:
        t = np.zeros((h, w), np.float32)
    elif kind == 1:
        a = rng.uniform(0, np.pi)
        t = (np.sin((xx * np.cos(a) + yy * np.sin(a)) * rng.uniform(0.5, 1.4)) > 0).astype(np.float32)
    elif kind == 2:
        p = rng.integers(3, 8)
        t = (((xx // p) + (yy // p)) % 2).astype(np.float32)
    elif kind == 3:
        p = rng.integers(4, 8)
        t = (((xx % p) - p / 2) ** 2 + ((yy % p) - p / 2) ** 2 < (p / 3.5) ** 2).astype(np.float32)
    else:
        t = rng.random((h, w), dtype=np.float32)
    return base * (1 - t[..., None]) + other * t[..., None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    c0, c1 = rng.uniform(0.25, 0.9, 3).astype(np.float32), rng.uniform(0.25, 0.9, 3).astype(np.float32)
    g = rng.uniform(-1, 1, 2)
    ramp = np.clip(0.5 + 0.5 * (g[0] * (xx - 0.5) + g[1] * (yy - 0.5)) * 2, 0, 1)
    img[:] = (c0 * (1 - ramp[..., None]) + c1 * ramp[..., None]).astype(np.float32)
    # smooth noise: a few random low-frequency sinusoids per channel
    freqs = rng.uniform(1, 6, (4, 2)).astype(np.float32) * np.float32(2 * np.pi)
    amp = rng.uniform(-0.08, 0.08, (4, 3)).astype(np.float32)
    for f, a in zip(freqs, amp):
        img += np.sin(f[0] * xx + f[1] * yy + np.float32(rng.uniform(0, 2 * np.pi)))[..., None] * a
    pattern = rng.integers(4)
    if pattern:
        px = xx * size
        py = yy * size
        p = rng.integers(6, 20)
        if pattern == 1:
            a = rng.uniform(0, np.pi)
            t = np.sin((px * np.cos(a) + py * np.sin(a)) * 2 * np.pi / p) > 0
        elif pattern == 2:
            t = ((px // p) + (py // p)) % 2 == 1
        else:  # bricks: rows of p/2 px, every other row shifted by p/2
            row = py // (p / 2)
            t = (((px + (row % 2) * p / 2) % p) < 1.5) | ((py % (p / 2)) < 1.5)
        img += rng.uniform(-0.2, 0.2, 3).astype(np.float32) * t[..., None]
    return img


def _clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(2, 7)):
        kind = rng.integers(3)
        col = rng.uniform(0.1, 0.95, 3).astype(np.float32)
        if kind == 0:  # a thick line segment
            p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
            d = p1 - p0
            t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
            dist = np.hypot(xx - p0[0] - t * d[0], yy - p0[1] - t * d[1])
            m = dist <= rng.uniform(0.8, 2.5)
        elif kind == 1:  # an arc (part of a circle outline: not a ring)
            c, rad = rng.uniform(0, size, 2), rng.uniform(6, size / 3)
            ang = np.arctan2(yy - c[1], xx - c[0])
            a0 = rng.uniform(-np.pi, np.pi)
            m = (np.abs(np.hypot(xx - c[0], yy - c[1]) - rad) < 1.5) & (np.cos(ang - a0) > 0.3)
        else:  # a soft low-contrast blob
            c, rad = rng.uniform(0, size, 2), rng.uniform(4, size / 4)
            m = (xx - c[0]) ** 2 / rad**2 + (yy - c[1]) ** 2 / (rad * rng.uniform(0.25, 0.55)) ** 2 <= 1
            col = np.clip(img[m].mean(axis=0) + rng.uniform(-0.15, 0.15, 3), 0, 1) if m.any() else col
        img[m] = col


def render_scene(
    rng: np.random.Generator, size: int, *, max_objects: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: ``(image (size, size, 3) uint8, boxes (N, 4) xyxy float32, labels (N,) int64)``."""
    img = _background(rng, size)
    _clutter(rng, img)
    label_map = np.zeros((size, size), np.int32)  # 0 = background, k = object k
    areas, kinds = [0], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(8):
            kind = int(rng.integers(len(CLASSES)))
            extent = float(np.exp(rng.uniform(np.log(0.08 * size), np.log(0.6 * size))))
            half = extent / 2
            cx, cy = rng.uniform(half * 0.6, size - half * 0.6, 2)
            x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
            x1, y1 = int(min(size, np.ceil(cx + half))), int(min(size, np.ceil(cy + half)))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            a = rng.uniform(0, 2 * np.pi)
            dx, dy = (xx + 0.5 - cx) / half, (yy + 0.5 - cy) / half
            u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
            mask = _shape_mask(kind, u, v, float(rng.uniform(0.5, 1.0)))
            if mask.sum() < 12:
                continue
            # Would this hide more than half of an earlier object?
            patch = label_map[y0:y1, x0:x1]
            covered = np.bincount(patch[mask], minlength=len(areas))
            visible = np.bincount(label_map.ravel(), minlength=len(areas))
            if len(areas) > 1 and ((visible[1:] - covered[1:]) < 0.5 * np.asarray(areas[1:])).any():
                continue
            base = rng.uniform(0.05, 0.95, 3).astype(np.float32)
            tex = _texture(rng, y1 - y0, x1 - x0, base)
            img[y0:y1, x0:x1] = np.where(mask[..., None], tex, img[y0:y1, x0:x1])
            patch[mask] = len(areas)
            areas.append(int(mask.sum()))
            kinds.append(kind)
            break
    n = len(kinds)
    ys, xs = np.nonzero(label_map)
    ids = label_map[ys, xs] - 1
    boxes = np.zeros((n, 4), np.float32)
    boxes[:, 0], boxes[:, 1] = size, size
    np.minimum.at(boxes[:, 0], ids, xs)
    np.minimum.at(boxes[:, 1], ids, ys)
    np.maximum.at(boxes[:, 2], ids, xs + 1)
    np.maximum.at(boxes[:, 3], ids, ys + 1)
    keep = np.bincount(ids, minlength=n) > 0
    image = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return image, boxes[keep], np.asarray(kinds, np.int64)[keep]


def scene_settings_hash(settings: dict) -> str:
    blob = json.dumps({"version": GENERATOR_VERSION, **settings}, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def generate_scenes(
    out_dir: str | Path,
    *,
    splits: dict[str, int],
    image_size: int = 128,
    seed: int = 0,
    synthesizer: LowLightSynthesizer | None = None,
) -> Path:
    """Render, darken and write the scenes (skipped when ``out_dir`` already holds this exact set).

    Layout: ``normal/images/<split>/<i>.png``, ``dark/images/<split>/<i>.png``, ``annotations/<split>.json``
    (COCO; ``file_name`` relative to ``normal/`` or ``dark/``), ``synthesis.jsonl`` (the parameters of every
    dark image) and ``settings.json``.
    """
    out = Path(out_dir)
    synth = synthesizer or LowLightSynthesizer(seed=seed)
    settings = {"splits": splits, "image_size": image_size, "seed": seed, "synthesizer": synth.config()}
    marker = out / "settings.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return out
    # Written into a private folder and renamed into place, so that processes sharing a cache (several runs
    # started at once) never read a half-written set.
    final, out = out, out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(out, ignore_errors=True)
    log_lines = []
    for s_idx, (split, count) in enumerate(splits.items()):
        for sub in ("normal", "dark"):
            (out / sub / "images" / split).mkdir(parents=True, exist_ok=True)
        records = []
        for i in range(count):
            rng = np.random.default_rng([seed, s_idx, i])
            image, boxes, labels = render_scene(rng, image_size)
            name = f"images/{split}/{i:06d}.png"
            Image.fromarray(image).save(out / "normal" / name, compress_level=1)
            index = s_idx * 1_000_000 + i
            dark, params = synth(image, index)
            Image.fromarray(dark).save(out / "dark" / name, compress_level=1)
            log_lines.append(json.dumps({"file_name": name, **params}))
            records.append(
                ImageRecord(out / "normal" / name, image_size, image_size, boxes, labels, image_id=i + 1)
            )
        write_coco(
            DetectionSet(records, list(CLASSES)), out / "annotations" / f"{split}.json", out / "normal"
        )
    (out / "synthesis.jsonl").write_text("\n".join(log_lines) + "\n")
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    if final.exists():  # another process finished first (same settings, same content), or an older set
        if marker.is_file() and json.loads(marker.read_text()) == settings:
            shutil.rmtree(out, ignore_errors=True)
            return final
        shutil.rmtree(final)
    try:
        os.rename(out, final)
    except OSError:  # lost a race to an identical set
        shutil.rmtree(out, ignore_errors=True)
    return final
