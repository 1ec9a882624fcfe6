"""Zero-DCE-style enhancer: a baseline placed in front of the detector.

Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image Enhancement" (CVPR 2020,
arXiv:2001.06826). DCE-Net: seven 3x3 convolutions with symmetric skip concatenations predict ``n`` per-pixel
curve maps; the light-enhancement curve ``LE(x) = x + a * x * (1 - x)`` is applied ``n`` times.

Differences from the paper: it is trained end to end with the detector's loss only (the FeatEnHancer
paper's comparison setting), not with Zero-DCE's non-reference losses; the width is a parameter (the paper
uses 32 channels; the quick runs use fewer on CPU).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def apply_curves(x: Tensor, alphas: Tensor, iterations: int) -> Tensor:
    """``x (B, 3, H, W)``, ``alphas (B, 3 * iterations, H, W)`` -> the image after ``iterations`` LE steps."""
    for a in alphas.split(3, dim=1)[:iterations]:
        x = x + a * x * (1 - x)
    return x


class DCENet(nn.Module):
    """Curve-parameter estimator: ``depth`` convs with symmetric skips, tanh curve maps and its features.

    Args:
        channels: width of every hidden convolution (paper: 32).
        iterations: curve iterations (paper: 8).
        depth: convolutions, odd, >= 3 (paper: 7).
    """

    def __init__(self, *, channels: int = 32, iterations: int = 8, depth: int = 7) -> None:
        super().__init__()
        if channels < 1 or iterations < 1:
            raise ValueError(f"channels and iterations must be >= 1, got {channels}, {iterations}")
        if depth < 3 or depth % 2 == 0:
            raise ValueError(f"depth must be odd and >= 3, got {depth}")
        self.iterations = iterations
        half = depth // 2
        self.down = nn.ModuleList(
            nn.Conv2d(3 if i == 0 else channels, channels, 3, padding=1) for i in range(half + 1)
        )
        self.up = nn.ModuleList(nn.Conv2d(2 * channels, channels, 3, padding=1) for _ in range(half - 1))
        self.head = nn.Conv2d(2 * channels, 3 * iterations, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, 3, H, W)`` -> ``(alphas (B, 3 * iterations, H, W), features (B, channels, H, W))``."""
        skips = []
        h = x
        for conv in self.down:
            h = self.act(conv(h))
            skips.append(h)
        skips.pop()  # the deepest map is h itself
        for conv in self.up:
            h = self.act(conv(torch.cat([h, skips.pop()], dim=1)))
        feats = h
        return torch.tanh(self.head(torch.cat([h, skips.pop()], dim=1))), feats


class ZeroDCE(nn.Module):
    """Image -> curve-enhanced image of the same size (values may leave [0, 1] slightly; not clipped)."""

    def __init__(self, *, channels: int = 32, iterations: int = 8, depth: int = 7) -> None:
        super().__init__()
        self.net = DCENet(channels=channels, iterations=iterations, depth=depth)

    def forward(self, x: Tensor) -> Tensor:
        alphas, _ = self.net(x)
        return apply_curves(x, alphas, self.net.iterations)
