"""Dataset and LightningDataModule for continuous sign-language recognition (``polyhead-cslr``).

The data settings that turn keypoints into model input are part of the run: the gloss vocabulary (built
from the training annotations by ``fit``), the normalisation scheme, the augmentation settings, the crop
length and the shortest clip seen per gloss in training are saved in every checkpoint
(:meth:`CSLRDataModule.state_dict`) and restored by ``test``/``predict``/resume, so annotation files passed
later are read against them and never rebuild them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from polyhead.cslr.data.isharah import (
    DataReport,
    Sample,
    load_keypoints,
    load_split,
    load_unlabeled,
    write_release,
)
from polyhead.cslr.data.synthetic import GENERATOR_VERSION, generate_corpus
from polyhead.cslr.data.transforms import NORMALIZATION, Augmentation, preprocess
from polyhead.cslr.data.vocab import GlossVocabulary
from polyhead.train import run_dir, stateful_loader
from polyhead.train.cli import PolyheadConfigError

STATE_FORMAT = 1


class KeypointDataset(Dataset):
    """Samples -> ``(features (T, 172) float32, observed (T, 86) bool, glosses, id)``."""

    def __init__(
        self, samples: list[Sample], *, max_frames: int, augment: Augmentation | None, seed: int
    ) -> None:
        self.samples, self.max_frames, self.augment = samples, max_frames, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, tuple[str, ...], str]:
        s = self.samples[i]
        x, observed = preprocess(s.keypoints, max_frames=self.max_frames, rng=self.rng, aug=self.augment)
        return torch.from_numpy(x.reshape(x.shape[0], -1)), torch.from_numpy(observed), s.glosses, s.id


def collate(
    batch: list[tuple[Tensor, Tensor, tuple[str, ...], str]],
) -> tuple[Tensor, Tensor, Tensor, list[tuple[str, ...]], list[str]]:
    """``(x (B, T, 172), observed (B, T, 86), lengths (B,), glosses, ids)``, zero-padded."""
    lengths = torch.tensor([b[0].shape[0] for b in batch])
    x = nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True)
    observed = nn.utils.rnn.pad_sequence([b[1] for b in batch], batch_first=True)
    return x, observed, lengths, [b[2] for b in batch], [b[3] for b in batch]


class CSLRDataModule(pl.LightningDataModule):
    """Isharah-format keypoints (or the generated corpus) -> padded batches.

    Args:
        task: generated split: ``signer_independent`` or ``unseen_sentences``.
        keypoints: Isharah keypoint pickle, read with the annotation files below instead of generated data
            (``fit`` needs train and dev annotations, ``test`` the test ones, dev optional).
        train_annotations, dev_annotations, test_annotations: ``id|gloss`` files.
        skip_bad: skip bad annotation lines and samples (counted by reason in metrics.json as
            ``data/skipped/<reason>``) instead of stopping with a report of every problem.
        unsafe_load: read the keypoint pickle with the unrestricted ``pickle`` (only for trusted files that
            hold objects other than containers and numpy arrays).
        cache_dir: where the generated corpus is written (release format).
        num_glosses, num_signers, num_sentences, samples_per_sentence, seed: generator settings.
        missing_hand, long_gaps: generated detection failures (a hand never detected; hands missing over
            30-70% of a clip), per clip probabilities.
        max_frames: crop longer sequences (reference: 256).
        batch_size: sequences per batch.
        augment: training augmentation; ``null`` for none.
        predict_keypoints: keypoint pickle (release format) to transcribe with ``predict``.
        predict_videos: folder (or file) of videos / ``.pose`` files to transcribe with ``predict``; keypoints
            are extracted into ``<run dir>/extracted`` (resumable) first.
        extract_workers: worker processes for that extraction.
    """

    def __init__(
        self,
        *,
        task: Literal["signer_independent", "unseen_sentences"] = "signer_independent",
        keypoints: str | None = None,
        train_annotations: str | None = None,
        dev_annotations: str | None = None,
        test_annotations: str | None = None,
        skip_bad: bool = False,
        unsafe_load: bool = False,
        cache_dir: str = "runs/cslr/cache",
        num_glosses: int = 60,
        num_signers: int = 9,
        num_sentences: int = 120,
        samples_per_sentence: int = 4,
        missing_hand: float = 0.0,
        long_gaps: float = 0.0,
        seed: int = 0,
        max_frames: int = 256,
        batch_size: int = 16,
        augment: Augmentation | None = Augmentation(),  # noqa: B008 (frozen dataclass)
        predict_keypoints: str | None = None,
        predict_videos: str | None = None,
        extract_workers: int = 1,
    ) -> None:
        super().__init__()
        files = {"train": train_annotations, "dev": dev_annotations, "test": test_annotations}
        self.annotations = {k: v for k, v in files.items() if v is not None}
        if self.annotations and keypoints is None:
            raise ValueError(f"annotation files {sorted(self.annotations)} need data.keypoints (the pickle)")
        if keypoints is not None and not self.annotations:
            raise ValueError("data.keypoints needs annotation files (data.train_annotations, ...)")
        for k, v in [("keypoints", keypoints), *self.annotations.items()] if keypoints else []:
            name = "data.keypoints" if k == "keypoints" else f"data.{k}_annotations"
            if not Path(v).is_file():
                raise FileNotFoundError(f"{name}: no such file: {v}")
        for opt, value in (
            ("data.predict_keypoints", predict_keypoints),
            ("data.predict_videos", predict_videos),
        ):
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"{opt}: no such file or directory: {value}")
        if max_frames < 1 or batch_size < 1:
            raise ValueError(f"max_frames and batch_size must be >= 1, got {max_frames}, {batch_size}")
        self.keypoints, self.skip_bad, self.unsafe_load = keypoints, skip_bad, unsafe_load
        self.predict_keypoints, self.predict_videos = predict_keypoints, predict_videos
        self.extract_workers = extract_workers
        self.task, self.cache_dir, self.seed = task, Path(cache_dir), seed
        # generate_corpus's keyword arguments (ints, and the floats missing_hand/long_gaps when set)
        self.gen: dict[str, Any] = {"num_glosses": num_glosses, "num_signers": num_signers, "num_sentences": num_sentences,
                    "samples_per_sentence": samples_per_sentence, "seed": seed}  # fmt: skip
        if missing_hand or long_gaps:  # only then part of the cache key: the default corpus keeps its files
            self.gen.update(missing_hand=missing_hand, long_gaps=long_gaps)
        self.max_frames, self.batch_size, self.augment = max_frames, batch_size, augment
        self.report = DataReport()
        self.splits: dict[str, list[Sample]] = {}
        self.predict_samples: list[Sample] = []
        # Set by fit from the training split, or restored from a checkpoint (load_state_dict).
        self.vocab: GlossVocabulary | None = None
        self.min_frames = 1
        self.restored = False

    # ---- the run's data settings, saved with every checkpoint -------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.vocab is None:
            return {}
        return {
            "format": STATE_FORMAT,
            "vocab": self.vocab.itos[2:],
            "normalization": NORMALIZATION,
            "max_frames": self.max_frames,
            "min_frames": self.min_frames,
            "augment": asdict(self.augment) if self.augment is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if state.get("normalization") != NORMALIZATION:
            raise PolyheadConfigError(
                f"the checkpoint's inputs were normalised with {state.get('normalization')!r}; this version "
                f"of polyhead-cslr normalises with {NORMALIZATION!r}: retrain, or use the version that trained it"
            )
        self.vocab = GlossVocabulary(list(state["vocab"]))
        self.max_frames, self.min_frames = int(state["max_frames"]), int(state["min_frames"])
        if state.get("augment") is not None and self.augment is not None:
            self.augment = Augmentation(**state["augment"])  # resumed fits keep their augmentation
        self.restored = True

    # ---- reading ----------------------------------------------------------------------------------
    def _generated_files(self) -> dict[str, Path]:
        settings = {**self.gen, "generator": GENERATOR_VERSION}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        base = self.cache_dir / f"generated_{key}"
        root = base / self.task
        files = {"kp": root / "keypoints.pkl", **{s: root / f"{s}.txt" for s in ("train", "dev", "test")}}
        if not files["test"].is_file():
            # One generation writes both tasks' splits (the pipeline trains on both).
            for task, corpus in generate_corpus(**self.gen).items():
                d = base / task
                d.mkdir(parents=True, exist_ok=True)
                everything = [s for part in corpus.values() for s in part]
                write_release(everything, d / "keypoints.pkl", d / "all.txt")
                for split, samples in corpus.items():  # the test file last: its presence marks completion
                    tmp = d / f".{split}.txt.tmp"
                    tmp.write_text("id|gloss\n" + "".join(f"{s.id}|{' '.join(s.glosses)}\n" for s in samples))
                    tmp.replace(d / f"{split}.txt")
        return files

    def prepare_data(self) -> None:
        if not self.keypoints and self.trainer is not None and self.trainer.state.fn != "predict":
            self._generated_files()

    def _sources(self) -> tuple[str | Path, dict[str, str | Path]]:
        if self.keypoints:
            return self.keypoints, dict(self.annotations)
        g = self._generated_files()
        return g["kp"], {s: g[s] for s in ("train", "dev", "test")}

    def _predict_keypoint_file(self) -> Path:
        if self.predict_keypoints is not None:
            return Path(self.predict_keypoints)
        if self.predict_videos is None:
            raise PolyheadConfigError(
                "predict needs data.predict_keypoints (a keypoint pickle) or data.predict_videos"
            )
        from polyhead.cslr.extract import run_extract

        out = run_dir(self.trainer) / "extracted"
        summary = run_extract([Path(self.predict_videos)], out, workers=self.extract_workers)
        for r in summary["problems"]:
            kept = "kept" if r["status"] == "damaged" else "skipped"
            print(
                f"polyhead-cslr predict: {kept} {r['path']}: {r['status']}: {r['message']}", file=sys.stderr
            )
        if not summary["samples_in_pickle"]:
            raise PolyheadConfigError(
                f"data.predict_videos: no keypoints could be extracted from {self.predict_videos}"
            )
        return Path(summary["pickle"])

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if not self.predict_samples:
                path = self._predict_keypoint_file()
                kp = load_keypoints(path, unsafe=self.unsafe_load)
                self.predict_samples = load_unlabeled(kp, skip_bad=self.skip_bad, report=self.report)
                if not self.predict_samples:
                    raise PolyheadConfigError(f"{path}: no sample left to transcribe")
            return
        kp_path, paths = self._sources()
        need = {"fit": ("train", "dev"), "validate": ("dev",), "test": ("test",)}.get(stage, ())
        missing = [s for s in need if s not in paths]
        if missing:
            flags = ", ".join(f"--data.{s}_annotations" for s in missing)
            raise PolyheadConfigError(f"`{stage}` on data.keypoints needs {flags}")
        wanted = [s for s in (("train", "dev") if stage == "fit" else ("dev", "test")) if s in paths]
        wanted = [s for s in wanted if s not in self.splits]
        if not wanted:
            return
        kp = load_keypoints(kp_path, unsafe=self.unsafe_load)  # validated lazily: only samples a split uses
        for s in wanted:
            self.splits[s] = load_split(kp, paths[s], skip_bad=self.skip_bad, report=self.report)
            if not self.splits[s]:
                raise PolyheadConfigError(f"{paths[s]}: no usable sample")
        if self.report.skipped:
            print(
                f"polyhead-cslr: skipped {self.report.skipped.total()} samples "
                f"({dict(self.report.skipped)}): {self.report.summary(3)}",
                file=sys.stderr,
            )
        if stage == "fit" and not self.restored:
            train = self.splits["train"]
            self.vocab = GlossVocabulary.build(s.glosses for s in train)
            self.min_frames = max(1, min(s.keypoints.shape[0] // len(s.glosses) for s in train))
        untrained = self.trainer is None or self.trainer.ckpt_path is None
        if self.vocab is None and "train" in paths and stage != "fit" and untrained:
            # No checkpoint (an untrained model): the vocabulary of the training annotations.
            train = load_split(kp, paths["train"], skip_bad=True)
            self.vocab = GlossVocabulary.build(s.glosses for s in train)

    def out_of_vocabulary(self, split: str, vocabulary: dict[str, int]) -> tuple[int, int, list[str]]:
        """``(samples with a gloss outside ``vocabulary``, such gloss tokens, examples)`` of a split."""
        samples = tokens = 0
        examples: list[str] = []
        for s in self.splits.get(split, []):
            oov = [g for g in s.glosses if g not in vocabulary]
            if oov:
                samples, tokens = samples + 1, tokens + len(oov)
                if len(examples) < 3:
                    examples.append(f"{s.id}: {' '.join(oov)}")
        return samples, tokens, examples

    # ---- loaders ----------------------------------------------------------------------------------
    def _loader(self, samples: list[Sample], train: bool) -> Any:
        ds = KeypointDataset(
            samples, max_frames=self.max_frames, augment=self.augment if train else None, seed=self.seed
        )
        return stateful_loader(ds, batch_size=self.batch_size, shuffle=train, collate_fn=collate)

    def train_dataloader(self) -> Any:
        return self._loader(self.splits["train"], True)

    def val_dataloader(self) -> Any:
        return self._loader(self.splits["dev"], False)

    def test_dataloader(self) -> Any:
        return [self._loader(self.splits[s], False) for s in self.test_splits()]

    def test_splits(self) -> list[str]:
        return [s for s in ("dev", "test") if s in self.splits]

    def predict_dataloader(self) -> Any:
        return self._loader(self.predict_samples, False)
