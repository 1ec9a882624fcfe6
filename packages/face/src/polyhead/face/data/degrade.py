"""The extending degradation model of RestoreFormer++ as a seeded, worker-safe transform.

Wang et al., "RestoreFormer++" (TPAMI 2023, arXiv:2308.07228), Sec. 3.3: the classic blind-face
degradation ``y = [(x * k_sigma) down_r + n_delta]_JPEG_q`` (GFPGAN's: mixed isotropic/anisotropic
Gaussian blur sigma 0.1-10, downsampling x0.8-8, Gaussian noise 0-20, JPEG quality 60-100, resized back)
extended with a spatial shift (p 0.2, up to 32 px at 512 px), spatially uneven degradation (p 0.1: two
differently degraded versions blended by a smooth random ramp), haze (p 0.008) and grayscale (p 0.008).

Each image's parameters come from ``numpy.random.default_rng([seed, epoch, index])``: the same
``(seed, epoch, index)`` gives the same degraded image in any process or DataLoader worker, and the
sampled parameters are returned with the image (flat ``{name: float}``) so they can be logged per image.

Differences from the reference: spatial parameters (blur sigma and kernel, shift) are given at the
paper's 512 px and scaled to the image's resolution (``reference_resolution``; ``None`` keeps them in
pixels), because the quick runs train at 64 px where a 10 px blur would erase the face. The haze model
is the atmospheric scattering model ``I = J t + A (1 - t)`` with t in [0.4, 0.9] and A in [0.7, 1.0]
(the paper gives the probability, not the ranges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np


@dataclass(frozen=True, kw_only=True)
class DegradationConfig:
    """Ranges and probabilities of the extending degradation model (paper defaults at 512 px)."""

    blur_sigma: tuple[float, float] = (0.1, 10.0)
    aniso_prob: float = 0.5
    downsample: tuple[float, float] = (0.8, 8.0)
    noise: tuple[float, float] = (0.0, 20.0)
    jpeg: tuple[float, float] = (60.0, 100.0)
    shift_prob: float = 0.2
    shift_max: float = 32.0
    uneven_prob: float = 0.1
    haze_prob: float = 0.008
    haze_t: tuple[float, float] = (0.4, 0.9)
    haze_a: tuple[float, float] = (0.7, 1.0)
    gray_prob: float = 0.008
    reference_resolution: int | None = 512

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                if len(v) != 2 or v[0] > v[1] or v[0] < 0:
                    raise ValueError(f"DegradationConfig.{f.name} must be a (low, high) range >= 0, got {v}")
            elif f.name.endswith("_prob") and not 0.0 <= v <= 1.0:
                raise ValueError(f"DegradationConfig.{f.name} must be a probability in [0, 1], got {v}")
        if self.blur_sigma[0] <= 0:
            raise ValueError(f"DegradationConfig.blur_sigma must be > 0, got {self.blur_sigma}")
        if self.downsample[0] <= 0:
            raise ValueError(f"DegradationConfig.downsample must be > 0, got {self.downsample}")
        if not (self.jpeg[0] >= 0 and self.jpeg[1] <= 100):
            raise ValueError(f"DegradationConfig.jpeg must lie in [0, 100], got {self.jpeg}")
        if self.reference_resolution is not None and self.reference_resolution <= 0:
            raise ValueError(f"reference_resolution must be > 0 or None, got {self.reference_resolution}")


# ---- components (each takes float32 HxWx3 images in [0, 1]) ------------------------------------------


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float, size: int | None = None) -> np.ndarray:
    """A normalised 2-D Gaussian kernel with axes ``sigma_x``/``sigma_y`` rotated by ``theta`` (radians).

    ``sigma_x == sigma_y`` is the isotropic case. ``size`` defaults to ``2 * ceil(3 * max sigma) + 1``.
    """
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be > 0, got {sigma_x}, {sigma_y}")
    if size is None:
        size = 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``(width, height)``; area averaging when shrinking a lot (as an ISP would)."""
    w, h = size
    interp = cv2.INTER_AREA if w < img.shape[1] / 2 else cv2.INTER_LINEAR
    out = cv2.resize(img, (max(1, w), max(1, h)), interpolation=interp)
    return out if out.ndim == 3 else out[..., None]


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with standard deviation ``sigma`` on the 0-255 scale."""
    return img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)


def jpeg(img: np.ndarray, quality: float) -> np.ndarray:
    """JPEG round trip at ``quality`` (integer 0-100) through OpenCV."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, round(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.0


def shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate by ``(dx, dy)`` pixels (sub-pixel, reflected borders)."""
    m = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def haze(img: np.ndarray, t: float, a: float) -> np.ndarray:
    """Atmospheric scattering: ``img * t + a * (1 - t)``."""
    return img * np.float32(t) + np.float32(a * (1 - t))


def grayscale(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma copied to three channels."""
    y = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(y[..., None], 3, axis=-1)


