"""Reader for the Isharah-1000 release format, reporting every problem of a file at once.

Keypoints: a pickle ``{sample_id: {"keypoints": array[T, 86, C >= 2]}}`` (x, y[, confidence...]), read with
``polyhead.train.safety.restricted_load`` admitting only :data:`KEYPOINT_PICKLE_GLOBALS` (numpy arrays and
builtin containers), so a crafted file cannot run code; ``unsafe=True`` (``--data.unsafe_load true``) reads
a trusted legacy file that holds other objects with the plain ``pickle``. Annotations: one text file per split
with ``id|gloss`` lines (glosses separated by spaces; an optional ``id|gloss`` header line).

Only the samples an annotation file refers to are validated, so a bad array that no split uses does not
stop a run. Problems are collected over the whole file, each with the file and line (a line without
exactly one ``|``, an empty id or gloss, an id with no keypoints, a duplicate id) or the sample id (not a
dict with ``keypoints``, wrong shape, infinite values, no point observed in any frame), and raised together
as one :class:`DataError`; with ``skip_bad`` the bad samples are left out and counted by reason in a
:class:`DataReport` instead.
"""

from __future__ import annotations

import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.cslr.data.layout import NUM_POINTS
from polyhead.train.cli import PolyheadConfigError
from polyhead.train.safety import NUMPY_ARRAYS, UnsafeFileError, restricted_load

MAX_LISTED = 8  # problems spelled out in an error message; the rest are counted
# What an Isharah keypoint pickle may name: numpy arrays, dtypes, scalars, and containers that need a global.
KEYPOINT_PICKLE_GLOBALS = NUMPY_ARRAYS | {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
}


@dataclass(frozen=True)
class Sample:
    id: str
    keypoints: np.ndarray  # (T, 86, C) float32, NaN where undetected
    glosses: tuple[str, ...]


@dataclass(frozen=True)
class Problem:
    where: str  # "file: line N" or "file: sample 'id'"
    reason: str  # short key, counted in metrics.json (e.g. "unknown_id")
    detail: str
    line: int = 0  # annotation line, for ordering the report


@dataclass
class DataReport:
    """Problems found while reading, by reason; ``skipped`` counts what a ``skip_bad`` read left out."""

    problems: list[Problem] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def add(self, where: str, reason: str, detail: str, line: int = 0) -> None:
        self.problems.append(Problem(where, reason, detail, line))

    def summary(self, limit: int = MAX_LISTED) -> str:
        """One line: the first ``limit`` problems and how many more there are."""
        shown = "; ".join(f"{p.where}: {p.detail}" for p in self.problems[:limit])
        more = len(self.problems) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


class DataError(PolyheadConfigError, ValueError):
    """Bad input data; the message lists every problem found (one line), so the CLI exits with code 2."""

    def __init__(self, source: str, report: DataReport) -> None:
        n = len(report.problems)
        counts = ", ".join(f"{k} {v}" for k, v in Counter(p.reason for p in report.problems).most_common())
        super().__init__(
            f"{source}: {n} problem{'s' * (n != 1)} ({counts}): {report.summary()} "
            "(--data.skip_bad true skips these samples and counts them)"
        )
        self.report = report


