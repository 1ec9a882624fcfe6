"""A parametric renderer of aligned faces: the embedded default data of polyhead-face (SYNTHETIC).

No face dataset can be downloaded here, so training and the results tables use faces drawn by this
module. Each face is a set of sampled parameters (head shape and jaw, skin tone, ears, neck and clothes,
hair style and colour, eyes with iris colour and gaze, brows, nose, mouth with smile and open lips,
glasses, beard, directional lighting on an ellipsoid head, colour temperature, and a textured background)
drawn with soft-edged signed-distance shapes in the FFHQ alignment: the eyes, nose tip and mouth corners
sit near the FFHQ five-point template (:data:`FFHQ_TEMPLATE`), jittered per face. Everything is
vectorised over the batch in torch; a face's parameters depend only on ``(seed, index)``, so a face is
the same whatever batch or worker draws it.

These are cartoon-like faces, not photographs: they have the structure a restorer must recover (thin
high-contrast eyes, brows, lips, glasses frames, hair texture) but none of the statistics of real skin.
Results on them are labelled synthetic everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

RENDERER_VERSION = 1

# FFHQ five-point template (GFPGAN / facexlib, 512 x 512): left eye, right eye, nose tip, left and right
# mouth corners, as fractions of the image side.
FFHQ_TEMPLATE = (
    np.array(
        [
            [192.98138, 239.94708],
            [318.90277, 240.1936],
            [256.63416, 314.01935],
            [201.26117, 371.41043],
            [313.08905, 371.15118],
        ],
        dtype=np.float64,
    )
    / 512.0
)

_SKIN_LIGHT = np.array([0.97, 0.82, 0.72])
_SKIN_DARK = np.array([0.30, 0.18, 0.12])
_HAIR = np.array(
    [
        [0.06, 0.05, 0.05],  # black
        [0.23, 0.14, 0.08],  # dark brown
        [0.45, 0.30, 0.17],  # light brown
        [0.85, 0.70, 0.42],  # blond
        [0.55, 0.22, 0.10],  # red
        [0.70, 0.70, 0.70],  # grey
    ]
)
_IRIS = np.array([[0.30, 0.18, 0.08], [0.25, 0.45, 0.70], [0.30, 0.50, 0.30], [0.45, 0.45, 0.50]])

PARAM_NAMES: tuple[str, ...] = ()  # filled below from _sample_one's keys


def _sample_one(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One face's parameters (every value a float array, so faces stack into a batch)."""
    u = rng.uniform
    tone = u(0, 1)
    skin = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone
    skin = np.clip(skin * u(0.93, 1.07, 3), 0, 1)
    hair = np.clip(_HAIR[rng.integers(len(_HAIR))] * u(0.8, 1.2, 3), 0, 1)
    t = FFHQ_TEMPLATE
    eye_y = (t[0, 1] + t[1, 1]) / 2 + u(-0.012, 0.012)
    eye_dx = (t[1, 0] - t[0, 0]) / 2 * u(0.92, 1.08)
    mouth_y = (t[3, 1] + t[4, 1]) / 2 + u(-0.015, 0.015)
    p = {
        "bg_a": u(0, 1, 3),
        "bg_b": u(0, 1, 3),
        "bg_angle": np.array(u(0, np.pi)),
        "bg_freq": np.array(u(2, 12)),
        "bg_tex": np.array(u(0, 0.1)),
        "head_cx": np.array(0.5 + u(-0.01, 0.01)),
        "head_cy": np.array(u(0.50, 0.55)),
        "head_rx": np.array(u(0.24, 0.30)),
        "head_ry": np.array(u(0.31, 0.37)),
        "jaw_p": np.array(u(1.5, 2.6)),
        "skin": skin,
        "ears": np.array(float(rng.random() < 0.85)),
        "neck_w": np.array(u(0.09, 0.14)),
        "cloth": u(0, 1, 3),
        "shoulder_rx": np.array(u(0.42, 0.62)),
        "hair": hair,
        "hair_style": np.array(float(rng.integers(4))),  # 0 bald, 1 short, 2 long, 3 fringe
        "hairline": np.array(u(0.24, 0.32)),
        "hair_freq": np.array(u(180, 420)),
        "hair_angle": np.array(u(1.2, 1.9)),
        "eye_y": np.array(eye_y),
        "eye_dx": np.array(eye_dx),
        "eye_w": np.array(u(0.042, 0.058)),
        "eye_h": np.array(u(0.35, 0.6)),
        "iris": np.clip(_IRIS[rng.integers(len(_IRIS))] * u(0.8, 1.2, 3), 0, 1),
        "iris_r": np.array(u(0.45, 0.62)),
        "gaze": u(-0.25, 0.25, 2),
        "brow_dy": np.array(u(0.045, 0.075)),
        "brow_t": np.array(u(0.006, 0.016)),
        "brow_arch": np.array(u(0.0, 0.02)),
        "brow_w": np.array(u(0.045, 0.065)),
        "nose_y": np.array(t[2, 1] + u(-0.015, 0.015)),
        "nose_w": np.array(u(0.028, 0.048)),
        "mouth_y": np.array(mouth_y),
        "mouth_w": np.array((t[4, 0] - t[3, 0]) / 2 * u(0.85, 1.15)),
        "lip_up": np.array(u(0.012, 0.025)),
        "lip_lo": np.array(u(0.016, 0.035)),
        "lip": np.clip(skin * np.array([1.0, 0.6, 0.6]) * u(0.7, 1.0) + np.array([0.15, 0.0, 0.02]), 0, 1),
        "smile": np.array(u(-0.008, 0.02)),
        "mouth_open": np.array(u(0, 0.018) * (rng.random() < 0.35)),
        "glasses": np.array(float(rng.random() < 0.3)),
        "glass_r": np.array(u(0.055, 0.075)),
        "glass_p": np.array(u(2.0, 6.0)),
        "glass_t": np.array(u(0.004, 0.01)),
        "glass_col": u(0, 0.6, 3),
        "beard": np.array(float(rng.random() < 0.15)),
        "light": u(-0.7, 0.7, 2),
        "light_k": np.array(u(0.2, 0.65)),
        "temp": u(0.9, 1.1, 3),
        "gamma": np.array(u(0.8, 1.25)),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in p.items()}


