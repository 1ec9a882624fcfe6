"""torchvision detectors (FCOS, RetinaNet, Faster R-CNN) on small from-scratch backbones.

Built for square inputs of ``image_size`` pixels (the datamodule letterboxes every image), so torchvision's
own transform does no resizing; it only normalises with a fixed mean/std. Anchors and FPN levels follow
the small objects of low-resolution images (strides 8-32).

- FCOS: Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection" (ICCV 2019, arXiv:1904.01355).
- RetinaNet: Lin et al., "Focal Loss for Dense Object Detection" (ICCV 2017, arXiv:1708.02002).
- Faster R-CNN: Ren et al. (NeurIPS 2015, arXiv:1506.01497), with an FPN (Lin et al. 2017).
"""

from __future__ import annotations

from typing import Literal

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from polyhead.lowlight.models.backbones import build_backbone

DetectorName = Literal["fcos", "retinanet", "faster_rcnn"]
BackboneName = Literal["tiny", "resnet18", "mobilenet_v3"]


def build_detector(
    name: DetectorName,
    *,
    num_classes: int,
    image_size: int,
    backbone: BackboneName = "tiny",
    fpn_channels: int = 64,
    backbone_weights: str | None = None,
    score_thresh: float = 0.05,
    detections_per_img: int = 100,
) -> nn.Module:
    """A torchvision detector whose ``num_classes`` excludes the background (Faster R-CNN adds it)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    common = {
        "min_size": image_size,
        "max_size": image_size,
        "image_mean": [0.5] * 3,
        "image_std": [0.25] * 3,
    }
    body = build_backbone(backbone, out_channels=fpn_channels, weights=backbone_weights)
    if name == "fcos":
        anchors = AnchorGenerator(sizes=((8,), (16,), (32,)), aspect_ratios=((1.0,),) * 3)
        return FCOS(body, num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                    detections_per_img=detections_per_img, topk_candidates=200, **common)  # fmt: skip
    if name == "retinanet":
        sizes = tuple((s, int(s * 1.26), int(s * 1.59)) for s in (8, 16, 32))
        anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * 3)
        return RetinaNet(body, num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                         detections_per_img=detections_per_img, topk_candidates=200, **common)  # fmt: skip
    if name == "faster_rcnn":
        anchors = AnchorGenerator(sizes=((12,), (24,), (48,)), aspect_ratios=((0.5, 1.0, 2.0),) * 3)
        pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2"], output_size=7, sampling_ratio=2)
        return FasterRCNN(
            body, None, rpn_anchor_generator=anchors, box_roi_pool=pool,
            box_head=TwoMLPHead(fpn_channels * 49, 256), box_predictor=FastRCNNPredictor(256, num_classes + 1),
            rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
            rpn_post_nms_top_n_test=150, box_batch_size_per_image=128, box_score_thresh=score_thresh,
            box_detections_per_img=detections_per_img, **common,
        )  # fmt: skip
    raise ValueError(f"detector must be 'fcos', 'retinanet' or 'faster_rcnn', got {name!r}")