def ramp_mask(h: int, w: int, angle: float, offset: float, width: float) -> np.ndarray:
    """A smooth 0-1 ramp across the image along ``angle``: the blend of spatially uneven degradation."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = ((xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle) - offset) / max(width, 1e-3)
    return (1 / (1 + np.exp(-t)))[..., None].astype(np.float32)


class ExtendedDegradation:
    """The seeded transform: ``(hq, index, epoch) -> (lq, params)``.

    Args:
        seed: degradation seed (with ``epoch`` and ``index`` it fixes every sampled value).
        config: ranges and probabilities (:class:`DegradationConfig`, paper defaults).
    """

    def __init__(self, *, seed: int = 0, config: DegradationConfig | None = None) -> None:
        self.seed = int(seed)
        self.config = config or DegradationConfig()

    def _scale(self, resolution: int) -> float:
        ref = self.config.reference_resolution
        return 1.0 if ref is None else resolution / ref

    def sample(self, rng: np.random.Generator, resolution: int, prefix: str = "") -> dict[str, float]:
        """Draw the classic degradation's parameters (blur, downsample, noise, JPEG)."""
        c = self.config
        sc = self._scale(resolution)
        aniso = rng.random() < c.aniso_prob
        sx = rng.uniform(*c.blur_sigma)
        sy = rng.uniform(*c.blur_sigma) if aniso else sx
        theta = rng.uniform(0, math.pi) if aniso else 0.0
        return {
            f"{prefix}blur_aniso": float(aniso),
            f"{prefix}blur_sigma_x": sx,
            f"{prefix}blur_sigma_y": sy,
            f"{prefix}blur_theta": theta,
            f"{prefix}blur_scale": sc,
            f"{prefix}downsample": rng.uniform(*c.downsample),
            f"{prefix}noise": rng.uniform(*c.noise),
            f"{prefix}jpeg": float(round(rng.uniform(*c.jpeg))),
        }

    @staticmethod
    def classic(
        img: np.ndarray, p: dict[str, float], rng: np.random.Generator, prefix: str = ""
    ) -> np.ndarray:
        """Blur -> downsample -> noise -> JPEG -> resize back, with parameters ``p``."""
        h, w = img.shape[:2]
        sc = p[f"{prefix}blur_scale"]
        # Sigma below 0.05 px is no blur at all; skip the filter rather than build a 1x1 kernel.
        sx, sy = p[f"{prefix}blur_sigma_x"] * sc, p[f"{prefix}blur_sigma_y"] * sc
        if max(sx, sy) >= 0.05:
            img = blur(img, gaussian_kernel(max(sx, 0.05), max(sy, 0.05), p[f"{prefix}blur_theta"]))
        r = p[f"{prefix}downsample"]
        img = resize(img, (round(w / r), round(h / r)))
        img = add_noise(img, p[f"{prefix}noise"], rng)
        img = jpeg(np.clip(img, 0, 1), p[f"{prefix}jpeg"])
        return resize(img, (w, h))

    def __call__(self, hq: np.ndarray, index: int, epoch: int = 0) -> tuple[np.ndarray, dict[str, float]]:
        """Degrade ``hq`` (HxWx3 float32 in [0, 1]); returns the LQ image (same size) and its parameters."""
        if hq.ndim != 3 or hq.shape[2] != 3:
            raise ValueError(f"hq must be an HxWx3 image, got shape {hq.shape}")
        c = self.config
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        h, w = hq.shape[:2]
        img = hq.astype(np.float32, copy=False)
        p: dict[str, float] = {}
        p["shift"] = float(rng.random() < c.shift_prob)
        m = c.shift_max * self._scale(max(h, w))
        p["shift_x"], p["shift_y"] = (rng.uniform(-m, m), rng.uniform(-m, m)) if p["shift"] else (0.0, 0.0)
        if p["shift"]:
            img = shift(img, p["shift_x"], p["shift_y"])
        p["haze"] = float(rng.random() < c.haze_prob)
        p["haze_t"], p["haze_a"] = (
            (rng.uniform(*c.haze_t), rng.uniform(*c.haze_a)) if p["haze"] else (1.0, 0.0)
        )
        if p["haze"]:
            img = haze(img, p["haze_t"], p["haze_a"])
        p.update(self.sample(rng, max(h, w)))
        p["uneven"] = float(rng.random() < c.uneven_prob)
        if p["uneven"]:
            p.update(self.sample(rng, max(h, w), prefix="b_"))
            p["uneven_angle"], p["uneven_offset"] = rng.uniform(0, 2 * math.pi), rng.uniform(-0.3, 0.3)
            a = self.classic(img, p, rng)
            b = self.classic(img, p, rng, prefix="b_")
            mask = ramp_mask(h, w, p["uneven_angle"], p["uneven_offset"], 0.1)
            img = a * (1 - mask) + b * mask
        else:
            img = self.classic(img, p, rng)
            # A fixed set of keys (zeros when unused), so per-image parameters collate into a batch.
            p.update({f"b_{k}": 0.0 for k in self.sample(np.random.default_rng(0), max(h, w))})
            p["uneven_angle"] = p["uneven_offset"] = 0.0
        p["gray"] = float(rng.random() < c.gray_prob)
        if p["gray"]:
            img = grayscale(img)
        return np.clip(img, 0, 1).astype(np.float32), p
