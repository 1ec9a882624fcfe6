"""Convolutional building blocks shared by the face models (VQGAN-style residual blocks, resampling).

As in Esser et al., "Taming Transformers for High-Resolution Image Synthesis" (CVPR 2021,
arXiv:2012.09841), whose VQGAN the RestoreFormer++ dictionary follows: GroupNorm -> SiLU -> 3x3 conv,
twice, with a 1x1 skip when the width changes; stride-2 conv down, nearest + conv up.
"""

from __future__ import annotations

from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels`` (the models are narrow on CPU)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int | None = None) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.body = nn.Sequential(
            group_norm(c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            group_norm(c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.up(x))
