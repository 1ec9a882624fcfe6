"""The baseline without a prior: a U-Net restorer of the same encoder/decoder widths as RestoreFormer++.

Ronneberger et al., "U-Net" (MICCAI 2015, arXiv:1505.04597): the encoder's features at each resolution
are concatenated into the decoder (1x1 conv merge). It has no dictionary and no attention, so a gap to
RestoreFormer++ at the same budget is the contribution of the dictionary prior and the cross-attention.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from polyhead.face.models.vqgan import Decoder, Encoder


class UNetRestorer(nn.Module):
    """Degraded face ``(B, 3, R, R)`` in [-1, 1] -> restored face, with skip connections at every level."""

    def __init__(
        self,
        *,
        resolution: int = 64,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        z_dim: int = 64,
    ) -> None:
        super().__init__()
        f = 2 ** (len(channel_mult) - 1)
        if resolution % f or resolution < f:
            raise ValueError(f"resolution {resolution} must be a multiple of the downsampling factor {f}")
        self.encoder = Encoder(
            channels=channels, channel_mult=channel_mult, z_dim=z_dim, resolution=resolution
        )
        self.decoder = Decoder(
            channels=channels, channel_mult=channel_mult, z_dim=z_dim, resolution=resolution
        )
        self.skips = nn.ModuleDict(
            {
                str(r): nn.Conv2d(self.decoder.widths[r] + self.encoder.widths[r], self.decoder.widths[r], 1)
                for r in self.decoder.widths
            }
        )

    def forward(self, lq: Tensor) -> Tensor:
        z, feats = self.encoder(lq)

        def fuse(r: int, h: Tensor) -> Tensor:
            return self.skips[str(r)](torch.cat([h, feats[r]], 1))

        return self.decoder(z, fuse)
