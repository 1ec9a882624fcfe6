"""Keypoint extraction: videos (MediaPipe Holistic) or ``.pose`` files -> the 86-point Isharah layout.

``polyhead-cslr extract INPUT [INPUT ...] OUT`` (needs ``polyhead-cslr[extract]``: mediapipe 0.10.21, whose
Holistic models ship inside the wheel, and pose-format) walks the inputs (files or folders, recursively),
and for every video (``.mp4 .avi .mov .mkv .webm .mpg .mpeg .m4v``), image (one-frame clip) or ``.pose``
file writes ``OUT/keypoints/<id>.npy`` with shape ``(T, 86, 3)``: pixel ``x, y`` and a per-point
confidence (the Pose visibility for body points, 1 for detected hand and lip points), NaN coordinates and
confidence 0 where a part was not detected. Files are processed in parallel worker processes (one Holistic
graph each, ``model_complexity=1`` as in the Isharah reference extraction) with a progress bar.

The run is resumable: ``OUT/status.jsonl`` gets one line per finished file and a re-run skips files already
finished (``ok``, ``damaged`` or ``no_person``); unreadable or empty files are retried. A video the decoder
complains about (FFmpeg's messages on stderr, e.g. ``ac-tex damaged`` or ``overread``, captured per file) or
that yields fewer frames than its container declares (a truncated file) is ``damaged``: its decoded frames
are kept and the message says what was wrong. The summary gives the frames extracted per second. Problems are reported per file
and never stop the batch. At the end ``OUT/keypoints.pkl`` holds every extracted sample in the release
format (``{id: {"keypoints": array}}``), ready for ``--data.keypoints`` or ``predict``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from polyhead.cslr.data.layout import (
    BODY,
    BODY_MEDIAPIPE,
    HAND_MEDIAPIPE,
    LEFT_HAND,
    LIPS,
    LIPS_MEDIAPIPE,
    NUM_POINTS,
    RIGHT_HAND,
)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
POSE_SUFFIXES = {".pose"}
DONE = {"ok", "damaged", "no_person"}
KEPT = {"ok", "damaged"}  # statuses whose keypoints are written
# FFmpeg (inside OpenCV) logs decoder problems as "[codec @ 0x55e6...] message" on stderr.
_FFMPEG_LINE = re.compile(r"^\[([\w,]+) @ 0x[0-9a-f]+\] (.*)$")


@dataclass
class FileResult:
    path: str
    id: str
    status: str  # ok | damaged | no_person | empty | unreadable | error
    frames: int = 0
    detected_frames: int = 0
    message: str = ""


def find_inputs(inputs: list[Path]) -> list[tuple[str, Path]]:
    """``[(sample id, file)]`` for every supported file under the inputs; ids are file stems.

    Raises ``FileNotFoundError`` for a missing input and ``ValueError`` when two files share a stem.
    """
    suffixes = VIDEO_SUFFIXES | IMAGE_SUFFIXES | POSE_SUFFIXES
    found: dict[str, Path] = {}
    for inp in inputs:
        if not inp.exists():
            raise FileNotFoundError(f"extract: no such file or directory: {inp}")
        files = sorted(inp.rglob("*")) if inp.is_dir() else [inp]
        for f in files:
            if f.is_file() and f.suffix.lower() in suffixes:
                if f.stem in found and found[f.stem] != f:
                    raise ValueError(
                        f"extract: two inputs give the sample id {f.stem!r}: {found[f.stem]} and {f}"
                    )
                found[f.stem] = f
    return list(found.items())


def empty_frames(n: int) -> np.ndarray:
    out = np.full((n, NUM_POINTS, 3), np.nan, dtype=np.float32)
    out[..., 2] = 0.0
    return out


def _landmarks(lms: Any, indices: list[int], w: int, h: int, visibility: bool) -> np.ndarray:
    pts = lms.landmark
    return np.array(
        [(pts[i].x * w, pts[i].y * h, pts[i].visibility if visibility else 1.0) for i in indices],
        dtype=np.float32,
    )


def holistic_frame(results: Any, w: int, h: int) -> np.ndarray:
    """One MediaPipe Holistic result -> ``(86, 3)`` (x, y in pixels, confidence); NaN where undetected."""
    out = empty_frames(1)[0]
    parts = (
        (results.right_hand_landmarks, RIGHT_HAND, HAND_MEDIAPIPE, False),
        (results.left_hand_landmarks, LEFT_HAND, HAND_MEDIAPIPE, False),
        (results.face_landmarks, LIPS, LIPS_MEDIAPIPE, False),
        (results.pose_landmarks, BODY, BODY_MEDIAPIPE, True),
    )
    for lms, sl, idx, vis in parts:
        if lms is not None:
            out[sl] = _landmarks(lms, idx, w, h, vis)
    return out


def read_pose_file(path: Path) -> np.ndarray:
    """A ``.pose`` file written by pose-format's MediaPipe Holistic export -> ``(T, 86, 3)``.

    Components are matched by name (``RIGHT_HAND_LANDMARKS``, ``LEFT_HAND_LANDMARKS``, ``FACE_LANDMARKS``,
    ``POSE_LANDMARKS``) and points by name, so reduced face meshes (contours only) work as long as they keep
    the lip points. The first person is used; masked points become NaN.
    """
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    comps = {c.name: c for c in pose.header.components}
    need = {
        "RIGHT_HAND_LANDMARKS": (RIGHT_HAND, None),
        "LEFT_HAND_LANDMARKS": (LEFT_HAND, None),
        "FACE_LANDMARKS": (LIPS, [str(i) for i in LIPS_MEDIAPIPE]),
        "POSE_LANDMARKS": (BODY, None),
    }
    missing = sorted(set(need) - set(comps))
    if missing:
        raise ValueError(
            f"{path}: not a MediaPipe Holistic pose file: missing components {missing} (has {sorted(comps)})"
        )
    data = np.ma.getdata(pose.body.data)[:, 0].astype(np.float32)  # (T, points, dims)
    mask = np.ma.getmaskarray(pose.body.data)[:, 0].any(-1)  # (T, points)
    conf = np.asarray(pose.body.confidence, dtype=np.float32)[:, 0]  # (T, points)
    out = empty_frames(data.shape[0])
    for name, (sl, point_names) in need.items():
        offset = pose.header.get_point_index(name, comps[name].points[0])
        if point_names is None:
            cols = offset + np.arange(sl.stop - sl.start)
        else:
            lookup = {p: j for j, p in enumerate(comps[name].points)}
            absent = [p for p in point_names if p not in lookup]
            if absent:
                raise ValueError(f"{path}: {name} lacks the lip points {absent}")
            cols = offset + np.array([lookup[p] for p in point_names])
        gone = mask[:, cols] | (conf[:, cols] <= 0)
        xy = np.where(gone[..., None], np.nan, data[:, cols, :2])
        out[:, sl, :2] = xy
        out[:, sl, 2] = np.where(gone, 0.0, conf[:, cols])
    return out


_HOLISTIC: Any = None


def _init_worker(model_complexity: int) -> None:
    global _HOLISTIC
    os.environ.setdefault("GLOG_minloglevel", "2")
    import mediapipe as mp

    _HOLISTIC = mp.solutions.holistic.Holistic(
        static_image_mode=False, model_complexity=model_complexity, smooth_landmarks=True
    )


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Collect what C libraries (FFmpeg inside OpenCV) write to file descriptor 2 meanwhile, as lines.

    Runs in an extraction worker (its own process), so redirecting the descriptor affects nothing else.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines += tmp.read().decode("utf-8", errors="replace").splitlines()


def _iter_frames(path: Path, info: dict[str, int]) -> Iterator[np.ndarray]:
    """RGB frames of a video (or the one frame of an image), read with OpenCV.

    ``info["declared"]`` gets the container's frame count (0 if unknown).
    """
    import cv2

    if path.suffix.lower() in IMAGE_SUFFIXES:
        img = cv2.imread(str(path))
        if img is None:
            raise OSError("OpenCV cannot decode this image")
        yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise OSError("OpenCV cannot open this video")
    info["declared"] = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def extract_video(path: Path) -> tuple[np.ndarray, list[str]]:
    """Holistic landmarks of every decoded frame ``(T, 86, 3)`` and the decoding problems found.

    Problems are FFmpeg's decoder messages and a shortfall against the container's frame count (one frame
    of slack: some containers round it). Raises ``OSError`` if nothing can be decoded.
    """
    if _HOLISTIC is None:
        raise RuntimeError("extract_video runs inside an extraction worker (call _init_worker first)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        _HOLISTIC.reset()  # an image is its own clip: no tracking from the previous file
    frames = []
    info = {"declared": 0}
    with _captured_stderr() as log:
        for rgb in _iter_frames(path, info):
            h, w = rgb.shape[:2]
            frames.append(holistic_frame(_HOLISTIC.process(rgb), w, h))
    problems = []
    for line in log:
        m = _FFMPEG_LINE.match(line)
        if m:
            problems.append(f"[{m.group(1)}] {m.group(2)}")
        else:
            print(line, file=sys.stderr)  # not the decoder's: pass it on
    _HOLISTIC.reset()
    if not frames:
        raise OSError(
            "no frame could be decoded (empty or unsupported video)"
            + (f": {problems[0]}" if problems else "")
        )
    if info["declared"] > len(frames) + 1:
        problems.insert(0, f"decoded {len(frames)} of the {info['declared']} frames the container declares")
    return np.stack(frames), problems


def _process(job: tuple[str, str, str]) -> FileResult:
    sid, src, out_dir = job
    path = Path(src)
    res = FileResult(path=src, id=sid, status="error")
    try:
        if path.stat().st_size == 0:
            res.status, res.message = "empty", "file is empty (0 bytes)"
            return res
        if path.suffix.lower() in POSE_SUFFIXES:
            kp = read_pose_file(path)
            problems: list[str] = []
        else:
            kp, problems = extract_video(path)
    except OSError as err:
        res.status, res.message = "unreadable", str(err)
        return res
    except Exception as err:
        res.status, res.message = "error", f"{type(err).__name__}: {err}"
        return res
    res.frames = int(kp.shape[0])
    detected = ~np.isnan(kp[..., 0]).all(-1)  # (T,) frames with any point
    res.detected_frames = int(detected.sum())
    if res.detected_frames == 0:
        res.status, res.message = "no_person", f"no person detected in any of {res.frames} frames"
        return res
    final = Path(out_dir) / "keypoints" / f"{sid}.npy"
    tmp = final.with_name(f".{sid}.{os.getpid()}.tmp.npy")
    np.save(tmp, kp)
    os.replace(tmp, final)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        res.status, res.message = "damaged", f"{res.frames} frames kept; " + "; ".join(problems[:3]) + more
    else:
        res.status = "ok"
    return res


def read_status(out_dir: Path) -> dict[str, FileResult]:
    """Latest status per sample id from ``status.jsonl`` (a torn last line from a kill is ignored)."""
    status: dict[str, FileResult] = {}
    path = out_dir / "status.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = FileResult(**json.loads(line))
            except (json.JSONDecodeError, TypeError):
                continue
            status[r.id] = r
    return status


def collect(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every finished sample under ``OUT/keypoints`` in the release format."""
    done = {sid for sid, r in read_status(out_dir).items() if r.status in KEPT}
    return {
        p.stem: {"keypoints": np.load(p)}
        for p in sorted((out_dir / "keypoints").glob("*.npy"))
        if p.stem in done
    }


