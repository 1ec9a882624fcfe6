"""LightningModule for speech-to-text (``polyhead-speech``): joint CTC/attention training and evaluation.

    polyhead-speech fit                                      # synthesised corpus (espeak-ng + flite)
    polyhead-speech test                                     # WER/CER on unseen voices -> metrics.json
    polyhead-speech test --data.test_manifest other.jsonl    # any manifest, with the run's tokenizer
    polyhead-speech test --model.decoding joint --model.beam_size 8

The data side (manifests, run settings, skip counts) is :mod:`polyhead.speech.datamodule`. The module
stores the run's settings (tokenizer, normaliser, features) in every checkpoint, adds the auxiliary losses
of the attention modules (MoH load balance) to the training loss, and at the end of ``test``/``predict``
reports every record of the input as scored or skipped by reason, in one line and in metrics.json
(``test/utterances_total``, ``test/utterances_scored``, ``test/skipped_total``, ``test/skipped/<reason>``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchmetrics
import torchmetrics.text
from torch import Tensor

from polyhead.attention.blocks import aux_loss
from polyhead.speech.data.dataset import Batch
from polyhead.speech.data.features import spec_augment
from polyhead.speech.decoding import attention_beam_search, ctc_beam_search, greedy_ctc, joint_decode
from polyhead.speech.models import ASRModel, joint_loss
from polyhead.speech.run_settings import (
    CHECKPOINT_KEY,
    SETTINGS_FILE,
    SpeechSettings,
    settings_from_checkpoint,
)
from polyhead.train import run_dir


def reason_key(reason: str) -> str:
    """A skip reason as a metric-name part: ``"invalid JSON"`` -> ``invalid_json``."""
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")


class SpeechModule(pl.LightningModule):
    """Joint CTC/attention training; WER and CER on dev (greedy CTC) and test (``decoding``).

    Args:
        d_model, encoder_layers, decoder_layers, heads, conv_kernel, dropout: model size.
        attention: encoder self-attention variant (default ``{"name": "rel_mha"}``).
        decoder_attention: decoder self- and cross-attention variant (default ``{"name": "mha"}``).
        ctc_weight: CTC share of the loss (and of joint rescoring).
        label_smoothing: decoder cross-entropy smoothing.
        lr, warmup_steps, schedule: Adam peak learning rate, warm-up, ``noam`` or ``cosine`` decay.
        spec_augment: SpecAugment during training.
        decoding: test-time decoder: ``greedy`` (CTC), ``ctc_beam``, ``attention`` (beam), ``joint``.
        beam_size, length_penalty: beam settings.
    """

    def __init__(
        self,
        *,
        d_model: int = 144,
        encoder_layers: int = 4,
        decoder_layers: int = 2,
        heads: int = 4,
        conv_kernel: int = 15,
        dropout: float = 0.1,
        attention: dict[str, Any] | None = None,
        decoder_attention: dict[str, Any] | None = None,
        ctc_weight: float = 0.3,
        label_smoothing: float = 0.1,
        lr: float = 2e-3,
        warmup_steps: int = 300,
        schedule: Literal["noam", "cosine"] = "cosine",
        spec_augment: bool = True,
        decoding: Literal["greedy", "ctc_beam", "attention", "joint"] = "greedy",
        beam_size: int = 8,
        length_penalty: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: ASRModel | None = None
        self.settings: SpeechSettings | None = None
        for split in ("val", "test"):
            setattr(self, f"{split}_wer", torchmetrics.text.WordErrorRate())
            setattr(self, f"{split}_cer", torchmetrics.text.CharErrorRate())
        self._predictions: list[dict] = []
        self._load_skips: dict[str, dict[int, tuple[str, str]]] = {}  # split -> index -> (where, reason)
        self._scored: Counter = Counter()

    @property
    def tokenizer(self):  # the run's tokenizer (part of its settings)
        return self.settings.tokenizer if self.settings is not None else None

    def build(self, settings: SpeechSettings) -> None:
        hp = self.hparams
        self.settings = settings
        self.net = ASRModel(len(settings.tokenizer), n_mels=settings.n_mels, d_model=hp.d_model,
                            encoder_layers=hp.encoder_layers, decoder_layers=hp.decoder_layers, heads=hp.heads,
                            conv_kernel=hp.conv_kernel, dropout=hp.dropout, attention=hp.attention,
                            decoder_attention=hp.decoder_attention)  # fmt: skip

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        if self.net is None and dm.settings is not None:  # a fresh fit: settings from the training texts
            self.build(dm.settings)
        if stage == "fit" and self.trainer.is_global_zero and self.settings is not None:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            self.settings.save(d / SETTINGS_FILE)

    def built(self) -> ASRModel:
        """The network; an error if it has not been built (no settings from a fit, checkpoint or data)."""
        if self.net is None:
            raise RuntimeError(
                "the speech model is not built yet: fit, a checkpoint or data settings build it"
            )
        return self.net

    def _ensure_built(self) -> None:
        """An evaluation without a checkpoint (untrained model): the data module's fresh settings."""
        if self.net is None:
            self.build(self.trainer.datamodule.settings)
            self.built().to(self.device)

    def on_validation_start(self) -> None:
        self._ensure_built()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.settings is None:
            raise RuntimeError("a checkpoint of a model that was never built (no tokenizer/feature settings)")
        checkpoint[CHECKPOINT_KEY] = self.settings.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The run's own settings replace any built from files passed now (called before the weights load)."""
        settings = settings_from_checkpoint(checkpoint)
        if self.net is None or self.settings is None or settings.to_dict() != self.settings.to_dict():
            self.build(settings)
        if self._trainer is not None and self.trainer.datamodule is not None:
            dm = self.trainer.datamodule
            dm.settings = settings
            dm.splits.clear()  # screened against other settings, if any: screen again

    # ---- skip and score bookkeeping -----------------------------------------------------------------------
    def _note_skips(self, split: str, batch: Batch) -> None:
        seen = self._load_skips.setdefault(split, {})
        for s in batch.skipped:  # by dataset index: each utterance counts once however many epochs it fails
            seen[s.index] = (s.where, s.reason)

    def _count_summary(self, split: str, stage_split: str) -> dict[str, Any]:
        """Scored + skipped (by reason) = records of the split's source; one line and the metric values."""
        dm = self.trainer.datamodule
        reasons = Counter(dm.reports[stage_split].skipped)
        reasons.update(r for _, r in self._load_skips.get(stage_split, {}).values())
        skipped = sum(reasons.values())
        total = dm.records.get(stage_split, self._scored[split] + skipped)
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none"
        line = (f"polyhead-speech {split}: {dm.sources.get(stage_split, stage_split)}: {total} records, "
                f"scored {self._scored[split]}, skipped {skipped} ({detail})")  # fmt: skip
        values = {f"{split}/utterances_total": total, f"{split}/utterances_scored": self._scored[split],
                  f"{split}/skipped_total": skipped,
                  **{f"{split}/skipped/{reason_key(r)}": n for r, n in reasons.items()}}  # fmt: skip
        return {"line": line, "values": values}

    # ---- training ----------------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        self._note_skips("train", batch)
        if not len(batch):  # every utterance of the batch was skipped
            return None
        feats, lengths, targets = batch.feats, batch.lengths, batch.targets
        if self.hparams.spec_augment:
            feats = spec_augment(feats, lengths)
        out = self.built()(feats, lengths, targets)
        loss, parts = joint_loss(
            out, targets, ctc_weight=self.hparams.ctc_weight, label_smoothing=self.hparams.label_smoothing
        )
        bs = len(targets)
        aux = aux_loss(self.built())  # MoH load balance of every attention module, None for plain attention
        if aux is not None:
            loss = loss + aux
            self.log("train/aux_loss", aux, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/ctc", parts["ctc"], batch_size=bs)
        self.log("train/att", parts["att"], batch_size=bs)
        return loss

    def on_train_epoch_end(self) -> None:
        dm = self.trainer.datamodule
        skipped = dm.reports["train"].total + len(self._load_skips.get("train", {}))
        self.log("train/skipped_total", float(skipped))

    @torch.no_grad()
    def transcribe(self, feats: Tensor, lengths: Tensor, method: str | None = None) -> list[list[int]]:
        method = method or self.hparams.decoding
        net = self.built()
        enc, enc_len, mask = net.encode(feats, lengths)
        lp = net.ctc_log_probs(enc)
        if method == "greedy":
            return greedy_ctc(lp, enc_len)
        if method == "ctc_beam":
            return ctc_beam_search(lp, enc_len, self.tokenizer, self.hparams.beam_size)
        out = []
        hp = self.hparams
        for b in range(enc.shape[0]):
            n = int(enc_len[b])
            mem, mm = enc[b : b + 1, :n], mask[b : b + 1, :n]
            if method == "joint":
                hyps = joint_decode(net, mem, mm, lp[b], n, self.tokenizer, beam_size=hp.beam_size,
                                    ctc_weight=hp.ctc_weight, length_penalty=hp.length_penalty)  # fmt: skip
            else:
                hyps = attention_beam_search(net, mem, mm, beam_size=hp.beam_size, max_len=max(8, n),
                                             length_penalty=hp.length_penalty)  # fmt: skip
            out.append(hyps[0].tokens)
        return out

    def _eval(self, split: str, batch: Batch, method: str) -> None:
        self._note_skips("dev" if split == "val" else split, batch)
        if not len(batch):
            return
        feats, lengths, targets = batch.feats, batch.lengths, batch.targets
        self._scored[split] += len(targets)
        hyps = [self.tokenizer.decode(h) for h in self.transcribe(feats, lengths, method)]
        refs = [self.tokenizer.decode(t) for t in targets]
        getattr(self, f"{split}_wer").update(hyps, refs)
        getattr(self, f"{split}_cer").update(hyps, refs)
        self.log(f"{split}/wer", getattr(self, f"{split}_wer"), prog_bar=True, batch_size=len(refs))
        self.log(f"{split}/cer", getattr(self, f"{split}_cer"), batch_size=len(refs))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval("val", batch, "greedy")

    def on_test_start(self) -> None:
        self._ensure_built()

    def on_test_epoch_start(self) -> None:
        self._scored["test"] = 0
        self._load_skips["test"] = {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval("test", batch, self.hparams.decoding)

    def on_test_epoch_end(self) -> None:
        summary = self._count_summary("test", "test")
        for k, v in summary["values"].items():
            self.log(k, float(v))
        if self.trainer.is_global_zero:
            print(summary["line"], flush=True)

    def on_predict_start(self) -> None:
        self._ensure_built()

    def on_predict_epoch_start(self) -> None:
        self._scored["predict"] = 0
        self._load_skips["predict"] = {}

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict]:
        """Transcripts with CTC-aligned word timestamps for ``data.predict_manifest`` / ``data.predict_audio``."""
        from polyhead.speech.explain import ctc_timestamps

        self._note_skips("predict", batch)
        if not len(batch):
            return []
        feats, lengths, idx = batch.feats, batch.lengths, batch.indices
        self._scored["predict"] += len(idx)
        hyps = self.transcribe(feats, lengths)
        with torch.no_grad():
            enc, enc_len, _ = self.built().encode(feats, lengths)
            lp = self.built().ctc_log_probs(enc)
        utts = self.trainer.datamodule.splits["predict"]
        rows = []
        for b, h in enumerate(hyps):
            words = ctc_timestamps(lp[b, : int(enc_len[b])], h, self.tokenizer) if h else []
            rows.append(
                {
                    "audio_filepath": utts[idx[b]].audio_filepath,
                    "text": self.tokenizer.decode(h),
                    "words": words,
                }
            )
        self._predictions += rows
        return rows

    def on_predict_epoch_end(self) -> None:
        path = run_dir(self.trainer) / "predictions.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in self._predictions), encoding="utf-8")
        summary = self._count_summary("predict", "predict")
        counts = {k.removeprefix("predict/"): v for k, v in summary["values"].items()}
        (path.parent / "predictions.summary.json").write_text(json.dumps(counts, indent=1) + "\n")
        print(summary["line"].replace("scored", "transcribed"))
        print(f"polyhead-speech: wrote {len(self._predictions)} transcripts to {path}")
        self._predictions = []

    def configure_optimizers(self) -> Any:
        # foreach: one kernel per step for all tensors instead of a Python loop over them (timing: README)
        opt = torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, betas=(0.9, 0.98), eps=1e-9, foreach=True
        )
        warm = max(1, self.hparams.warmup_steps)
        total = max(warm + 1, int(self.trainer.estimated_stepping_batches))
        if self.hparams.schedule == "noam":

            def f(step: int) -> float:
                s = step + 1
                return min(s / warm, math.sqrt(warm / s))
        else:

            def f(step: int) -> float:
                if step < warm:
                    return (step + 1) / warm
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
