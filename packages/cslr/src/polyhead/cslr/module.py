"""LightningModule and LightningDataModule for continuous sign-language recognition (``polyhead-cslr``).

    polyhead-cslr fit                                             # generated signer-independent split
    polyhead-cslr fit --data.task unseen_sentences --model.model msft
    polyhead-cslr test                                            # dev/test WER -> metrics.json
    polyhead-cslr predict --data.predict_keypoints new.pkl        # predictions.csv (id,gloss) in the run dir
    polyhead-cslr predict --data.predict_videos clips/            # through the MediaPipe extractor
    polyhead-cslr fit --data.keypoints pose.pkl --data.train_annotations train.txt \\
        --data.dev_annotations dev.txt --data.test_annotations test.txt           # the Isharah release
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
import torchmetrics
from torch import Tensor, nn
from torch.utils.data import Dataset

from polyhead.cslr.data.isharah import Sample, load_keypoints, load_split, write_release
from polyhead.cslr.data.synthetic import GENERATOR_VERSION, generate_corpus
from polyhead.cslr.data.transforms import (
    augment,
    crop_or_pad,
    fill_missing,
    frame_drop,
    normalize_parts,
    time_warp,
)
from polyhead.cslr.data.vocab import GlossVocabulary
from polyhead.cslr.decoding import beam_decode, greedy_decode
from polyhead.cslr.losses import ctc_loss
from polyhead.cslr.models import MultiScaleFusionTransformer, SignerInvariantConformer, TransformerCTC
from polyhead.cslr.models.blocks import aux_loss
from polyhead.train import run_dir, stateful_loader


class KeypointDataset(Dataset):
    """Samples -> ``(features (T, 172), label ids, id)``; augmentation only for training."""

    def __init__(
        self, samples: list[Sample], vocab: GlossVocabulary, *, max_frames: int, train: bool, seed: int
    ) -> None:
        self.samples, self.vocab, self.max_frames, self.train = samples, vocab, max_frames, train
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], str]:
        s = self.samples[i]
        x, observed = fill_missing(s.keypoints)
        if self.train:
            x = time_warp(frame_drop(x, self.rng), self.rng)
            x, _ = augment(x, np.ones(x.shape[:2], dtype=bool), self.rng)
        x = normalize_parts(x)
        if x.shape[0] > self.max_frames:
            x, _ = crop_or_pad(x, self.max_frames, self.rng if self.train else None)
        return (
            torch.from_numpy(x.reshape(x.shape[0], -1).astype(np.float32)),
            self.vocab.encode(s.glosses),
            s.id,
        )


def collate(batch: list[tuple[Tensor, list[int], str]]) -> tuple[Tensor, Tensor, list[list[int]], list[str]]:
    lengths = torch.tensor([b[0].shape[0] for b in batch])
    x = nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True)
    return x, lengths, [b[1] for b in batch], [b[2] for b in batch]


class CSLRDataModule(pl.LightningDataModule):
    """Isharah-format keypoints (or the generated corpus) -> padded batches.

    Args:
        task: generated split: ``signer_independent`` or ``unseen_sentences``.
        keypoints: Isharah keypoint pickle (with the three annotation files) instead of generated data.
        train_annotations, dev_annotations, test_annotations: ``id|gloss`` files.
        cache_dir: where the generated corpus is written (release format).
        num_glosses, num_signers, num_sentences, samples_per_sentence, seed: generator settings.
        max_frames: crop longer sequences (reference: 256).
        batch_size: sequences per batch.
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
        cache_dir: str = "runs/cslr/cache",
        num_glosses: int = 60,
        num_signers: int = 9,
        num_sentences: int = 120,
        samples_per_sentence: int = 4,
        seed: int = 0,
        max_frames: int = 256,
        batch_size: int = 16,
        predict_keypoints: str | None = None,
        predict_videos: str | None = None,
        extract_workers: int = 1,
    ) -> None:
        super().__init__()
        files = {"data.keypoints": keypoints, "data.train_annotations": train_annotations,
                 "data.dev_annotations": dev_annotations, "data.test_annotations": test_annotations}  # fmt: skip
        given = {k: v for k, v in files.items() if v is not None}
        if given and len(given) != 4:
            missing = sorted(set(files) - set(given))
            raise ValueError(f"real data needs all of {sorted(files)}; missing {missing}")
        for k, v in given.items():
            if not Path(v).is_file():
                raise FileNotFoundError(f"{k}: no such file: {v}")
        self.files = given
        for k, v in (("data.predict_keypoints", predict_keypoints), ("data.predict_videos", predict_videos)):
            if v is not None and not Path(v).exists():
                raise FileNotFoundError(f"{k}: no such file or directory: {v}")
        self.predict_keypoints, self.predict_videos = predict_keypoints, predict_videos
        self.extract_workers = extract_workers
        self.predict_samples: list[Sample] = []
        self.task, self.cache_dir, self.seed = task, Path(cache_dir), seed
        self.gen = {"num_glosses": num_glosses, "num_signers": num_signers, "num_sentences": num_sentences,
                    "samples_per_sentence": samples_per_sentence, "seed": seed}  # fmt: skip
        self.max_frames, self.batch_size = max_frames, batch_size
        self.vocab: GlossVocabulary | None = None
        self.splits: dict[str, list[Sample]] = {}

    def _generated_files(self) -> dict[str, Path]:
        settings = {**self.gen, "generator": GENERATOR_VERSION}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        root = self.cache_dir / f"generated_{key}" / self.task
        files = {"kp": root / "keypoints.pkl", **{s: root / f"{s}.txt" for s in ("train", "dev", "test")}}
        if not files["test"].is_file():
            root.mkdir(parents=True, exist_ok=True)
            corpus = generate_corpus(**self.gen)[self.task]
            everything = [s for part in corpus.values() for s in part]
            write_release(everything, files["kp"], root / "all.txt")
            for split, samples in corpus.items():
                with open(files[split], "w", encoding="utf-8") as f:
                    f.write("id|gloss\n" + "".join(f"{s.id}|{' '.join(s.glosses)}\n" for s in samples))
        return files

    def prepare_data(self) -> None:
        if not self.files and self.trainer is not None and self.trainer.state.fn != "predict":
            self._generated_files()

    def _predict_keypoint_file(self) -> Path:
        if self.predict_keypoints is not None:
            return Path(self.predict_keypoints)
        if self.predict_videos is None:
            raise ValueError(
                "predict needs data.predict_keypoints (a keypoint pickle) or data.predict_videos"
            )
        from polyhead.cslr.extract import run_extract

        out = run_dir(self.trainer) / "extracted"
        summary = run_extract([Path(self.predict_videos)], out, workers=self.extract_workers)
        for r in summary["problems"]:
            print(f"polyhead-cslr predict: skipped {r['path']}: {r['status']}: {r['message']}")
        if not summary["samples_in_pickle"]:
            raise ValueError(
                f"data.predict_videos: no keypoints could be extracted from {self.predict_videos}"
            )
        return Path(summary["pickle"])

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if not self.predict_samples:
                kp = load_keypoints(self._predict_keypoint_file())
                self.predict_samples = [Sample(sid, a, ()) for sid, a in kp.items()]
            return
        if self.splits:
            return
        if self.files:
            kp = load_keypoints(self.files["data.keypoints"])
            paths = {s: self.files[f"data.{s}_annotations"] for s in ("train", "dev", "test")}
        else:
            g = self._generated_files()
            kp = load_keypoints(g["kp"])
            paths = {s: g[s] for s in ("train", "dev", "test")}
        self.splits = {s: load_split(kp, p) for s, p in paths.items()}
        self.vocab = GlossVocabulary.build(s.glosses for s in self.splits["train"])
        self.in_dim = int(np.prod(self.splits["train"][0].keypoints.shape[1:2])) * 2

    def _loader(self, split: str, train: bool) -> Any:
        ds = KeypointDataset(
            self.splits[split], self.vocab, max_frames=self.max_frames, train=train, seed=self.seed
        )
        return stateful_loader(ds, batch_size=self.batch_size, shuffle=train, collate_fn=collate)

    def train_dataloader(self) -> Any:
        return self._loader("train", True)

    def val_dataloader(self) -> Any:
        return self._loader("dev", False)

    def test_dataloader(self) -> Any:
        return [self._loader("dev", False), self._loader("test", False)]

    def predict_dataloader(self) -> Any:
        ds = KeypointDataset(self.predict_samples, GlossVocabulary.build([]), max_frames=self.max_frames,
                             train=False, seed=self.seed)  # fmt: skip
        return stateful_loader(ds, batch_size=self.batch_size, shuffle=False, collate_fn=collate)


