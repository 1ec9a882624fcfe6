"""``polyhead-face restore``: restore the faces of whole photos (detect, align, restore, paste back).

    polyhead-face restore photo.jpg more/ --out restored/            # model: best checkpoint of the latest run
    polyhead-face restore photo.jpg --out restored/ --ckpt runs/face/default/version_0/checkpoints/best-....ckpt

For each photo: MediaPipe face detection (full-range BlazeFace) finds the faces; the face mesh on each
face's crop gives the FFHQ five points (eye centres, nose tip, mouth corners; the detector's keypoints
when the mesh fails); a similarity transform (least squares, OpenCV ``estimateAffinePartial2D``) warps
each face to the FFHQ template at the model's resolution; the model restores all faces of the photo in
one batch; each face is warped back and blended into the photo with a soft (eroded, blurred) mask.
As GFPGAN's and CodeFormer's ``inference`` scripts do, without their face parsing and background
upsampler.

Outputs in ``--out``: ``<name>`` (the restored photo; alpha kept for RGBA inputs), ``<stem>_compare.png``
(original | restored, plus each face's aligned input and restored crop), and ``report.jsonl`` (one line
per input: status ``restored`` / ``no_face`` / ``error``, faces with score, box, landmark source and
whether the face is cut by the image border, conversions applied). A photo without a face is copied
through unchanged; an unreadable, empty, tiny or oversized file is reported and skipped: a batch never
stops on one bad file. Huge photos are searched on a downscaled copy (``--detect-max-side``) and
restored at full resolution, working only on each face's region.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from polyhead.face.data.images import IMAGE_SUFFIXES, ImageError, LoadedImage, load_image, save_image
from polyhead.face.data.render import FFHQ_TEMPLATE
from polyhead.face.landmarks import Detection, FaceDetector, FaceMesh, five_points


@dataclass
class FaceResult:
    score: float
    box: list[float]
    landmarks: list[list[float]]
    landmark_source: str
    cut_by_border: bool


@dataclass
class PhotoResult:
    file: str
    status: str  # restored | no_face | error
    faces: list[FaceResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reason: str | None = None
    error: str | None = None
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)


def align_matrix(points: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity transform taking the five ``points`` to the FFHQ template at ``size`` pixels."""
    m, _ = cv2.estimateAffinePartial2D(
        points.astype(np.float32), (FFHQ_TEMPLATE * size).astype(np.float32), method=cv2.LMEDS
    )
    if m is None:  # degenerate points (all equal): fall back to a plain least-squares fit
        m = cv2.getAffineTransform(
            points[:3].astype(np.float32), (FFHQ_TEMPLATE[:3] * size).astype(np.float32)
        )
    return m


def warp_face(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT_101)


def soft_mask(size: int) -> np.ndarray:
    """A face-space blend mask: 1 inside, fading to 0 over ~6% of the side at the edges."""
    m = np.zeros((size, size), np.float32)
    e = max(1, round(size * 0.06))
    m[e:-e, e:-e] = 1.0
    k = 2 * e + 1
    return cv2.GaussianBlur(m, (k, k), 0)


def paste_back(img: np.ndarray, face: np.ndarray, m: np.ndarray, mask: np.ndarray) -> bool:
    """Blend ``face`` (aligned, size x size) back into ``img`` in place; only its region is touched.

    Returns whether the face's square reaches outside the image (a face cut by the border).
    """
    size = face.shape[0]
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    h, w = img.shape[:2]
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    cut = bool(x0 < 0 or y0 < 0 or x1 > w or y1 > h)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return True
    shift: np.ndarray = inv.copy()
    shift[:, 2] -= (x0, y0)
    rw, rh = x1 - x0, y1 - y0
    face_roi = cv2.warpAffine(face, shift, (rw, rh), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    # cv2's stubs type borderValue as a sequence; OpenCV takes a scalar for every channel
    mask_roi = cv2.warpAffine(mask, shift, (rw, rh), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]  # type: ignore[call-overload]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(
        roi * (1 - mask_roi) + face_roi.astype(np.float32) * mask_roi + 0.5, 0, 255
    ).astype(np.uint8)
    return cut


