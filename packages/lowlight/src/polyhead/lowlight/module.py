"""The LightningModule of ``polyhead-lowlight``: an optional enhancer + a torchvision detector.

    polyhead-lowlight fit                                       # FCOS + FeatEnHancer on the dark scenes
    polyhead-lowlight fit --model.enhancer zero_dce             # the Zero-DCE-style baseline
    polyhead-lowlight fit --model.enhancer none --data.light normal   # the normal-light ceiling
    polyhead-lowlight fit --model.attention '{name: moh}'       # another fusion attention
    polyhead-lowlight test                                      # COCO mAP, AP50, AP75, AP S/M/L -> metrics.json
    polyhead-lowlight predict photo.jpg                         # predictions.json + drawn images
    polyhead-lowlight fit --data.format coco --data.train a.json --data.val b.json --data.test c.json

Training minimises the detector's own losses only (classification, box regression, centerness or RPN);
the enhancer receives no enhancement target. Evaluation: torchmetrics' ``MeanAveragePrecision`` on the
pycocotools backend, boxes in the original image pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from polyhead.lowlight.models import LowLightDetector, build_enhancer
from polyhead.lowlight.models.detectors import BackboneName, DetectorName
from polyhead.lowlight.models.lowlight_detector import EnhancerName
from polyhead.train import run_dir

METRIC_KEYS = {"map": "map", "map_50": "ap50", "map_75": "ap75", "map_small": "ap_small",
               "map_medium": "ap_medium", "map_large": "ap_large", "mar_100": "ar100"}  # fmt: skip


def _to_original(detections: list[dict[str, Tensor]], metas: list[dict]) -> list[dict[str, Tensor]]:
    """Letterboxed-canvas boxes -> original image pixels (clipped to the image)."""
    out = []
    for d, m in zip(detections, metas):
        boxes = d["boxes"] / m["scale"]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, m["width"])
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, m["height"])
        out.append({**d, "boxes": boxes})
    return out


class LowLightModule(pl.LightningModule):
    """Low-light detector: ``enhancer`` in front of ``detector``.

    Args:
        enhancer: ``featenhancer`` (the paper), ``zero_dce`` (baseline) or ``none`` (detector alone).
        detector: ``fcos``, ``retinanet`` or ``faster_rcnn`` (torchvision).
        backbone: ``tiny``, ``resnet18`` or ``mobilenet_v3``, always built without downloaded weights.
        backbone_weights: a local state-dict file for the backbone body (loaded with ``weights_only=True``).
        fpn_channels: FPN width (FCOS's GroupNorm head needs a multiple of 32).
        enhancer_channels: width of the curve estimators (Zero-DCE / each FeatEnHancer scale).
        curve_iterations: curve iterations of the enhancers.
        fusion_dim: FeatEnHancer's attention token width.
        fusion_heads: FeatEnHancer's attention heads.
        attention: the fusion attention, ``{name: multiscale_cross}`` by default; any ``polyhead.attention``
            variant.
        lr: AdamW peak learning rate (one-cycle schedule).
        weight_decay: AdamW weight decay.
        score_thresh: detections below this score are dropped before evaluation.
        draw_thresh: predictions drawn on images from this score.
        categories: category names in label order (filled from the data at ``fit``; kept in the checkpoint).
        image_size: input side (filled from the data at ``fit``; kept in the checkpoint).
    """

    def __init__(
        self,
        *,
        enhancer: EnhancerName = "featenhancer",
        detector: DetectorName = "fcos",
        backbone: BackboneName = "tiny",
        backbone_weights: str | None = None,
        fpn_channels: int = 64,
        enhancer_channels: int = 16,
        curve_iterations: int = 8,
        fusion_dim: int = 32,
        fusion_heads: int = 4,
        attention: dict[str, Any] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        score_thresh: float = 0.05,
        draw_thresh: float = 0.3,
        categories: list[str] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        if detector == "fcos" and fpn_channels % 32:
            raise ValueError(
                f"fpn_channels must be a multiple of 32 for FCOS (GroupNorm(32)), got {fpn_channels}"
            )
        if backbone_weights is not None and not Path(backbone_weights).is_file():
            raise FileNotFoundError(f"model.backbone_weights: no such file: {backbone_weights}")
        self.save_hyperparameters()
        self.net: LowLightDetector | None = None
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
        self.test_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
        self._explain_batch: tuple[Tensor, list[dict]] | None = None
        self._predictions: list[dict] = []
        self._predicted_images: list[dict] = []
        if categories is not None and image_size is not None:
            self.build(list(categories), int(image_size))

    # ---- building from the data (fit) or from the checkpoint (test / predict) ---------------------
    def build(self, categories: list[str], image_size: int) -> None:
        hp = self.hparams
        enhancer = build_enhancer(hp.enhancer, channels=hp.enhancer_channels, iterations=hp.curve_iterations,
                                  fusion_dim=hp.fusion_dim, fusion_heads=hp.fusion_heads, attention=hp.attention)  # fmt: skip
        self.net = LowLightDetector(enhancer=enhancer, detector=hp.detector, num_classes=len(categories),
                                    image_size=image_size, backbone=hp.backbone, fpn_channels=hp.fpn_channels,
                                    backbone_weights=hp.backbone_weights, score_thresh=hp.score_thresh)  # fmt: skip
        # Kept in the checkpoint's hyper-parameters: test/predict rebuild exactly this network.
        self.hparams["categories"] = list(categories)
        self.hparams["image_size"] = int(image_size)

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        hp = self.hparams
        if self.net is None:
            if stage != "fit" and hp.categories is None:
                dm.dataset("test")
            elif stage == "fit":
                dm.dataset("train")
            self.build(list(dm.categories), int(dm.image_size))
        dm.bind(categories=list(hp.categories), image_size=int(hp.image_size))
        if self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            if stage == "fit":
                dm.dataset("train")
                dm.dataset("val")
                dm.write_settings(d / "data.json")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint["lowlight"] = {"categories": list(self.hparams.categories), "image_size": int(self.hparams.image_size),
                                  "data": dm.settings() if dm is not None else None}  # fmt: skip

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.net is None and "lowlight" in checkpoint:
            self.build(checkpoint["lowlight"]["categories"], checkpoint["lowlight"]["image_size"])

    # ---- steps ------------------------------------------------------------------------------------
    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        assert self.net is not None
        return self.net(images)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, targets, _ = batch
        assert self.net is not None  # built in setup() or on_load_checkpoint() before any step
        losses = self.net(images, targets)
        loss = sum(losses.values())
        aux = self.net.aux_loss()
        if aux is not None:
            loss = loss + aux
        n = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        return loss

    def _evaluate(self, metric: MeanAveragePrecision, batch: Any) -> None:
        images, targets, metas = batch
        dets = _to_original(self(images), metas)
        gts = [{"boxes": t["boxes"] / m["scale"], "labels": t["labels"]} for t, m in zip(targets, metas)]
        metric.update([{k: d[k] for k in ("boxes", "scores", "labels")} for d in dets], gts)

    def _log_map(self, split: str, metric: MeanAveragePrecision) -> None:
        values = metric.compute()
        for k, name in METRIC_KEYS.items():
            self.log(f"{split}/{name}", float(values[k]), prog_bar=name == "map", sync_dist=False)
        metric.reset()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(self.val_map, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(self.test_map, batch)
        if batch_idx == 0:
            self._explain_batch = (batch[0][:4].detach(), batch[2][:4])

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)
        dm = self.trainer.datamodule
        for reason, count in sorted(dm.skipped.items()):
            self.log(f"test/skipped_{reason}", float(count))

    def on_test_end(self) -> None:
        if self._explain_batch is not None and self.trainer.is_global_zero:
            from polyhead.lowlight.explain import explain

            images, metas = self._explain_batch
            explain(self, images, metas, run_dir(self.trainer) / "media")
            self._explain_batch = None

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict]:
        images, _, metas = batch
        dets = _to_original(self(images), metas)
        cats = self.hparams.categories
        rows = []
        for d, m in zip(dets, metas):
            image_id = len(self._predicted_images) + 1
            self._predicted_images.append({"id": image_id, "file_name": m["path"], "width": m["width"],
                                           "height": m["height"], "detections": d})  # fmt: skip
            for box, score, label in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
                rows.append({"image_id": image_id, "category_id": int(label) + 1, "category": cats[label],
                             "bbox": [round(box[0], 2), round(box[1], 2), round(box[2] - box[0], 2),
                                      round(box[3] - box[1], 2)], "score": round(float(score), 5)})  # fmt: skip
        self._predictions += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        from polyhead.lowlight.predict_writer import write_predictions

        out = run_dir(self.trainer) / "predictions"
        path = write_predictions(out, self._predicted_images, self._predictions, list(self.hparams.categories),
                                 draw_thresh=self.hparams.draw_thresh)  # fmt: skip
        print(f"polyhead-lowlight: wrote {len(self._predictions)} detections on {len(self._predicted_images)} "
              f"image(s) to {path} and drawn images to {out / 'images'}")  # fmt: skip
        self._predictions, self._predicted_images = [], []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches)),
            pct_start=0.15,
        )  # fmt: skip
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
