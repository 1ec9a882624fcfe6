"""Dataset and LightningDataModule for low-light detection (``data`` section of ``polyhead-lowlight``).

Sources (``format``):

- ``generated`` (default): the rendered scenes of :mod:`polyhead.lowlight.data.scenes`, dark copies by
  default, ``light: normal`` for the normal-light copies (the ablation's ceiling);
- ``coco``: ``train`` / ``val`` / ``test`` are COCO JSON files (``image_dir`` the image root, default each
  JSON's folder);
- ``voc``: ``root`` is a VOC folder, ``train`` / ``val`` / ``test`` name ``ImageSets/Main`` lists;
- ``exdark``: ``root`` is ``ExDark_Annno``, ``image_dir`` is ``ExDark``; ``darkface``: ``root`` is
  ``label/``, ``image_dir`` is ``image/``. These two are split by ``split_fractions`` with ``seed``.

``synthesize: true`` darkens normal-light images on the fly with the low-light synthesiser (seeded per
image index, so every worker gives the same image); its settings go to ``data.json`` in the run directory.
Every image is letterboxed to ``image_size``; predictions are mapped back to the original pixels.
The categories and image size of a trained run come from its checkpoint (the module binds them before any
test/predict loader is built), so test data is read against what the model knows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, cast

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyhead.lowlight.data.coco import read_coco
from polyhead.lowlight.data.darkface import read_darkface
from polyhead.lowlight.data.exdark import read_exdark
from polyhead.lowlight.data.images import list_images, load_image
from polyhead.lowlight.data.letterbox import letterbox
from polyhead.lowlight.data.records import DetectionSet, ImageRecord
from polyhead.lowlight.data.scenes import CLASSES, generate_scenes, scene_settings_hash
from polyhead.lowlight.data.synthesis import LowLightSynthesizer
from polyhead.lowlight.data.validation import merge_counts
from polyhead.lowlight.data.voc import read_voc
from polyhead.train import stateful_loader

Split = Literal["train", "val", "test"]


class DetectionDataset(Dataset):
    """Records -> ``(image (3, S, S) uint8, target {boxes, labels}, meta)``; letterboxed, optionally darkened.

    Letterboxed images are kept in memory after the first read (``cache``), which makes epochs over the
    small default data cheap; the synthesiser runs before caching, so it is paid once per image.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        *,
        image_size: int,
        train: bool = False,
        synthesizer: LowLightSynthesizer | None = None,
        index_offset: int = 0,
        cache: bool = True,
    ) -> None:
        self.records, self.size, self.train = records, image_size, train
        self.synth, self.offset, self.cache = synthesizer, index_offset, cache
        self._cache: dict[int, tuple[np.ndarray, float]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> tuple[np.ndarray, float]:
        if i in self._cache:
            return self._cache[i]
        rec = self.records[i]
        img = load_image(rec.path)
        if (img.shape[1], img.shape[0]) != (rec.width, rec.height):
            raise ValueError(
                f"{rec.source or rec.path}: image is {img.shape[1]}x{img.shape[0]} but the annotation says "
                f"{rec.width}x{rec.height}"
            )
        if self.synth is not None:
            img, _ = self.synth(img, self.offset + i)
        out = letterbox(img, self.size)
        if self.cache:
            self._cache[i] = out
        return out

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        rec = self.records[i]
        canvas, scale = self.image(i)
        boxes = torch.from_numpy(rec.boxes * scale)
        img = torch.from_numpy(canvas).permute(2, 0, 1)
        if self.train and torch.rand(()) < 0.5:  # horizontal flip of the whole canvas
            img = img.flip(-1)
            boxes = torch.stack(
                [self.size - boxes[:, 2], boxes[:, 1], self.size - boxes[:, 0], boxes[:, 3]], 1
            )
        target = {"boxes": boxes.reshape(-1, 4), "labels": torch.from_numpy(rec.labels)}
        meta = {
            "image_id": rec.image_id,
            "scale": scale,
            "width": rec.width,
            "height": rec.height,
            "path": str(rec.path),
        }
        return img, target, meta


class ImageFolderDataset(Dataset):
    """Unlabeled images (a file or a folder) for ``predict``."""

    def __init__(self, paths: list[Path], *, image_size: int) -> None:
        self.paths, self.size = paths, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Any]]:
        img = load_image(self.paths[i])
        canvas, scale = letterbox(img, self.size)
        meta = {
            "image_id": i + 1,
            "scale": scale,
            "width": img.shape[1],
            "height": img.shape[0],
            "path": str(self.paths[i]),
        }
        return torch.from_numpy(canvas).permute(2, 0, 1), {}, meta


