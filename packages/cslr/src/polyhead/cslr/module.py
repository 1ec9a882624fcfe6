"""LightningModule for continuous sign-language recognition (``polyhead-cslr``).

    polyhead-cslr fit                                             # generated signer-independent split
    polyhead-cslr fit --data.task unseen_sentences --model.model msft
    polyhead-cslr test                                            # dev/test WER -> metrics.json
    polyhead-cslr predict --data.predict_keypoints new.pkl        # predictions.csv in the run dir
    polyhead-cslr predict --data.predict_keypoints new.pkl --model.abstain_below 0.5
    polyhead-cslr predict --data.predict_videos clips/            # through the MediaPipe extractor
    polyhead-cslr fit --data.keypoints pose.pkl --data.train_annotations train.txt \\
        --data.dev_annotations dev.txt --data.test_annotations test.txt           # the Isharah release

The encoder is built in ``__init__`` (its attention modules exist before any data is read); its CTC head
is sized by the vocabulary, which ``fit`` takes from the training split and ``test``/``predict`` from the
checkpoint. References are compared as the annotation files spell them, so a gloss outside the
vocabulary counts as an error (and is reported, ``data/oov_*`` in metrics.json), never as ``<unk>``.
"""

from __future__ import annotations

import csv
import sys
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchmetrics
import torchmetrics.text  # torchmetrics imports it too; named here so type checkers see the submodule
from torch import Tensor

from polyhead.cslr.data.layout import NUM_POINTS
from polyhead.cslr.decoding import beam_decode, greedy_decode_scored
from polyhead.cslr.losses import ctc_loss
from polyhead.cslr.models import MultiScaleFusionTransformer, SignerInvariantConformer, TransformerCTC
from polyhead.cslr.models.blocks import aux_loss
from polyhead.train import run_dir
from polyhead.train.cli import PolyheadConfigError

UNK_ID = 1


