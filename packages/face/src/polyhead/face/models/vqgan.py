"""The reconstruction-oriented high-quality dictionary (RestoreFormer++ stage 1): a VQ autoencoder.

Wang et al., "RestoreFormer++" (TPAMI 2023, arXiv:2308.07228), Sec. 3.1: a VQGAN (Esser et al. 2021,
arXiv:2012.09841) trained to reconstruct high-quality faces; its codebook is the dictionary of
high-quality facial priors and its decoder the generator that stage 2 fine-tunes. Here the encoder
downsamples by ``2 ** (len(channel_mult) - 1)`` (8 with the default four levels: 64 px -> 8 x 8 codes;
the paper: 512 px -> 16 x 16) and both encoder and decoder return their features per resolution, which
stage 2 fuses at several scales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

from torch import Tensor, nn

from polyhead.face.models.blocks import Downsample, ResBlock, Upsample, group_norm
from polyhead.face.models.quantizer import QuantizerOutput, VectorQuantizer


class Encoder(nn.Module):
    """Image ``(B, 3, R, R)`` in [-1, 1] -> latent ``(B, z_dim, R/f, R/f)`` and ``{resolution: features}``."""

    def __init__(self, *, channels: int, channel_mult: Sequence[int], z_dim: int, resolution: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        self.levels = nn.ModuleList()
        c = channels
        self.widths: dict[int, int] = {}
        res = resolution
        for i, m in enumerate(channel_mult):
            block = nn.Module()
            block.res = ResBlock(c, channels * m)
            c = channels * m
            self.widths[res] = c
            block.down = Downsample(c) if i < len(channel_mult) - 1 else nn.Identity()
            if i < len(channel_mult) - 1:
                res //= 2
            self.levels.append(block)
        self.mid = ResBlock(c)
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, z_dim, 1))
        self.latent_resolution = res

    def forward(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        h = self.conv_in(x)
        feats: dict[int, Tensor] = {}
        for block in self.levels:
            # levels are plain nn.Module containers: their res/down submodules read as Tensor | Module
            h = cast(nn.Module, block.res)(h)
            feats[h.shape[-1]] = h
            h = cast(nn.Module, block.down)(h)
        h = self.mid(h)
        feats[h.shape[-1]] = h  # the latent resolution: features after the middle block
        return self.out(h), feats


Fuse = Callable[[int, Tensor], Tensor]


class Decoder(nn.Module):
    """Latent -> image; ``fuse(resolution, h)`` may rewrite the features at each resolution (stage 2)."""

    def __init__(self, *, channels: int, channel_mult: Sequence[int], z_dim: int, resolution: int) -> None:
        super().__init__()
        mults = list(channel_mult)[::-1]
        c = channels * mults[0]
        self.conv_in = nn.Conv2d(z_dim, c, 3, padding=1)
        self.mid = ResBlock(c)
        self.levels = nn.ModuleList()
        self.widths: dict[int, int] = {}
        res = resolution // 2 ** (len(mults) - 1)
        for i, m in enumerate(mults):
            block = nn.Module()
            block.res = ResBlock(c, channels * m)
            c = channels * m
            self.widths[res] = c
            block.up = Upsample(c) if i < len(mults) - 1 else nn.Identity()
            res *= 2
            self.levels.append(block)
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, z: Tensor, fuse: Fuse | None = None) -> Tensor:
        h = self.mid(self.conv_in(z))
        for block in self.levels:
            # levels are plain nn.Module containers: their res/up submodules read as Tensor | Module
            h = cast(nn.Module, block.res)(h)
            if fuse is not None:
                h = fuse(h.shape[-1], h)
            h = cast(nn.Module, block.up)(h)
        return self.out(h)


class VQAutoencoder(nn.Module):
    """Encoder -> :class:`VectorQuantizer` -> decoder: reconstructs high-quality faces (stage 1).

    Args:
        resolution: image side (must be divisible by the downsampling factor).
        channels: base width; level i has ``channels * channel_mult[i]``.
        channel_mult: width multipliers per level (one fewer downsampling than levels).
        z_dim: code width.
        num_codes: dictionary size.
        beta: commitment weight.
    """

    def __init__(
        self,
        *,
        resolution: int = 64,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        z_dim: int = 64,
        num_codes: int = 512,
        beta: float = 0.25,
    ) -> None:
        super().__init__()
        f = 2 ** (len(channel_mult) - 1)
        if resolution % f or resolution < f:
            raise ValueError(f"resolution {resolution} must be a multiple of the downsampling factor {f}")
        self.resolution = resolution
        self.encoder = Encoder(
            channels=channels, channel_mult=channel_mult, z_dim=z_dim, resolution=resolution
        )
        self.quantizer = VectorQuantizer(num_codes=num_codes, dim=z_dim, beta=beta)
        self.decoder = Decoder(
            channels=channels, channel_mult=channel_mult, z_dim=z_dim, resolution=resolution
        )

    def forward(self, x: Tensor) -> tuple[Tensor, QuantizerOutput, Tensor]:
        """Reconstruct ``x``; returns ``(reconstruction, quantiser output, pre-quantisation latent)``."""
        z, _ = self.encoder(x)
        q = self.quantizer(z)
        return self.decoder(q.z_q), q, z
