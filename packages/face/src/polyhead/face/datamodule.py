"""Datasets and the LightningDataModule of ``polyhead-face``.

Sources (first match wins):
- ``hq_dir``: an FFHQ-style folder of aligned high-quality faces; the last ``num_val + num_test`` files
  (by name) are held out for validation and test, and every split is degraded on the fly by the
  extending degradation model (:mod:`polyhead.face.data.degrade`).
- default: SYNTHETIC faces from the parametric renderer (:mod:`polyhead.face.data.render`), with
  separate face seeds per split (held-out faces, never seen in training).
- ``test_lq_dir`` + ``test_hq_dir``: a paired LQ/HQ test set (CelebA-Test style, matched by file name)
  replaces the degraded test split.

The image resolution is the model's (``FaceModule.resolution``, restored from the checkpoint for
``test``); the datamodule reads it from the attached LightningModule. Training samples are degraded with
``(degradation_seed, epoch, index)``: the epoch comes from :class:`EpochSampler` in the main process, so
the same image is produced in any worker. Validation and test degradations are fixed (epoch 0 of their
own seeds) and their sampled parameters are written per image to ``<run dir>/degradations_<split>.jsonl``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from polyhead.face.data.degrade import DegradationConfig, ExtendedDegradation
from polyhead.face.data.folders import read_face_folder, read_paired_folders
from polyhead.face.data.render import RENDERER_VERSION, render
from polyhead.train import stateful_loader

SPLIT_SEED_OFFSET = {"train": 0, "val": 1_000_003, "test": 2_000_003}


def rendered_faces(seed: int, n: int, resolution: int, cache_dir: str | Path | None) -> np.ndarray:
    """``n`` rendered faces ``(n, R, R, 3)`` uint8, cached on disk by (seed, n, resolution, version)."""
    path = None
    if cache_dir is not None:
        key = f"rendered-v{RENDERER_VERSION}-s{seed}-n{n}-r{resolution}.npy"
        path = Path(cache_dir) / key
        if path.is_file():
            return np.load(path)
    threads = torch.get_num_threads()
    # Rendering is many small elementwise passes: one thread and chunks that stay in cache are fastest.
    torch.set_num_threads(1)
    try:
        chunks = []
        for start in range(0, n, 16):
            img, _ = render(seed, range(start, min(n, start + 16)), resolution)
            chunks.append((img.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8))
    finally:
        torch.set_num_threads(threads)
    faces = np.concatenate(chunks)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, faces)
        tmp.replace(path)
    return faces


class EpochSampler(Sampler[int]):
    """Yields ``epoch * n + i`` so that a worker can recover the epoch from the index it receives."""

    def __init__(self, n: int, *, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else range(self.n)
        )
        base = self.epoch * self.n
        return iter([base + int(i) for i in order])


class DegradedFaces(Dataset):
    """High-quality faces degraded on the fly: ``{"hq", "lq", "index", "params"}`` (images in [0, 1])."""

    def __init__(self, faces: np.ndarray, degradation: ExtendedDegradation) -> None:
        self.faces, self.degradation = faces, degradation

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, epoch = k % len(self.faces), k // len(self.faces)
        hq = self.faces[i].astype(np.float32) / 255.0
        lq, params = self.degradation(hq, i, epoch)
        return {
            "hq": torch.from_numpy(hq).permute(2, 0, 1),
            "lq": torch.from_numpy(lq).permute(2, 0, 1),
            "index": i,
            "params": params,
        }


class PairedFaces(Dataset):
    """A paired LQ/HQ test set (already degraded files)."""

    def __init__(self, lq: np.ndarray, hq: np.ndarray) -> None:
        self.lq, self.hq = lq, hq

    def __len__(self) -> int:
        return len(self.hq)

    def __getitem__(self, i: int) -> dict[str, Any]:
        def t(a: np.ndarray) -> Tensor:
            return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)

        return {"hq": t(self.hq[i]), "lq": t(self.lq[i]), "index": i, "params": {}}


class AlignedFaces(Dataset):
    """Aligned face images to restore with ``predict`` (no ground truth): ``{"lq", "index", "name"}``."""

    def __init__(self, faces: np.ndarray, names: list[str]) -> None:
        self.faces, self.names = faces, names

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict[str, Any]:
        lq = torch.from_numpy(self.faces[i].astype(np.float32) / 255.0).permute(2, 0, 1)
        return {"lq": lq, "index": i, "name": self.names[i]}


class FaceDataModule(pl.LightningDataModule):
    """Faces -> ``(hq, lq)`` batches at the model's resolution.

    Args:
        hq_dir: FFHQ-style folder of aligned faces (default: rendered synthetic faces).
        test_lq_dir, test_hq_dir: paired LQ/HQ folders for ``test`` (matched by file name).
        num_train, num_val, num_test: rendered faces per split (held-out faces for val/test); with
            ``hq_dir``, ``num_val + num_test`` files are held out.
        render_seed: face-set seed of the renderer.
        degradation_seed: seed of the degradation model (val/test use derived seeds).
        degradation: overrides of :class:`~polyhead.face.data.degrade.DegradationConfig` (e.g.
            ``{downsample: [1, 4]}``).
        predict_dir: folder of aligned face images to restore with ``predict`` (written to
            ``<run dir>/predictions/``; whole photos go through ``polyhead-face restore`` instead).
        skip_bad: skip unreadable/empty/too small files (counted by reason; counts reach metrics.json)
            instead of stopping at the first.
        cache_dir: cache of rendered faces and decoded folders.
        batch_size, num_workers: loader settings.
    """

    def __init__(
        self,
        *,
        hq_dir: str | None = None,
        test_lq_dir: str | None = None,
        test_hq_dir: str | None = None,
        num_train: int = 2000,
        num_val: int = 64,
        num_test: int = 256,
        render_seed: int = 0,
        degradation_seed: int = 1,
        degradation: dict[str, Any] | None = None,
        predict_dir: str | None = None,
        skip_bad: bool = False,
        cache_dir: str = "runs/face/cache",
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (test_lq_dir is None) != (test_hq_dir is None):
            raise ValueError("data.test_lq_dir and data.test_hq_dir must be given together")
        for name, v in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
            if v < 1:
                raise ValueError(f"data.{name} must be >= 1, got {v}")
        cfg = dict(degradation or {})
        try:
            kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
            self.degradation_config = DegradationConfig(**kwargs)
        except TypeError as err:
            raise ValueError(f"data.degradation: {err}") from None
        self.hq_dir, self.test_lq_dir, self.test_hq_dir = hq_dir, test_lq_dir, test_hq_dir
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.render_seed, self.degradation_seed = render_seed, degradation_seed
        self.skip_bad, self.cache_dir, self.predict_dir = skip_bad, cache_dir, predict_dir
        self.batch_size, self.num_workers = batch_size, num_workers
        self.resolution: int | None = None
        self.skipped: Counter = Counter()
        self.datasets: dict[str, DegradedFaces | PairedFaces | AlignedFaces] = {}
        self.source = "rendered (synthetic)"

    def _resolution(self) -> int:
        model = self.trainer.lightning_module if self.trainer is not None else None
        res = getattr(model, "resolution", None) or self.resolution
        if res is None:
            raise ValueError("FaceDataModule needs the model's resolution (attach it to a FaceModule)")
        return int(res)

    def _degradation(self, split: str) -> ExtendedDegradation:
        return ExtendedDegradation(
            seed=self.degradation_seed + SPLIT_SEED_OFFSET[split], config=self.degradation_config
        )

    def setup(self, stage: str) -> None:
        R = self.resolution = self._resolution()
        if stage == "predict":
            if self.predict_dir is None:
                raise ValueError("predict needs --data.predict_dir (a folder of aligned face images)")
            arr = read_face_folder(self.predict_dir, R, recursive=False, skip_bad=self.skip_bad)
            self.skipped.update(arr.skipped)
            for line in arr.skipped_files:
                print(f"polyhead-face: skipped {line}", file=sys.stderr)
            self.datasets["predict"] = AlignedFaces(arr.images, arr.names)
            return
        if self.hq_dir is not None:
            arr = read_face_folder(self.hq_dir, R, skip_bad=self.skip_bad, cache_dir=self.cache_dir)
            self.skipped.update(arr.skipped)
            n_hold = self.num_val + self.num_test
            if len(arr.images) <= n_hold:
                raise ValueError(
                    f"data.hq_dir {self.hq_dir}: {len(arr.images)} usable images, need more than "
                    f"num_val + num_test = {n_hold}"
                )
            split = {"train": arr.images[:-n_hold], "val": arr.images[-n_hold : -self.num_test],
                     "test": arr.images[-self.num_test :]}  # fmt: skip
            self.source = f"folder {self.hq_dir}"
        else:
            split = {}
            for name, n in (("train", self.num_train), ("val", self.num_val), ("test", self.num_test)):
                if (stage == "fit" and name == "test") or (stage in ("test", "validate") and name == "train"):
                    continue
                seed = self.render_seed + SPLIT_SEED_OFFSET[name]
                split[name] = rendered_faces(seed, n, R, self.cache_dir)
        for name, faces in split.items():
            self.datasets[name] = DegradedFaces(faces, self._degradation(name))
        if self.test_lq_dir is not None and stage == "test":
            assert self.test_hq_dir is not None  # __init__ requires test_lq_dir and test_hq_dir together
            lq, hq, unmatched = read_paired_folders(
                self.test_lq_dir, self.test_hq_dir, R, skip_bad=self.skip_bad, cache_dir=self.cache_dir
            )
            self.skipped.update(lq.skipped)
            self.skipped["unmatched_lq"] += len(unmatched["lq_only"])
            self.skipped["unmatched_hq"] += len(unmatched["hq_only"])
            self.datasets["test"] = PairedFaces(lq.images, hq.images)
            self.source += f"; paired test {self.test_lq_dir} / {self.test_hq_dir}"

    def settings(self) -> dict[str, Any]:
        """The data settings saved with the run (resolution, degradation, source)."""
        return {
            "resolution": self.resolution,
            "source": self.source,
            "degradation": {
                k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.degradation_config).items()
            },
            "degradation_seed": self.degradation_seed,
            "render_seed": self.render_seed,
            "num_train": self.num_train,
        }

    def _loader(self, split: str, train: bool) -> Any:
        ds = self.datasets[split]
        sampler = EpochSampler(len(ds), shuffle=train, seed=self.degradation_seed) if train else None
        return stateful_loader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            drop_last=train and len(ds) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    def val_dataloader(self) -> Any:
        return self._loader("val", False)

    def test_dataloader(self) -> Any:
        return self._loader("test", False)

    def predict_dataloader(self) -> Any:
        return self._loader("predict", False)