class CSLRModule(pl.LightningModule):
    """CTC training with WER and exact-sentence accuracy; scored predictions that can abstain.

    Args:
        model: ``conformer`` (Signer-Invariant Conformer), ``msft`` (Multi-Scale Fusion Transformer) or
            ``baseline`` (starter-kit Transformer + CTC).
        d_model, layers, heads, dropout: encoder size (defaults: each model's reference setting).
        attention: attention variant config, e.g. ``{"name": "mha"}``.
        observed: ``channel`` feeds the per-point observed mask (1 = detected in this frame) as a third
            input value per point; ``none`` gives the model coordinates only.
        lr, weight_decay: AdamW (reference: 1e-3) with a OneCycle schedule.
        beam_size: 0 for greedy decoding in evaluation, else CTC prefix beam search width.
        abstain_below: ``predict`` leaves the gloss empty (status ``abstained``) when the sequence score is
            below this (0: never).
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
        observed: Literal["channel", "none"] = "channel",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        beam_size: int = 0,
        abstain_below: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= abstain_below <= 1.0:
            raise ValueError(f"abstain_below is a score in [0, 1], got {abstain_below}")
        self.save_hyperparameters()
        kw: dict[str, Any] = {"heads": heads, "attention": attention}
        for k, v in (("d_model", d_model), ("layers", layers), ("dropout", dropout)):
            if v is not None:
                kw[k] = v
        cls = {
            "conformer": SignerInvariantConformer,
            "msft": MultiScaleFusionTransformer,
            "baseline": TransformerCTC,
        }
        self.in_dim = NUM_POINTS * (3 if observed == "channel" else 2)
        self.net = cls[model](self.in_dim, **kw)
        self.itos: list[str] | None = None
        self.stoi: dict[str, int] = {}
        for split in ("val", "dev", "test"):
            setattr(self, f"{split}_wer", torchmetrics.text.WordErrorRate())
            setattr(self, f"{split}_exact", torchmetrics.MeanMetric())
        self._predictions: list[list[str]] = []
        self._oov: dict[str, tuple[int, int]] = {}

    def set_vocabulary(self, itos: list[str]) -> None:
        """Size the CTC head for ``itos`` (blank, unk, glosses) unless it already has that vocabulary."""
        if self.itos != list(itos):
            self.net.set_vocab_size(len(itos))
            self.itos = list(itos)
            self.stoi = {g: i for i, g in enumerate(itos)}

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        dm.setup(stage)
        if stage == "fit":
            self.set_vocabulary(dm.vocab.itos)
            if self.trainer.is_global_zero:
                d = run_dir(self.trainer)
                d.mkdir(parents=True, exist_ok=True)
                dm.vocab.save(d / "vocab.json")
        elif self.itos is None and dm.vocab is not None and self.trainer.ckpt_path is None:
            self.set_vocabulary(dm.vocab.itos)  # an untrained model (no checkpoint): the data's vocabulary

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["cslr"] = {"in_dim": self.in_dim, "itos": self.itos}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "cslr" not in checkpoint:
            raise PolyheadConfigError("the checkpoint has no CSLR vocabulary (not written by polyhead-cslr)")
        if checkpoint["cslr"]["in_dim"] != self.in_dim:
            raise PolyheadConfigError(
                f"the checkpoint's model takes {checkpoint['cslr']['in_dim']} inputs per frame, this "
                f"configuration {self.in_dim} (model.observed {self.hparams.observed!r})"
            )
        self.set_vocabulary(checkpoint["cslr"]["itos"])

    def forward(self, x: Tensor, observed: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.hparams.observed == "channel":
            B, T = observed.shape[:2]
            x = torch.cat([x.view(B, T, NUM_POINTS, 2), observed.unsqueeze(-1).to(x.dtype)], -1).view(
                B, T, -1
            )
        return self.net(x, lengths)

    def encode_glosses(self, glosses: tuple[str, ...]) -> list[int]:
        return [self.stoi.get(g, UNK_ID) for g in glosses]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, observed, lengths, glosses, ids = batch
        lp, out_len = self(x, observed, lengths)
        targets = [self.encode_glosses(g) for g in glosses]
        loss, skipped = ctc_loss(lp, out_len, targets, ids=ids, skip_short=True)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(ids))
        aux = aux_loss(self.net)
        if aux is not None:
            self.log("train/aux_loss", aux, batch_size=len(ids))
            loss = loss + aux
        if skipped:
            self.log("train/too_short", float(len(skipped)), reduce_fx="sum", batch_size=len(ids))
        return loss

    def decode(
        self, x: Tensor, observed: Tensor, lengths: Tensor
    ) -> list[tuple[list[int], float, list[float]]]:
        """``[(label ids, sequence score, per-gloss scores)]``; beam search keeps the greedy scores' frames."""
        lp, out_len = self(x, observed, lengths)
        scored = greedy_decode_scored(lp, out_len)
        if self.hparams.beam_size:
            beams = beam_decode(lp, out_len, self.hparams.beam_size)
            scored = [(b, s, g if b == h else []) for b, (h, s, g) in zip(beams, scored)]
        return scored

    def _eval(self, split: str, batch: Any) -> None:
        x, observed, lengths, glosses, ids = batch
        itos = self.itos
        assert itos is not None  # set in setup() or on_load_checkpoint() before any step
        hyps = [[itos[i] for i in h] for h, _, _ in self.decode(x, observed, lengths)]
        refs = [list(g) for g in glosses]
        getattr(self, f"{split}_wer").update([" ".join(h) for h in hyps], [" ".join(r) for r in refs])
        getattr(self, f"{split}_exact").update(torch.tensor([float(h == r) for h, r in zip(hyps, refs)]))
        kw = {"batch_size": len(ids), "add_dataloader_idx": False}
        self.log(f"{split}/wer", getattr(self, f"{split}_wer"), prog_bar=True, **kw)
        self.log(f"{split}/exact", getattr(self, f"{split}_exact"), **kw)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval("val", batch)

    def on_test_start(self) -> None:
        dm = self.trainer.datamodule
        assert self.itos is not None  # set in setup() or on_load_checkpoint() before testing
        self._oov = {}
        for split in dm.test_splits():
            n, tokens, examples = dm.out_of_vocabulary(split, self.stoi)
            self._oov[split] = (n, tokens)
            if n:
                print(
                    f"polyhead-cslr: warning: {split}: {n} samples have {tokens} glosses outside the model's "
                    f"vocabulary of {len(self.itos) - 2} (counted as errors), e.g. {'; '.join(examples)}",
                    file=sys.stderr,
                )

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval(self.trainer.datamodule.test_splits()[dataloader_idx], batch)

    def on_test_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        for split, (n, tokens) in self._oov.items():
            self.log(f"data/oov_samples/{split}", float(n))
            self.log(f"data/oov_glosses/{split}", float(tokens))
        for reason, n in dm.report.skipped.items():
            self.log(f"data/skipped/{reason}", float(n))

    def predict_step(self, batch: Any, batch_idx: int) -> list[list[str]]:
        x, observed, lengths, _, ids = batch
        dm = self.trainer.datamodule
        itos = self.itos
        assert itos is not None  # set in setup() or on_load_checkpoint() before predicting
        rows = []
        for sid, n, (h, score, gloss_scores) in zip(ids, lengths.tolist(), self.decode(x, observed, lengths)):
            if n < dm.min_frames:
                status = "too_short"
            elif score < self.hparams.abstain_below:
                status = "abstained"
            else:
                status = "ok"
            gloss = " ".join(itos[i] for i in h) if status == "ok" else ""
            rows.append(
                [sid, gloss, f"{score:.4f}", " ".join(f"{s:.3f}" for s in gloss_scores), status, str(n)]
            )
        self._predictions += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        path = run_dir(self.trainer) / "predictions.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "gloss", "score", "gloss_scores", "status", "frames"])
            w.writerows(self._predictions)
        status = [r[4] for r in self._predictions]
        short = [r[0] for r in self._predictions if r[4] == "too_short"]
        if short:
            print(
                f"polyhead-cslr: warning: {len(short)} inputs shorter than {self.trainer.datamodule.min_frames} "
                f"frames (the fewest per gloss in training), no gloss output: {', '.join(short[:5])}",
                file=sys.stderr,
            )
        print(
            f"polyhead-cslr: wrote {len(status)} predictions to {path} ({status.count('ok')} ok, "
            f"{status.count('abstained')} abstained, {len(short)} too short)"
        )
        self._predictions = []

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
