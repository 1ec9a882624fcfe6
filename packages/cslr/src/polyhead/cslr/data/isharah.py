"""Reader for the Isharah-1000 release format.

Keypoints: a pickle ``{sample_id: {"keypoints": array[T, 86, C >= 2]}}`` (x, y[, confidence...]).
Annotations: one text file per split with ``id|gloss`` lines (glosses separated by spaces; an optional
``id|gloss`` header line). Problems are reported with the file and line: an unknown id (no keypoints), an
empty gloss, or a line without exactly one ``|``. Bad keypoint arrays are reported with the sample id.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyhead.cslr.data.layout import NUM_POINTS


class AnnotationError(ValueError):
    """A malformed line in an annotation file."""


@dataclass(frozen=True)
class Sample:
    id: str
    keypoints: np.ndarray  # (T, 86, C) float32, NaN where undetected
    glosses: tuple[str, ...]


def load_keypoints(path: str | Path) -> dict[str, np.ndarray]:
    """The keypoint pickle as ``{id: (T, 86, C) float32}``; validates every entry."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"keypoint pickle not found: {p}")
    with open(p, "rb") as f:
        try:
            raw = pickle.load(f)
        except Exception as err:
            raise ValueError(f"{p}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{p}: expected a dict {{sample_id: {{'keypoints': array}}}}, got {type(raw).__name__}"
        )
    out = {}
    for sid, entry in raw.items():
        kp = entry.get("keypoints") if isinstance(entry, dict) else None
        if kp is None:
            raise ValueError(f"{p}: sample {sid!r}: expected a dict with a 'keypoints' array")
        kp = np.asarray(kp, dtype=np.float32)
        if kp.ndim != 3 or kp.shape[1] != NUM_POINTS or kp.shape[2] < 2 or kp.shape[0] == 0:
            raise ValueError(
                f"{p}: sample {sid!r}: keypoints must be (T > 0, {NUM_POINTS}, >= 2), got {kp.shape}"
            )
        out[str(sid)] = kp
    return out


def read_annotations(
    path: str | Path, known_ids: set[str] | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """``[(id, glosses), ...]`` from an ``id|gloss`` file; errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file not found: {p}")
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 2:
                raise AnnotationError(f"{p}: line {n}: expected 'id|gloss' with one '|', got {line!r}")
            sid, gloss = parts[0].strip(), parts[1].strip()
            if n == 1 and sid.lower() == "id" and gloss.lower() == "gloss":
                continue
            if not sid:
                raise AnnotationError(f"{p}: line {n}: empty id")
            if not gloss:
                raise AnnotationError(f"{p}: line {n}: empty gloss for id {sid!r}")
            if known_ids is not None and sid not in known_ids:
                raise AnnotationError(f"{p}: line {n}: unknown id {sid!r} (not in the keypoint file)")
            rows.append((sid, tuple(gloss.split())))
    return rows


def load_split(keypoints: str | Path | dict[str, np.ndarray], annotations: str | Path) -> list[Sample]:
    kp = keypoints if isinstance(keypoints, dict) else load_keypoints(keypoints)
    return [Sample(sid, kp[sid], g) for sid, g in read_annotations(annotations, set(kp))]


def write_release(samples: list[Sample], pickle_path: str | Path, annotation_path: str | Path) -> None:
    """Write samples in the release format (used for fixtures and generated data)."""
    with open(pickle_path, "wb") as f:
        pickle.dump({s.id: {"keypoints": s.keypoints} for s in samples}, f)
    with open(annotation_path, "w", encoding="utf-8") as f:
        f.write("id|gloss\n")
        for s in samples:
            f.write(f"{s.id}|{' '.join(s.glosses)}\n")
