"""An optional enhancer in front of a torchvision detector, trained end to end with the detection loss.

``enhancer`` is ``featenhancer`` (the paper's model), ``zero_dce`` (the enhancement baseline trained the
same way) or ``none`` (the detector alone). Labels are 0-based category indices everywhere outside; Faster
R-CNN's background class 0 is handled here.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from polyhead.lowlight.models.detectors import BackboneName, DetectorName, build_detector
from polyhead.lowlight.models.featenhancer import FeatEnHancer
from polyhead.lowlight.models.zero_dce import ZeroDCE

EnhancerName = Literal["featenhancer", "zero_dce", "none"]


def build_enhancer(
    name: EnhancerName,
    *,
    channels: int = 16,
    iterations: int = 8,
    fusion_dim: int = 32,
    fusion_heads: int = 4,
    attention: dict[str, Any] | None = None,
) -> nn.Module | None:
    if name == "featenhancer":
        return FeatEnHancer(channels=channels, iterations=iterations, dim=fusion_dim, num_heads=fusion_heads,
                            attention=attention)  # fmt: skip
    if name == "zero_dce":
        return ZeroDCE(channels=channels, iterations=iterations)
    if name == "none":
        return None
    raise ValueError(f"enhancer must be 'featenhancer', 'zero_dce' or 'none', got {name!r}")


class LowLightDetector(nn.Module):
    """``images (B, 3, S, S)`` in [0, 1] -> losses (training, with targets) or detections (eval)."""

    def __init__(
        self,
        *,
        enhancer: nn.Module | None,
        detector: DetectorName,
        num_classes: int,
        image_size: int,
        backbone: BackboneName = "tiny",
        fpn_channels: int = 64,
        backbone_weights: str | None = None,
        score_thresh: float = 0.05,
    ) -> None:
        super().__init__()
        self.enhancer = enhancer
        self.detector_name = detector
        self.detector = build_detector(detector, num_classes=num_classes, image_size=image_size, backbone=backbone,
                                       fpn_channels=fpn_channels, backbone_weights=backbone_weights,
                                       score_thresh=score_thresh)  # fmt: skip
        self._label_offset = 1 if detector == "faster_rcnn" else 0

    def enhance(self, images: Tensor) -> Tensor:
        return images if self.enhancer is None else self.enhancer(images)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        x = self.enhance(images)
        if targets is not None and self._label_offset:
            targets = [{**t, "labels": t["labels"] + self._label_offset} for t in targets]
        out = self.detector(list(x), targets)
        if targets is None and self._label_offset:
            out = [{**d, "labels": d["labels"] - self._label_offset} for d in out]
        return out

    def aux_loss(self) -> Tensor | None:
        return getattr(self.enhancer, "aux_loss", None)