def collate(batch: list[tuple[Tensor, dict, dict]]) -> tuple[Tensor, list[dict[str, Tensor]], list[dict]]:
    images = torch.stack([b[0] for b in batch]).float().div_(255.0)
    return images, [b[1] for b in batch], [b[2] for b in batch]


class LowLightDataModule(pl.LightningDataModule):
    """Detection data for ``polyhead-lowlight``.

    Args:
        format: ``generated``, ``coco``, ``voc``, ``exdark`` or ``darkface`` (see the module docstring).
        train, val, test: COCO JSON files (``coco``) or ImageSets list names (``voc``).
        root: VOC root, ExDark annotation folder or DARK FACE label folder.
        image_dir: image root (COCO, ExDark, DARK FACE; VOC default ``root/JPEGImages``).
        light: generated data only: ``dark`` images or their ``normal``-light copies.
        synthesize: darken real (normal-light) images with the synthesiser.
        synth_exposure: the synthesiser's exposure range (linear factor).
        image_size: letterbox side in pixels.
        generated_train, generated_val, generated_test: generated images per split.
        seed: seed of the generated scenes, the synthesiser and the ExDark / DARK FACE splits.
        split_fractions: train/val/test fractions for ExDark and DARK FACE.
        categories: the category names, in label order (default: the training data's).
        skip_bad: skip and count bad annotations instead of failing with a report of all of them.
        batch_size: images per batch.
        num_workers: loader worker processes.
        cache_dir: where the generated scenes are written.
        predict_input: an image file or a folder of images for ``predict``.
    """

    def __init__(
        self,
        *,
        format: Literal["generated", "coco", "voc", "exdark", "darkface"] = "generated",
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str | None = None,
        image_dir: str | None = None,
        light: Literal["dark", "normal"] = "dark",
        synthesize: bool = False,
        synth_exposure: tuple[float, float] = (0.01, 0.12),
        image_size: int = 128,
        generated_train: int = 600,
        generated_val: int = 100,
        generated_test: int = 200,
        seed: int = 0,
        split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
        categories: list[str] | None = None,
        skip_bad: bool = False,
        batch_size: int = 16,
        num_workers: int = 0,
        cache_dir: str = "runs/lowlight/cache",
        predict_input: str | None = None,
    ) -> None:
        super().__init__()
        if image_size < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size}")
        if format == "coco" and train is None and test is None:
            raise ValueError("format 'coco' needs --data.train and/or --data.test (COCO JSON files)")
        if format in ("voc", "exdark", "darkface") and root is None:
            raise ValueError(f"format {format!r} needs --data.root")
        for key, value in (("data.train", train if format == "coco" else None), ("data.val", val if format == "coco" else None),
                           ("data.test", test if format == "coco" else None), ("data.root", root),
                           ("data.image_dir", image_dir), ("data.predict_input", predict_input)):  # fmt: skip
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"{key}: no such file or directory: {value}")
        if abs(sum(split_fractions) - 1) > 1e-6 or min(split_fractions) < 0:
            raise ValueError(
                f"split_fractions must be 3 non-negative values summing to 1, got {split_fractions}"
            )
        self.format, self.paths = format, {"train": train, "val": val, "test": test}
        self.root, self.image_dir, self.light = root, image_dir, light
        self.synthesize = synthesize
        # tuple() turns the list jsonargparse may pass back into a tuple; the annotation fixes its length
        self.synth_exposure = cast("tuple[float, float]", tuple(synth_exposure))
        self.image_size, self.seed, self.split_fractions = image_size, seed, tuple(split_fractions)
        self.generated = {"train": generated_train, "val": generated_val, "test": generated_test}
        self.categories = list(categories) if categories is not None else None
        self.skip_bad, self.batch_size, self.num_workers = skip_bad, batch_size, num_workers
        self.cache_dir, self.predict_input = Path(cache_dir), predict_input
        self.sets: dict[str, DetectionSet] = {}
        self.skipped: dict[str, int] = {}

    # ---- binding to a trained model -------------------------------------------------------------
    def bind(self, *, categories: list[str] | None, image_size: int | None) -> None:
        """Use a trained model's categories and input size (called by the module before loaders are built)."""
        if categories is not None:
            if self.categories is not None and list(self.categories) != list(categories):
                raise ValueError(
                    f"data.categories {self.categories} differ from the checkpoint's {categories}"
                )
            if self.sets and any(s.categories != list(categories) for s in self.sets.values()):
                self.sets = {}
            self.categories = list(categories)
        if image_size is not None:
            self.image_size = image_size

    def synthesizer(self) -> LowLightSynthesizer | None:
        return LowLightSynthesizer(exposure=self.synth_exposure, seed=self.seed) if self.synthesize else None

    def settings(self) -> dict[str, Any]:
        synth = self.synthesizer()
        return {"format": self.format, "light": self.light, "image_size": self.image_size,
                "categories": self.categories, "synthesizer": synth.config() if synth else None,
                "skipped": self.skipped}  # fmt: skip

    # ---- reading ------------------------------------------------------------------------------------
    def generated_root(self) -> Path:
        splits = dict(self.generated)
        key = scene_settings_hash({"splits": splits, "image_size": self.image_size, "seed": self.seed})
        return generate_scenes(
            self.cache_dir / f"scenes-{key}", splits=splits, image_size=self.image_size, seed=self.seed
        )

    def _read(self, split: Split) -> DetectionSet:
        cats = self.categories
        if self.format == "generated":
            root = self.generated_root()
            return read_coco(
                root / "annotations" / f"{split}.json", root / self.light, categories=cats or list(CLASSES)
            )
        if self.format == "coco":
            path = self.paths[split]
            if path is None:
                raise ValueError(
                    f"format 'coco': --data.{split} (a COCO JSON file) is needed for this command"
                )
            return read_coco(path, self.image_dir, skip_bad=self.skip_bad, categories=cats)
        assert self.root is not None  # __init__ requires --data.root for voc, exdark and darkface
        if self.format == "voc":
            name = self.paths[split] or split
            return read_voc(
                self.root, split=name, categories=cats, skip_bad=self.skip_bad, image_dir=self.image_dir
            )
        if self.format == "exdark":
            full = read_exdark(
                self.root, self.image_dir or self.root, categories=cats, skip_bad=self.skip_bad
            )
        else:
            full = read_darkface(self.root, self.image_dir or self.root, skip_bad=self.skip_bad)
        order = np.random.default_rng(self.seed).permutation(len(full.records))
        n_tr = round(self.split_fractions[0] * len(order))
        n_va = round(self.split_fractions[1] * len(order))
        parts = {"train": order[:n_tr], "val": order[n_tr : n_tr + n_va], "test": order[n_tr + n_va :]}
        return DetectionSet(
            [full.records[i] for i in parts[split]], full.categories, full.skipped if split == "train" else {}
        )

    def dataset(self, split: Split) -> DetectionSet:
        if split not in self.sets:
            data = self._read(split)
            if self.categories is None:
                self.categories = list(data.categories)
            self.sets[split] = data
            self.skipped = merge_counts(*(s.skipped for s in self.sets.values()))
        return self.sets[split]

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.dataset("train")
            self.dataset("val")

    def _loader(self, split: Split, *, train: bool) -> Any:
        data = self.dataset(split)
        offset = {"train": 0, "val": 1_000_000, "test": 2_000_000}[split]
        ds = DetectionDataset(data.records, image_size=self.image_size, train=train, synthesizer=self.synthesizer(),
                              index_offset=offset)  # fmt: skip
        return stateful_loader(ds, batch_size=self.batch_size, shuffle=train, num_workers=self.num_workers,
                               collate_fn=collate, drop_last=train and len(ds) > self.batch_size)  # fmt: skip

    def train_dataloader(self) -> Any:
        return self._loader("train", train=True)

    def val_dataloader(self) -> Any:
        return self._loader("val", train=False)

    def test_dataloader(self) -> Any:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> Any:
        if self.predict_input is None:
            ds: Dataset = DetectionDataset(self.dataset("test").records, image_size=self.image_size,
                                           synthesizer=self.synthesizer(), index_offset=2_000_000)  # fmt: skip
        else:
            paths = list_images(self.predict_input)
            if not paths:
                raise FileNotFoundError(f"data.predict_input: no image files in {self.predict_input}")
            ds = ImageFolderDataset(paths, image_size=self.image_size)
        return stateful_loader(
            ds, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate
        )

    def write_settings(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.settings(), indent=1) + "\n")