class CSLRModule(pl.LightningModule):
    """CTC training with WER and exact-sentence accuracy.

    Args:
        model: ``conformer`` (Signer-Invariant Conformer), ``msft`` (Multi-Scale Fusion Transformer) or
            ``baseline`` (starter-kit Transformer + CTC).
        d_model, layers, heads, dropout: encoder size (defaults: each model's reference setting).
        attention: attention variant config, e.g. ``{"name": "mha"}``.
        lr, weight_decay: AdamW (reference: 1e-3) with a OneCycle schedule.
        beam_size: 0 for greedy decoding in evaluation, else CTC prefix beam search width.
    """

    def __init__(
        self,
        *,
        model: Literal["conformer", "msft", "baseline"] = "conformer",
        d_model: int | None = None,
        layers: int | None = None,
        heads: int = 8,
        dropout: float | None = None,
        attention: dict[str, Any] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        beam_size: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module | None = None
        self.vocab_itos: list[str] | None = None
        for split in ("val", "dev", "test"):
            setattr(self, f"{split}_wer", torchmetrics.text.WordErrorRate())
            setattr(self, f"{split}_exact", torchmetrics.MeanMetric())
        self._predictions: list[tuple[str, str]] = []

    def build(self, in_dim: int, itos: list[str]) -> None:
        hp = self.hparams
        kw: dict[str, Any] = {"heads": hp.heads, "attention": hp.attention}
        for k in ("d_model", "layers", "dropout"):
            if hp[k] is not None:
                kw[k] = hp[k]
        cls = {
            "conformer": SignerInvariantConformer,
            "msft": MultiScaleFusionTransformer,
            "baseline": TransformerCTC,
        }[hp.model]
        self.net = cls(in_dim, len(itos), **kw)
        self.vocab_itos = list(itos)
        self.in_dim = in_dim

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        dm.setup(stage)
        if stage == "predict":
            return  # the network is built from the checkpoint (on_load_checkpoint)
        if self.net is None:
            self.build(dm.in_dim, dm.vocab.itos)
        if stage == "fit" and self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            dm.vocab.save(d / "vocab.json")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cslr"] = {"in_dim": self.in_dim, "itos": self.vocab_itos}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.net is None and "cslr" in checkpoint:
            self.build(checkpoint["cslr"]["in_dim"], checkpoint["cslr"]["itos"])

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        assert self.net is not None
        return self.net(x, lengths)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, lengths, targets, ids = batch
        lp, out_len = self(x, lengths)
        loss, skipped = ctc_loss(lp, out_len, targets, ids=ids, skip_short=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(ids))
        aux = aux_loss(self.net)
        if aux is not None:
            self.log("train/aux_loss", aux, batch_size=len(ids))
            loss = loss + aux
        if skipped:
            self.log("train/too_short", float(len(skipped)), reduce_fx="sum", batch_size=len(ids))
        return loss

    def decode(self, x: Tensor, lengths: Tensor) -> list[list[int]]:
        lp, out_len = self(x, lengths)
        if self.hparams.beam_size:
            return beam_decode(lp, out_len, self.hparams.beam_size)
        return greedy_decode(lp, out_len)

    def _eval(self, split: str, batch: Any) -> None:
        x, lengths, targets, ids = batch
        hyps = self.decode(x, lengths)
        itos = self.vocab_itos
        hyp_txt = [" ".join(itos[i] for i in h) for h in hyps]
        ref_txt = [" ".join(itos[i] for i in t) for t in targets]
        getattr(self, f"{split}_wer").update(hyp_txt, ref_txt)
        getattr(self, f"{split}_exact").update(torch.tensor([float(h == t) for h, t in zip(hyps, targets)]))
        kw = {"batch_size": len(ids), "add_dataloader_idx": False}
        self.log(f"{split}/wer", getattr(self, f"{split}_wer"), prog_bar=True, **kw)
        self.log(f"{split}/exact", getattr(self, f"{split}_exact"), **kw)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval("val", batch)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(("dev", "test")[dataloader_idx], batch)

    def predict_step(self, batch: Any, batch_idx: int) -> list[tuple[str, str]]:
        x, lengths, _, ids = batch
        itos = self.vocab_itos
        rows = [(sid, " ".join(itos[i] for i in h)) for sid, h in zip(ids, self.decode(x, lengths))]
        self._predictions += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        path = run_dir(self.trainer) / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "gloss"])
            w.writerows(self._predictions)
        print(f"polyhead-cslr: wrote {len(self._predictions)} predictions to {path}")
        self._predictions = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