class Restorer:
    """A trained :class:`~polyhead.face.module.FaceModule` plus detector and mesh, for whole photos."""

    def __init__(
        self,
        module: Any,
        *,
        min_score: float = 0.5,
        max_faces: int = 20,
        detect_max_side: int = 1920,
        use_mesh: bool = True,
    ) -> None:
        self.module = module.eval()
        self.size = int(module.resolution)
        self.max_faces = max_faces
        self.detect_max_side = detect_max_side
        self.detector = FaceDetector(min_score=min_score)
        self.mesh = FaceMesh() if use_mesh else None
        self.mask = soft_mask(self.size)

    @classmethod
    def from_checkpoint(cls, path: Path | str, **kwargs: Any) -> Restorer:
        import inspect

        from polyhead.face.module import FaceModule

        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        known = set(inspect.signature(FaceModule.__init__).parameters)
        # Only the model's own arguments (LightningCLI adds bookkeeping keys); training-only paths dropped.
        hp = {k: v for k, v in (ckpt.get("hyper_parameters") or {}).items() if k in known}
        hp.pop("perceptual_weights", None)
        hp.pop("dictionary_ckpt", None)
        hp.pop("lpips_weights", None)
        hp.pop("identity_weights", None)
        module = FaceModule(**hp)
        module.on_load_checkpoint(ckpt)
        module.load_state_dict(ckpt["state_dict"], strict=False)
        return cls(module, **kwargs)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        s = min(1.0, self.detect_max_side / max(h, w))
        small = (
            rgb if s == 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        )
        dets = self.detector.detect(small)[: self.max_faces]
        for d in dets:
            x0, y0, x1, y1 = d.box
            d.box = (x0 / s, y0 / s, x1 / s, y1 / s)
            d.keypoints = d.keypoints / s
        return dets

    @torch.no_grad()
    def restore_faces(self, faces: list[np.ndarray]) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255.0
        out = self.module.restore(x)
        return list((out.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))

    def restore_photo(
        self, img: LoadedImage
    ) -> tuple[np.ndarray, list[FaceResult], list[np.ndarray], list[np.ndarray]]:
        """Returns the restored photo, the faces found, and their aligned inputs and restored crops."""
        rgb = img.rgb
        dets = self.detect(rgb)
        results, mats, aligned = [], [], []
        for d in dets:
            pts, src = five_points(rgb, d, self.mesh)
            m = align_matrix(pts, self.size)
            mats.append(m)
            aligned.append(warp_face(rgb, m, self.size))
            results.append(FaceResult(d.score, [float(v) for v in d.box], pts.round(2).tolist(), src, False))
        if not dets:
            return rgb, [], [], []
        restored = self.restore_faces(aligned)
        out = rgb.copy()
        for r, m, face in zip(results, mats, restored, strict=True):
            r.cut_by_border = bool(paste_back(out, face, m, self.mask))
        return out, results, aligned, restored


def compare_figure(
    before: np.ndarray, after: np.ndarray, aligned: list[np.ndarray], restored: list[np.ndarray]
) -> Any:
    """Original | restored photo on top, each face's aligned input over its restored crop below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(aligned)
    cols = max(2, n)
    rows = 1 + (2 if n else 0)
    fig = plt.figure(figsize=(3 * cols, 3 * rows))
    gs = fig.add_gridspec(rows, cols)
    for j, (img, title) in enumerate(((before, "input"), (after, "restored"))):
        ax = fig.add_subplot(gs[0, j * cols // 2 : (j + 1) * cols // 2])
        ax.imshow(img)
        ax.set_title(title)
        ax.axis("off")
    for k in range(n):
        for i, (im, t) in enumerate(((aligned[k], f"face {k} aligned"), (restored[k], f"face {k} restored"))):
            ax = fig.add_subplot(gs[1 + i, k])
            ax.imshow(im, interpolation="nearest")
            ax.set_title(t, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def _downscale_for_figure(img: np.ndarray, max_side: int = 1024) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    return img if s == 1.0 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def restore_files(
    files: list[Path], out_dir: Path, restorer: Restorer, *, figures: bool = True
) -> list[PhotoResult]:
    """Restore every file into ``out_dir``; every problem is reported in the result, never raised."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for f in files:
        t0 = time.monotonic()
        res = PhotoResult(file=str(f), status="error")
        try:
            img = load_image(f)
            res.notes = img.notes
            after, faces, aligned, restored = restorer.restore_photo(img)
            res.faces = faces
            target = out_dir / f.name
            if not faces:
                res.status = "no_face"
                shutil.copy2(f, target)  # copied through byte for byte
            else:
                res.status = "restored"
                save_image(target, after, img.alpha)
            res.outputs.append(str(target))
            if figures:
                fig = compare_figure(
                    _downscale_for_figure(img.rgb), _downscale_for_figure(after), aligned, restored
                )
                cmp_path = out_dir / f"{f.stem}_compare.png"
                fig.savefig(cmp_path, dpi=80)
                plt.close(fig)
                res.outputs.append(str(cmp_path))
        except ImageError as err:
            res.reason, res.error = err.reason, str(err)
        except (OSError, cv2.error, ValueError, RuntimeError) as err:  # one bad photo never stops the batch
            res.reason, res.error = "failed", f"{f}: {type(err).__name__}: {err}"
        res.seconds = time.monotonic() - t0
        results.append(res)
    with (out_dir / "report.jsonl").open("w") as fh:
        for r in results:
            fh.write(json.dumps(_as_dict(r)) + "\n")
    return results