PARAM_NAMES = tuple(_sample_one(np.random.default_rng(0)))


def sample_params(seed: int, indices: np.ndarray | Sequence[int]) -> dict[str, Tensor]:
    """Parameters of faces ``indices`` of the face set ``seed``: ``{name: (B, ...) float32 tensor}``."""
    faces = [_sample_one(np.random.default_rng([seed, int(i), RENDERER_VERSION])) for i in indices]
    return {k: torch.from_numpy(np.stack([f[k] for f in faces])) for k in PARAM_NAMES}


def _soft(sd: Tensor, px: float) -> Tensor:
    """Coverage of a shape from its signed distance (negative inside), anti-aliased over ~1 pixel."""
    return torch.sigmoid(-sd / px)


def _ellipse(x: Tensor, y: Tensor, cx: Tensor, cy: Tensor, rx: Tensor, ry: Tensor) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse (exact on circles)."""
    r = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + 1e-12)
    return (r - 1) * torch.minimum(rx, ry)


def _over(img: Tensor, mask: Tensor, colour: Tensor) -> Tensor:
    """Composite ``colour`` (B, 3, 1, 1) or (B, 3, H, W) over ``img`` with coverage ``mask`` (B, H, W)."""
    m = mask.unsqueeze(1)
    return img * (1 - m) + colour * m


def render_faces(params: dict[str, Tensor], resolution: int) -> tuple[Tensor, Tensor]:
    """Draw faces from :func:`sample_params` output.

    Returns:
        images ``(B, 3, R, R)`` float32 in [0, 1] and the five landmarks ``(B, 5, 2)`` in pixels
        (left eye, right eye, nose tip, left and right mouth corner; x, y).
    """
    if resolution < 16:
        raise ValueError(f"resolution must be >= 16, got {resolution}")
    p = {k: v.float() for k, v in params.items()}
    B = p["skin"].shape[0]
    R = resolution
    px = 1.0 / R
    c = (torch.arange(R, dtype=torch.float32) + 0.5) / R
    y, x = torch.meshgrid(c, c, indexing="ij")
    x, y = x[None], y[None]  # (1, R, R)

    def s(name: str) -> Tensor:  # a scalar parameter as (B, 1, 1)
        return p[name].view(B, 1, 1)

    def col(name: str) -> Tensor:  # a colour parameter as (B, 3, 1, 1)
        return p[name].view(B, 3, 1, 1)

    # Background: a two-colour gradient along a random direction with a soft wave texture.
    a = s("bg_angle")
    t = (x - 0.5) * torch.cos(a) + (y - 0.5) * torch.sin(a) + 0.5
    wave = torch.sin(s("bg_freq") * (x * torch.sin(a) - y * torch.cos(a)) * 2 * np.pi) * s("bg_tex")
    img = col("bg_a") * (1 - t).unsqueeze(1) + col("bg_b") * t.unsqueeze(1) + wave.unsqueeze(1)

    hcx, hcy, hrx, hry = s("head_cx"), s("head_cy"), s("head_rx"), s("head_ry")
    style = s("hair_style")
    hair_col = col("hair")
    # Hair texture: fine strands along a direction, as a multiplicative modulation.
    ha = s("hair_angle")
    strands = 0.85 + 0.15 * torch.sin(s("hair_freq") * (x * torch.cos(ha) + y * torch.sin(ha)))
    hair_tex = hair_col * strands.unsqueeze(1)

    # Back hair (behind head): long falls to the shoulders, short only rims the skull.
    long_back = _soft(_ellipse(x, y, hcx, hcy + 0.06, hrx * 1.3, hry * 1.3), px) * (style == 2)
    short_back = _soft(_ellipse(x, y, hcx, hcy - 0.03, hrx * 1.08, hry * 1.05), px) * (
        (style == 1) | (style == 3)
    )
    short_back = short_back * _soft(y - (hcy - 0.05), px)
    img = _over(img, torch.clamp(long_back + short_back, 0, 1), hair_tex)

    # Shoulders and neck.
    shoulders = _soft(_ellipse(x, y, hcx, torch.full_like(hcx, 1.18), s("shoulder_rx"), hry * 0.95), px)
    img = _over(img, shoulders, col("cloth"))
    skin = col("skin")
    neck = _soft(torch.maximum((x - hcx).abs() - s("neck_w"), hcy + 0.1 - y), px) * _soft(y - 1.05, px)
    img = _over(img, neck, skin * 0.82)

    # Ears at eye level.
    ey = s("eye_y")
    for side in (-1.0, 1.0):
        ear = _soft(_ellipse(x, y, hcx + side * hrx * 0.98, ey + 0.04, hrx * 0.16, hry * 0.2), px)
        img = _over(img, ear * s("ears"), skin * 0.9)

    # Head: ellipse on top, a superellipse (exponent jaw_p) below the eye line for the jaw.
    dx, dy = (x - hcx) / hrx, (y - hcy) / hry
    lower = y > hcy
    pj = s("jaw_p")
    r_low = (dx.abs() ** pj + dy.abs() ** pj + 1e-12) ** (1 / pj)
    r_up = torch.sqrt(dx**2 + dy**2 + 1e-12)
    head = _soft((torch.where(lower, r_low, r_up) - 1) * torch.minimum(hrx, hry), px)
    img = _over(img, head, skin)

    # Beard: lower face below the mouth, darker hair colour with strands.
    mouth_y = s("mouth_y")
    beard = head * _soft(mouth_y - 0.01 - y, px * 2).mul(-1).add(1) * s("beard")
    img = _over(img, beard * 0.85, hair_tex * 0.8)

    # Front hair: the part of the head above the hairline (lower at the temples); fringe styles lower.
    hl = s("hairline") + (style == 3) * 0.07 + 0.12 * ((x - hcx) / hrx) ** 2
    front = head * _soft(y - hl, px) * (style > 0)
    img = _over(img, front, hair_tex)

    # Brows: tapered arcs above each eye.
    exl, exr = hcx - s("eye_dx"), hcx + s("eye_dx")
    bw, bt, arch = s("brow_w"), s("brow_t"), s("brow_arch")
    by = ey - s("brow_dy")
    eyew, eyeh = s("eye_w"), s("eye_w") * s("eye_h")
    iris_r = eyeh * 1.6 * s("iris_r")
    gaze = p["gaze"].view(B, 2, 1, 1)
    for ex in (exl, exr):
        sx = (x - ex) / bw
        centre = by - arch * (1 - sx**2)
        thick = bt * (1 - 0.5 * sx.clamp(-1, 1).abs())
        brow = _soft(torch.maximum((y - centre).abs() - thick, sx.abs() - 1), px)
        img = _over(img, brow, hair_col * 0.7)

        # Eye: almond sclera, iris and pupil clipped to it, upper lid line, highlight.
        se = (x - ex) / eyew
        half = eyeh * (1 - se.clamp(-1, 1) ** 2).clamp_min(0) ** 0.7
        sclera_sd = torch.maximum((y - ey).abs() - half, se.abs() - 1)
        sclera = _soft(sclera_sd * 0.5, px)
        img = _over(img, sclera, torch.full_like(skin, 0.95))
        icx, icy = ex + gaze[:, 0] * eyew * 0.4, ey + gaze[:, 1] * eyeh * 0.3
        iris = _soft(_ellipse(x, y, icx, icy, iris_r, iris_r), px) * sclera
        img = _over(img, iris, col("iris"))
        pupil = _soft(_ellipse(x, y, icx, icy, iris_r * 0.45, iris_r * 0.45), px) * sclera
        img = _over(img, pupil, torch.full_like(skin, 0.03))
        lid = _soft(torch.maximum((y - (ey - half)).abs() - px * 1.2, se.abs() - 1.1), px)
        img = _over(img, lid, skin * 0.25)
        hl_ = _soft(_ellipse(x, y, icx - iris_r * 0.3, icy - iris_r * 0.3, iris_r * 0.2, iris_r * 0.2), px)
        img = _over(img, hl_ * sclera, torch.ones_like(skin))

    # Nose: a shaded ridge line from between the eyes to the tip, two nostrils.
    ny, nw = s("nose_y"), s("nose_w")
    ridge_t = ((y - ey) / (ny - ey)).clamp(0, 1)
    ridge = _soft(
        torch.maximum((x - hcx - 0.3 * nw).abs() - px * 0.8, (y - (ey + ny) / 2).abs() - (ny - ey) / 2), px
    )
    img = _over(img, ridge * ridge_t * 0.5, skin * 0.6)
    for side in (-1.0, 1.0):
        nostril = _soft(_ellipse(x, y, hcx + side * nw * 0.55, ny, nw * 0.35, nw * 0.2), px)
        img = _over(img, nostril, skin * 0.3)
    tip = _soft(_ellipse(x, y, hcx, ny - nw * 0.15, nw * 0.5, nw * 0.3), px)
    img = _over(img, tip * 0.35, torch.clamp(skin * 1.12, 0, 1))

    # Mouth: upper and lower lips around a smile curve; an open mouth shows a dark gap.
    mw = s("mouth_w")
    sm = (x - hcx) / mw
    inside = (1 - sm**2).clamp_min(0)
    line = mouth_y + s("smile") * inside
    gap = s("mouth_open") * inside.sqrt()
    up = _soft(
        torch.maximum(
            torch.maximum(line - gap / 2 - y - s("lip_up") * inside.sqrt(), y - line + gap / 2), sm.abs() - 1
        ),
        px,
    )
    lo = _soft(
        torch.maximum(
            torch.maximum(y - line - gap / 2 - s("lip_lo") * inside.sqrt(), line + gap / 2 - y), sm.abs() - 1
        ),
        px,
    )
    img = _over(img, torch.clamp(up + lo, 0, 1), col("lip"))
    hole = _soft(torch.maximum((y - line).abs() - gap / 2, sm.abs() - 0.95), px)
    img = _over(img, hole * (gap.amax(dim=(1, 2), keepdim=True) > 0), torch.full_like(skin, 0.1))
    corner = _soft(torch.maximum((y - line).abs() - px * 0.8, sm.abs() - 1.02), px)
    img = _over(img, corner * 0.6, col("lip") * 0.4)

    # Lighting: Lambertian shading of an ellipsoid head, over everything on the head and neck.
    light = p["light"].view(B, 2, 1, 1)
    nz = (1 - dx**2 - dy**2).clamp_min(0).sqrt()
    lz = (1 - (light**2).sum(1)).clamp_min(0.1).sqrt()
    lam = (dx * light[:, 0] + dy * light[:, 1] + nz * lz).clamp_min(0)
    k = s("light_k")
    shade = 1 - k + k * lam * 1.2
    on_body = torch.clamp(head + neck, 0, 1)
    img = img * (1 + on_body * (shade - 1)).unsqueeze(1)

    # Glasses last: frames are not shaded like skin.
    gr, gp, gt = s("glass_r"), s("glass_p"), s("glass_t")
    g_on = s("glasses")
    for ex in (exl, exr):
        d = ((x - ex).abs() / gr) ** gp + ((y - ey).abs() / (gr * 0.8)) ** gp
        d = (d + 1e-12) ** (1 / gp)
        lens = _soft((d - 1) * gr, px) * g_on
        img = _over(img, lens * 0.12, col("glass_col"))
        frame = _soft(((d - 1).abs() * gr - gt), px) * g_on
        img = _over(img, frame, col("glass_col") * 0.5)
    bridge = _soft(torch.maximum((y - ey + 0.01).abs() - gt, (x - hcx).abs() - (s("eye_dx") - gr)), px) * g_on
    img = _over(img, bridge, col("glass_col") * 0.5)

    img = (img * p["temp"].view(B, 3, 1, 1)).clamp(0, 1) ** s("gamma").unsqueeze(1)

    nose_tip = torch.stack([hcx, ny - p["nose_w"].view(B, 1, 1) * 0.15], -1)
    lm = torch.stack(
        [
            torch.stack([exl, ey], -1),
            torch.stack([exr, ey], -1),
            nose_tip,
            torch.stack([hcx - mw, mouth_y], -1),
            torch.stack([hcx + mw, mouth_y], -1),
        ],
        1,
    ).view(B, 5, 2)
    return img.clamp(0, 1).contiguous(), lm * R


def render(seed: int, indices: np.ndarray | Sequence[int], resolution: int) -> tuple[Tensor, Tensor]:
    """Faces ``indices`` of face set ``seed`` at ``resolution``: images (B, 3, R, R) and landmarks (B, 5, 2)."""
    return render_faces(sample_params(seed, indices), resolution)