def run_extract(
    inputs: list[Path], out_dir: Path, *, workers: int = 1, model_complexity: int = 1, progress: bool = True
) -> dict[str, Any]:
    """Extract every input not yet finished; returns a summary with per-file problems."""
    from tqdm.auto import tqdm

    files = find_inputs(inputs)
    (out_dir / "keypoints").mkdir(parents=True, exist_ok=True)
    previous = read_status(out_dir)
    todo = [
        (sid, str(f), str(out_dir))
        for sid, f in files
        if previous.get(sid, FileResult("", "", "")).status not in DONE
    ]
    results: list[FileResult] = []
    t0 = time.monotonic()
    if todo:
        ctx = get_context("spawn")  # MediaPipe's graph threads do not survive fork
        n = max(1, min(workers, len(todo)))
        with (
            ProcessPoolExecutor(
                n, mp_context=ctx, initializer=_init_worker, initargs=(model_complexity,)
            ) as pool,
            open(out_dir / "status.jsonl", "a", encoding="utf-8") as log,
            tqdm(total=len(todo), desc="extract", unit="file", disable=not progress) as bar,
        ):
            for r in pool.map(_process, todo):
                log.write(json.dumps(asdict(r)) + "\n")
                log.flush()
                results.append(r)
                if r.status != "ok":  # damaged files are kept, and said so
                    tqdm.write(f"polyhead-cslr extract: {r.path}: {r.status}: {r.message}")
                bar.update()
    wall = time.monotonic() - t0
    samples = collect(out_dir)
    with open(out_dir / "keypoints.pkl", "wb") as f:
        pickle.dump(samples, f)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {
        "inputs": len(files),
        "skipped_finished": len(files) - len(todo),
        "processed": counts,
        "frames": sum(r.frames for r in results),
        "wall_s": round(wall, 3),
        "frames_per_s": round(sum(r.frames for r in results) / wall, 2) if results and wall > 0 else 0.0,
        "problems": [asdict(r) for r in results if r.status != "ok"],
        "samples_in_pickle": len(samples),
        "pickle": str(out_dir / "keypoints.pkl"),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="polyhead-cslr extract",
        description="MediaPipe Holistic keypoints (86-point Isharah layout) from videos, images or .pose files.",
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, help="video/image/.pose files or folders (searched recursively)"
    )
    p.add_argument("out", type=Path, help="output folder (keypoints/<id>.npy, status.jsonl, keypoints.pkl)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2))
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    try:
        import cv2  # noqa: F401
        import mediapipe  # noqa: F401
    except ImportError as err:
        print(
            f"polyhead-cslr extract needs the extra: pip install 'polyhead-cslr[extract]' ({err})",
            file=sys.stderr,
        )
        return 2
    try:
        summary = run_extract(
            a.inputs,
            a.out,
            workers=a.workers,
            model_complexity=a.model_complexity,
            progress=not a.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        print(f"polyhead-cslr extract: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "problems"}, indent=1))
    print(
        f"polyhead-cslr extract: {summary['frames']} frames from {sum(summary['processed'].values())} files "
        f"in {summary['wall_s']:.1f} s ({summary['frames_per_s']:.1f} frames/s, {a.workers} workers)"
    )
    for r in summary["problems"]:
        print(f"  {r['status']:>10}  {r['path']}: {r['message']}", file=sys.stderr)
    return 0 if summary["samples_in_pickle"] or not summary["inputs"] else 1