def _as_dict(r: PhotoResult) -> dict[str, Any]:
    d = dict(vars(r))
    d["faces"] = [vars(f) for f in r.faces]
    return d


def collect_inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    files, missing = [], []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            missing.append(str(p))
    return files, missing


def find_checkpoint(root: str, experiment: str) -> Path | None:
    from polyhead.train import rundir

    run = rundir.latest_run_with_checkpoint(rundir.experiment_dir(root, "face", experiment))
    return rundir.best_checkpoint(run) if run is not None else None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="polyhead-face restore", description="Restore the faces of whole photos."
    )
    p.add_argument("inputs", nargs="+", help="photos or folders of photos")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--ckpt", default=None, help="a FaceModule checkpoint (default: best of the latest run)")
    p.add_argument("--run-root", default="runs", help="where to look for the latest run (default: runs)")
    p.add_argument("--experiment", default="default")
    p.add_argument("--min-score", type=float, default=0.5, help="face detection threshold")
    p.add_argument("--max-faces", type=int, default=20)
    p.add_argument("--detect-max-side", type=int, default=1920, help="detect on a copy at most this large")
    p.add_argument("--no-mesh", action="store_true", help="five points from the detector only")
    p.add_argument("--no-figures", action="store_true")
    a = p.parse_args(argv)
    ckpt = a.ckpt or find_checkpoint(a.run_root, a.experiment)
    if ckpt is None:
        print(
            f"polyhead-face restore: error: no trained model under {a.run_root}/face/{a.experiment}; "
            "run `polyhead-face fit` first or pass --ckpt",
            file=sys.stderr,
        )
        return 2
    try:
        restorer = Restorer.from_checkpoint(
            ckpt, min_score=a.min_score, max_faces=a.max_faces, detect_max_side=a.detect_max_side,
            use_mesh=not a.no_mesh,
        )  # fmt: skip
    except (FileNotFoundError, RuntimeError, KeyError, TypeError, ValueError) as err:
        print(f"polyhead-face restore: error: cannot load {ckpt}: {err}", file=sys.stderr)
        return 2
    files, missing = collect_inputs(a.inputs)
    results = restore_files(files, a.out, restorer, figures=not a.no_figures)
    for m in missing:
        print(f"polyhead-face restore: {m}: not found", file=sys.stderr)
    counts = Counter(r.status for r in results)
    for r in results:
        if r.status == "error":
            print(f"polyhead-face restore: skipped {r.error}", file=sys.stderr)
        elif r.status == "no_face":
            print(
                f"polyhead-face restore: {r.file}: no face found; copied through unchanged", file=sys.stderr
            )
    n_faces = sum(len(r.faces) for r in results)
    print(
        f"polyhead-face restore: {len(results)} photo(s): {counts['restored']} restored ({n_faces} faces), "
        f"{counts['no_face']} without a face (copied), {counts['error']} error(s); report {a.out / 'report.jsonl'}"
    )
    return 2 if not files else 0