def load_keypoints(path: str | Path, *, unsafe: bool = False) -> dict[str, Any]:
    """The keypoint pickle as ``{id: entry}`` with entries not yet validated (see :func:`keypoint_array`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable pickle, not a dict, or it names a global outside
            :data:`KEYPOINT_PICKLE_GLOBALS` (unless ``unsafe``); the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"keypoint pickle not found: {p}")
    if unsafe:
        with open(p, "rb") as f:
            try:
                raw = pickle.load(f)
            except Exception as err:  # a truncated file raises anything from EOFError to KeyError
                raise ValueError(f"{p}: not a readable pickle ({type(err).__name__}: {err})") from None
    else:
        try:
            raw = restricted_load(p, allowed=KEYPOINT_PICKLE_GLOBALS)
        except UnsafeFileError as err:
            raise ValueError(
                f"{p}: refused to load {err.forbidden}: a keypoint pickle holds only dicts, lists and numpy "
                "arrays, and loading this could run code (pass --data.unsafe_load true only for a file you trust)"
            ) from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{p}: expected a dict {{sample_id: {{'keypoints': array}}}}, got {type(raw).__name__}"
        )
    return {str(k): v for k, v in raw.items()}


def keypoint_array(entry: Any) -> tuple[np.ndarray | None, str, str]:
    """``(array, "", "")`` for a valid entry, else ``(None, reason, detail)``."""
    kp = entry.get("keypoints") if isinstance(entry, dict) else None
    if kp is None:
        return None, "bad_entry", "expected a dict with a 'keypoints' array"
    try:
        kp = np.asarray(kp, dtype=np.float32)
    except (TypeError, ValueError) as err:
        return None, "bad_array", f"keypoints are not numeric ({err})"
    if kp.ndim != 3 or kp.shape[1] != NUM_POINTS or kp.shape[2] < 2 or kp.shape[0] == 0:
        return None, "bad_shape", f"keypoints must be (T > 0, {NUM_POINTS}, >= 2), got {kp.shape}"
    xy = kp[..., :2]
    if np.isinf(xy).any():
        return None, "non_finite", "keypoints hold infinite values (NaN marks an undetected point)"
    if np.isnan(xy).all():
        return None, "all_missing", f"no point observed in any of its {kp.shape[0]} frames"
    return kp, "", ""


def read_annotations(path: str | Path, report: DataReport) -> list[tuple[int, str, tuple[str, ...]]]:
    """``[(line, id, glosses), ...]`` from an ``id|gloss`` file; malformed lines go to ``report``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"annotation file not found: {p}")
    rows = []
    seen: dict[str, int] = {}
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            where = f"{p}: line {n}"
            parts = line.split("|")
            if len(parts) != 2:
                report.add(where, "malformed_line", f"expected 'id|gloss' with one '|', got {line!r}", n)
                continue
            sid, gloss = parts[0].strip(), parts[1].strip()
            if n == 1 and sid.lower() == "id" and gloss.lower() == "gloss":
                continue
            if not sid:
                report.add(where, "empty_id", "empty id", n)
            elif not gloss:
                report.add(where, "empty_gloss", f"empty gloss for id {sid!r}", n)
            elif sid in seen:
                report.add(where, "duplicate_id", f"id {sid!r} already annotated on line {seen[sid]}", n)
            else:
                seen[sid] = n
                rows.append((n, sid, tuple(gloss.split())))
    return rows


def load_split(
    keypoints: str | Path | dict[str, Any],
    annotations: str | Path,
    *,
    skip_bad: bool = False,
    report: DataReport | None = None,
) -> list[Sample]:
    """The samples of one annotation file, validated; every problem of the file reported at once.

    Raises:
        DataError: any problem, unless ``skip_bad`` (then the bad lines/samples are counted in
            ``report.skipped`` by reason and left out).
    """
    kp = keypoints if isinstance(keypoints, dict) else load_keypoints(keypoints)
    local = DataReport()
    out = []
    for n, sid, glosses in read_annotations(annotations, local):
        if sid not in kp:
            local.add(
                f"{annotations}: line {n}", "unknown_id", f"unknown id {sid!r} (not in the keypoint file)", n
            )
            continue
        arr, reason, detail = keypoint_array(kp[sid])
        if arr is None:
            local.add(f"{annotations}: line {n}: sample {sid!r}", reason, detail, n)
            continue
        out.append(Sample(sid, arr, glosses))
    local.problems.sort(key=lambda p: p.line)
    if local.problems and not skip_bad:
        raise DataError(str(annotations), local)
    if report is not None:
        report.problems += local.problems
        report.skipped.update(p.reason for p in local.problems)
    return out


def load_unlabeled(
    keypoints: str | Path | dict[str, Any], *, skip_bad: bool = False, report: DataReport | None = None
) -> list[Sample]:
    """Every sample of a keypoint pickle (for ``predict``), validated as :func:`load_split` does."""
    kp = keypoints if isinstance(keypoints, dict) else load_keypoints(keypoints)
    source = "keypoints" if isinstance(keypoints, dict) else str(keypoints)
    local = DataReport()
    out = []
    for sid, entry in kp.items():
        arr, reason, detail = keypoint_array(entry)
        if arr is None:
            local.add(f"{source}: sample {sid!r}", reason, detail)
        else:
            out.append(Sample(sid, arr, ()))
    if local.problems and not skip_bad:
        raise DataError(source, local)
    if report is not None:
        report.problems += local.problems
        report.skipped.update(p.reason for p in local.problems)
    return out


def write_release(samples: list[Sample], pickle_path: str | Path, annotation_path: str | Path) -> None:
    """Write samples in the release format (used for fixtures and generated data)."""
    with open(pickle_path, "wb") as f:
        pickle.dump({s.id: {"keypoints": s.keypoints} for s in samples}, f)
    with open(annotation_path, "w", encoding="utf-8") as f:
        f.write("id|gloss\n")
        for s in samples:
            f.write(f"{s.id}|{' '.join(s.glosses)}\n")
