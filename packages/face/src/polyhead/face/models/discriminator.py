"""A patch discriminator for the adversarial loss (PatchGAN).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks" (CVPR 2017,
arXiv:1611.07004), as used by VQGAN and RestoreFormer++: strided 4x4 convs with LeakyReLU, one logit per
patch; trained with the hinge loss (:mod:`polyhead.face.losses`).
"""

from __future__ import annotations

from torch import Tensor, nn

from polyhead.face.models.blocks import group_norm


class PatchDiscriminator(nn.Module):
    """Image ``(B, 3, R, R)`` -> patch logits ``(B, 1, R/2**layers, R/2**layers)`` (about)."""

    def __init__(self, *, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(layers - 1):
            mods += [nn.Conv2d(c, 2 * c, 4, 2, 1), group_norm(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
