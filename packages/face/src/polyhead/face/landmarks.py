"""MediaPipe face detection and face landmarks (offline: the models ship inside the mediapipe 0.10.21 wheel).

- :class:`FaceDetector`: BlazeFace through the legacy ``mediapipe.solutions.face_detection`` API
  (full-range model, ``model_selection=1``), boxes and six keypoints per face.
- :class:`FaceMesh`: the 478-point face mesh (``refine_landmarks=True`` adds the irises) through
  ``mediapipe.solutions.face_mesh``, in static-image mode.
- :func:`five_points`: the FFHQ five points (eye centres, nose tip, mouth corners) of one detected face,
  from the mesh run on the face's crop (upscaled when small), or estimated from the detector's keypoints
  when the mesh finds nothing.
- :func:`landmark_distance`: mean distance between the mesh landmarks of two aligned faces, the
  ``LMD`` of the face-restoration papers measured with MediaPipe's mesh (they use other detectors).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Face-mesh indices: iris centres (refined mesh), nose tip, mouth corners.
_IRIS = (468, 473)
_NOSE_TIP = 1
_MOUTH = (61, 291)
MESH_UPSCALE = 256  # faces smaller than this are upscaled before the mesh runs (it fails below ~100 px)


@dataclass
class Detection:
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    keypoints: np.ndarray  # (6, 2) pixels: right eye, left eye, nose tip, mouth, right ear, left ear


class FaceDetector:
    """BlazeFace detector; ``detect(rgb uint8) -> [Detection]`` sorted by score."""

    def __init__(self, *, min_score: float = 0.5, full_range: bool = True) -> None:
        import mediapipe as mp

        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=1 if full_range else 0, min_detection_confidence=min_score
        )

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        res = self._fd.process(np.ascontiguousarray(rgb))
        out = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            kp = np.array([[k.x * w, k.y * h] for k in d.location_data.relative_keypoints], dtype=np.float64)
            box = (bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h)
            out.append(Detection(float(d.score[0]), box, kp))
        return sorted(out, key=lambda d: -d.score)

    def close(self) -> None:
        self._fd.close()


class FaceMesh:
    """478-point face mesh of the largest face in an image; ``None`` when no face is found."""

    def __init__(self, *, min_score: float = 0.3) -> None:
        import mediapipe as mp

        self._fm = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=min_score
        )

    def landmarks(self, rgb: np.ndarray) -> np.ndarray | None:
        """``(478, 2)`` pixel coordinates in ``rgb``'s frame (the image is upscaled internally if small)."""
        h, w = rgb.shape[:2]
        s = max(1.0, MESH_UPSCALE / min(h, w))
        img = (
            rgb if s == 1.0 else cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
        )
        res = self._fm.process(np.ascontiguousarray(img))
        if not res.multi_face_landmarks:
            return None
        pts = res.multi_face_landmarks[0].landmark
        return np.array([[p.x * w, p.y * h] for p in pts], dtype=np.float64)

    def close(self) -> None:
        self._fm.close()


def mesh_five_points(mesh: np.ndarray) -> np.ndarray:
    """FFHQ order (image-left eye, image-right eye, nose, image-left and image-right mouth corner)."""
    eyes = mesh[list(_IRIS)]
    mouth = mesh[list(_MOUTH)]
    eyes = eyes[np.argsort(eyes[:, 0])]
    mouth = mouth[np.argsort(mouth[:, 0])]
    return np.stack([eyes[0], eyes[1], mesh[_NOSE_TIP], mouth[0], mouth[1]])


def detection_five_points(det: Detection) -> np.ndarray:
    """Five points from the detector's keypoints; mouth corners at 0.445 x the eye vector (FFHQ ratio)."""
    eyes = det.keypoints[:2][np.argsort(det.keypoints[:2, 0])]
    v = eyes[1] - eyes[0]
    m = det.keypoints[3]
    return np.stack([eyes[0], eyes[1], det.keypoints[2], m - 0.445 * v, m + 0.445 * v])


def five_points(rgb: np.ndarray, det: Detection, mesh: FaceMesh | None) -> tuple[np.ndarray, str]:
    """Five points of the face ``det`` in ``rgb``; returns them and their source (``mesh``/``detector``)."""
    if mesh is not None:
        x0, y0, x1, y1 = det.box
        cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.9
        h, w = rgb.shape[:2]
        ax0, ay0 = int(max(0, cx - s)), int(max(0, cy - s))
        ax1, ay1 = int(min(w, cx + s)), int(min(h, cy + s))
        if ax1 - ax0 >= 8 and ay1 - ay0 >= 8:
            pts = mesh.landmarks(rgb[ay0:ay1, ax0:ax1])
            if pts is not None:
                five = mesh_five_points(pts) + [ax0, ay0]
                # Accept the mesh only if it found this face (its eyes near the detector's).
                if np.abs(five[:2] - detection_five_points(det)[:2]).max() < 0.5 * (x1 - x0):
                    return five, "mesh"
    return detection_five_points(det), "detector"


def landmark_distance(
    restored: np.ndarray, target: np.ndarray, mesh: FaceMesh, *, scale_to: int = 512
) -> tuple[float | None, np.ndarray | None]:
    """Mean landmark distance between two aligned faces (uint8 RGB, same size), in pixels at ``scale_to``.

    Returns ``(distance, target landmarks)``; distance is None when the mesh finds no face in either.
    """
    a = mesh.landmarks(restored)
    b = mesh.landmarks(target)
    if a is None or b is None:
        return None, b
    return float(np.linalg.norm(a - b, axis=1).mean() * scale_to / target.shape[1]), b
