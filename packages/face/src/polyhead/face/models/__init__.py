"""Face restoration models: the VQ dictionary (stage 1), RestoreFormer++ (stage 2), the U-Net baseline
without a prior, and the patch discriminator."""

from polyhead.face.models.discriminator import PatchDiscriminator
from polyhead.face.models.quantizer import VectorQuantizer
from polyhead.face.models.restoreformer import RestoreFormerPP
from polyhead.face.models.unet import UNetRestorer
from polyhead.face.models.vqgan import VQAutoencoder

__all__ = ["PatchDiscriminator", "RestoreFormerPP", "UNetRestorer", "VQAutoencoder", "VectorQuantizer"]
