"""Training losses of the face models that need no pretrained network.

- L1 pixel loss and the SSIM loss ``1 - SSIM`` (Wang et al. 2004; torchmetrics' differentiable SSIM,
  11x11 Gaussian window, sigma 1.5) or MS-SSIM when the image is large enough for its five scales.
- Hinge adversarial losses for the patch discriminator (Lim & Ye 2017, as VQGAN / RestoreFormer++ use).
Perceptual (VGG), LPIPS and identity terms need pretrained weights: :mod:`polyhead.face.perceptual`.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)


def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    return F.l1_loss(pred, target)


def ssim_loss(pred: Tensor, target: Tensor, *, multiscale: bool = False) -> Tensor:
    """``1 - SSIM`` (or MS-SSIM) of images in [0, 1]; MS-SSIM needs sides >= 161 px (5 scales, 11 px)."""
    if multiscale:
        if min(pred.shape[-2:]) < 161:
            raise ValueError(f"MS-SSIM needs images of at least 161x161 pixels, got {tuple(pred.shape[-2:])}")
        return 1 - multiscale_structural_similarity_index_measure(pred, target, data_range=1.0)
    ssim = structural_similarity_index_measure(pred, target, data_range=1.0)
    assert isinstance(ssim, Tensor)  # a (value, image) tuple only with return_full_image=True
    return 1 - ssim


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: Tensor) -> Tensor:
    """Generator side of the hinge loss: -mean(D(fake))."""
    return -fake_logits.mean()
