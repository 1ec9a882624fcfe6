"""A physically based low-light synthesiser: normal-light sRGB images -> dark, noisy camera images.

Follows the unprocess-degrade-reprocess pipeline of low-light simulation (Brooks et al., "Unprocessing
Images for Learned Raw Denoising", CVPR 2019, arXiv:1811.11127; applied to dark detection by Cui et al.,
MAET, ICCV 2021, arXiv:2205.03346), in a compact form:

1. linearise: inverse sRGB transfer function (or a plain inverse gamma ``x ** gamma``);
2. colour cast: per-channel white-balance gains (warm street-light / cool moonlight casts);
3. exposure: scale the linear irradiance by ``k`` (log-uniform, e.g. 0.01-0.12);
4. sensor noise, Poisson-Gaussian: photon shot noise ``Poisson(x * photons) / photons`` plus Gaussian read
   noise ``N(0, read_std^2)``;
5. back to sRGB (the camera's tone curve) and quantise to 8 bits;
6. JPEG compression at a random quality.

Every parameter is drawn per image from ``numpy.random.default_rng([seed, index])``, so an image's
darkening depends only on the seed and its index: the same in any worker process and any order
(worker-safe). ``__call__`` returns the dark image and the parameters it used, for the log.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_SRGB8_TO_LINEAR = None


def _srgb8_table() -> np.ndarray:
    global _SRGB8_TO_LINEAR
    if _SRGB8_TO_LINEAR is None:
        _SRGB8_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
    return _SRGB8_TO_LINEAR


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Inverse sRGB transfer function (IEC 61966-2-1) on values in [0, 1]."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """sRGB transfer function on linear values in [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, np.float32(1 / 2.4)) - 0.055).astype(
        x.dtype
    )


@dataclass(frozen=True)
class LowLightParams:
    """The parameters one image was darkened with (logged with the data)."""

    exposure: float
    gains: tuple[float, float, float]
    photons: float
    read_std: float
    jpeg_quality: int
    gamma: float | None


class LowLightSynthesizer:
    """Darken sRGB images as a camera would record the scene in low light.

    Args:
        exposure: ``(lo, hi)`` range of the linear exposure factor, drawn log-uniformly.
        photons: ``(lo, hi)`` photon count at full white (log-uniform); fewer photons = more shot noise.
        read_std: ``(lo, hi)`` Gaussian read-noise std on the linear [0, 1] scale.
        cast: maximum relative deviation of each channel's white-balance gain from 1.
        jpeg_quality: ``(lo, hi)`` JPEG quality; ``None`` keeps the lossless 8-bit image.
        gamma: ``None`` uses the exact sRGB curve; a number uses ``x ** gamma`` / ``x ** (1 / gamma)``.
        seed: the base seed; image ``i`` uses ``default_rng([seed, i])``.
    """

    def __init__(
        self,
        *,
        exposure: tuple[float, float] = (0.01, 0.12),
        photons: tuple[float, float] = (300.0, 3000.0),
        read_std: tuple[float, float] = (0.0005, 0.003),
        cast: float = 0.25,
        jpeg_quality: tuple[int, int] | None = (60, 95),
        gamma: float | None = None,
        seed: int = 0,
    ) -> None:
        for name, (lo, hi) in (("exposure", exposure), ("photons", photons), ("read_std", read_std)):
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < lo <= hi, got ({lo}, {hi})")
        if exposure[1] > 1:
            raise ValueError(f"exposure must be <= 1 (darkening), got {exposure}")
        if not 0 <= cast < 1:
            raise ValueError(f"cast must be in [0, 1), got {cast}")
        if jpeg_quality is not None and not 1 <= jpeg_quality[0] <= jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must be a range within 1..100, got {jpeg_quality}")
        if gamma is not None and gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.exposure, self.photons, self.read_std = exposure, photons, read_std
        self.cast, self.jpeg_quality, self.gamma, self.seed = cast, jpeg_quality, gamma, seed

    def config(self) -> dict:
        return {"exposure": list(self.exposure), "photons": list(self.photons), "read_std": list(self.read_std),
                "cast": self.cast, "jpeg_quality": list(self.jpeg_quality) if self.jpeg_quality else None,
                "gamma": self.gamma, "seed": self.seed}  # fmt: skip

    def sample(self, index: int) -> LowLightParams:
        """The parameters of image ``index`` (a pure function of ``seed`` and ``index``)."""
        rng = np.random.default_rng([self.seed, index])

        def log_uniform(lo: float, hi: float) -> float:
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

        gains = tuple(float(g) for g in 1 + rng.uniform(-self.cast, self.cast, size=3))
        quality = (
            int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)) if self.jpeg_quality else 0
        )
        return LowLightParams(
            exposure=log_uniform(*self.exposure),
            gains=gains,  # type: ignore[arg-type]
            photons=log_uniform(*self.photons),
            read_std=float(rng.uniform(*self.read_std)),
            jpeg_quality=quality,
            gamma=self.gamma,
        )

    def apply(self, image: np.ndarray, params: LowLightParams, rng: np.random.Generator) -> np.ndarray:
        """Darken ``(H, W, 3)`` uint8 RGB with the given parameters; ``rng`` draws the noise."""
        if params.gamma is None:  # exact inverse sRGB of 8-bit values by table lookup
            lin = _srgb8_table()[image]
        else:
            lin = np.power(image.astype(np.float32) / 255.0, np.float32(params.gamma))
        lin = lin * (params.exposure * np.asarray(params.gains, np.float32))
        lin = rng.poisson(np.clip(lin, 0, None) * params.photons).astype(np.float32) / params.photons
        lin = lin + rng.normal(0.0, params.read_std, size=lin.shape).astype(np.float32)
        lin = np.clip(lin, 0.0, 1.0)
        out = linear_to_srgb(lin) if params.gamma is None else np.power(lin, np.float32(1 / params.gamma))
        out8 = np.rint(out * 255.0).astype(np.uint8)
        if params.jpeg_quality:
            buf = io.BytesIO()
            Image.fromarray(out8).save(buf, format="JPEG", quality=params.jpeg_quality)
            buf.seek(0)
            out8 = np.asarray(Image.open(buf).convert("RGB"))
        return out8

    def __call__(self, image: np.ndarray, index: int) -> tuple[np.ndarray, dict]:
        """Dark version of image ``index`` and the parameters used (JSON-ready)."""
        params = self.sample(index)
        # The noise stream is separate from the parameter stream, and again a function of (seed, index).
        noise_rng = np.random.default_rng([self.seed, index, 1])
        return self.apply(image, params, noise_rng), {"index": index, **asdict(params)}
