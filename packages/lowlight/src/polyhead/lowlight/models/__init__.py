"""FeatEnHancer, the Zero-DCE baseline, small backbones and the torchvision detectors they feed."""

from polyhead.lowlight.models.backbones import TinyBackbone, build_backbone
from polyhead.lowlight.models.detectors import build_detector
from polyhead.lowlight.models.featenhancer import FeatEnHancer
from polyhead.lowlight.models.lowlight_detector import LowLightDetector, build_enhancer
from polyhead.lowlight.models.zero_dce import DCENet, ZeroDCE, apply_curves

__all__ = [
    "DCENet", "FeatEnHancer", "LowLightDetector", "TinyBackbone", "ZeroDCE", "apply_curves", "build_backbone",
    "build_detector", "build_enhancer",
]  # fmt: skip
