"""LightningModule and LightningDataModule for speech-to-text (``polyhead-speech``).

    polyhead-speech fit                                      # synthesised corpus (espeak-ng + flite)
    polyhead-speech test                                     # WER/CER on unseen voices -> metrics.json
    polyhead-speech fit --data.train_manifest train.jsonl --data.dev_manifest dev.jsonl \\
        --data.test_manifest test.jsonl                      # NeMo-style manifests (real data)
    polyhead-speech test --model.decoding joint --model.beam_size 8
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import Tensor
from torch.utils.data import DataLoader

from polyhead.speech.data.audio import AudioError, audio_duration
from polyhead.speech.data.dataset import BucketBatchSampler, SpeechDataset, collate, screen
from polyhead.speech.data.features import Fbank, spec_augment
from polyhead.speech.data.manifest import SkipReport, Utterance, read_manifest
from polyhead.speech.data.tokenizer import BpeTokenizer, CharTokenizer, Tokenizer
from polyhead.speech.decoding import attention_beam_search, ctc_beam_search, greedy_ctc, joint_decode
from polyhead.speech.models import ASRModel, joint_loss
from polyhead.train import run_dir


class SpeechDataModule(pl.LightningDataModule):
    """Manifests (or the synthesised corpus) -> length-bucketed batches of log-mel features.

    Args:
        train_manifest, dev_manifest, test_manifest: JSON-lines manifests; all three, or none for the
            synthesised corpus.
        predict_manifest, predict_audio: what ``predict`` transcribes: a manifest, or audio files of any
            sample rate and channel count (``--data.predict_audio '[a.wav, b.flac]'``).
        cache_dir: where the synthesised corpus is written.
        num_utterances, seed, synth_workers: synthesised corpus settings.
        tokenizer: ``char`` or ``bpe`` (sentencepiece, trained on the training transcripts).
        bpe_vocab_size: BPE vocabulary size.
        batch_size, max_batch_seconds: batch limits (items, seconds of audio).
        max_duration: longer utterances are errors (or skipped with ``skip_bad``).
        skip_bad: report and skip bad manifest lines, unreadable audio, unrepresentable text.
        speed_perturb: training speed factors (e.g. ``[0.9, 1.0, 1.1]``).
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        *,
        train_manifest: str | None = None,
        dev_manifest: str | None = None,
        test_manifest: str | None = None,
        predict_manifest: str | None = None,
        predict_audio: list[str] | None = None,
        cache_dir: str = "runs/speech/cache",
        num_utterances: int = 1200,
        seed: int = 0,
        synth_workers: int = 4,
        tokenizer: Literal["char", "bpe"] = "char",
        bpe_vocab_size: int = 256,
        batch_size: int = 32,
        max_batch_seconds: float = 160.0,
        max_duration: float = 20.0,
        skip_bad: bool = False,
        speed_perturb: list[float] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        files = {"data.train_manifest": train_manifest, "data.dev_manifest": dev_manifest,
                 "data.test_manifest": test_manifest}  # fmt: skip
        given = {k: v for k, v in files.items() if v is not None}
        if given and len(given) != 3:
            raise ValueError(
                f"real data needs all of {sorted(files)}; missing {sorted(set(files) - set(given))}"
            )
        audio = [("data.predict_audio", a) for a in predict_audio or []]
        for k, v in [*given.items(), ("data.predict_manifest", predict_manifest), *audio]:
            if v is not None and not Path(v).is_file():
                raise FileNotFoundError(f"{k}: no such file: {v}")
        if predict_manifest is not None and predict_audio:
            raise ValueError("give data.predict_manifest or data.predict_audio, not both")
        self.files, self.predict_manifest, self.predict_audio = given, predict_manifest, predict_audio
        self.cache_dir, self.num_utterances, self.seed, self.synth_workers = (
            Path(cache_dir),
            num_utterances,
            seed,
            synth_workers,
        )
        self.tokenizer_kind, self.bpe_vocab_size = tokenizer, bpe_vocab_size
        self.batch_size, self.max_batch_seconds, self.max_duration = (
            batch_size,
            max_batch_seconds,
            max_duration,
        )
        self.skip_bad, self.speed = skip_bad, tuple(speed_perturb or (1.0,))
        self.num_workers = num_workers
        self.fbank = Fbank()
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, list[Utterance]] = {}
        self.report = SkipReport()

    def _manifests(self) -> dict[str, Path]:
        if self.files:
            return {s: Path(self.files[f"data.{s}_manifest"]) for s in ("train", "dev", "test")}
        from polyhead.speech.data.synth import synthesize_corpus

        root = synthesize_corpus(
            self.cache_dir, num_utterances=self.num_utterances, seed=self.seed, workers=self.synth_workers
        )
        return {s: root / f"{s}.jsonl" for s in ("train", "dev", "test")}

    def prepare_data(self) -> None:
        if self.trainer is None or self.trainer.state.fn != "predict":
            self._manifests()

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if self.predict_audio:
                self.splits["predict"] = self._audio_utterances(self.predict_audio)
            elif self.predict_manifest is not None:
                self.splits["predict"] = read_manifest(
                    self.predict_manifest, skip_bad=self.skip_bad, report=self.report
                )
            else:
                raise ValueError("predict needs data.predict_manifest or data.predict_audio")
            if self.report.total:
                print(f"polyhead-speech: skipped {self.report.total} inputs: {self.report.examples[:5]}")
            return
        if "train" in self.splits:
            return
        paths = self._manifests()
        raw = {s: read_manifest(p, skip_bad=self.skip_bad, report=self.report) for s, p in paths.items()}
        if self.tokenizer is None:
            texts = [u.text for u in raw["train"]]
            self.tokenizer = (
                CharTokenizer.train(texts)
                if self.tokenizer_kind == "char"
                else BpeTokenizer.train(texts, self.bpe_vocab_size)
            )
        for s, utts in raw.items():
            self.splits[s] = screen(
                utts,
                self.tokenizer,
                max_duration=self.max_duration,
                skip_bad=self.skip_bad,
                report=self.report,
            )
        if self.report.total:
            print(f"polyhead-speech: skipped {self.report.total} utterances: {dict(self.report.skipped)}")
            for e in self.report.examples[:5]:
                print(f"  {e}")

    def _audio_utterances(self, paths: list[str]) -> list[Utterance]:
        """Untranscribed utterances for ``predict``; unreadable files raise (or are counted with skip_bad)."""
        utts = []
        for i, p in enumerate(paths):
            try:
                utts.append(Utterance(p, "", audio_duration(p), line=i + 1, manifest="data.predict_audio"))
            except AudioError as err:
                if not self.skip_bad:
                    raise AudioError(f"data.predict_audio[{i}]: {err}") from None
                self.report.add("unreadable audio", f"data.predict_audio[{i}] {p}")
        return utts

    def _loader(self, split: str, train: bool) -> DataLoader:
        utts = self.splits[split]
        ds = SpeechDataset(utts, self.tokenizer, self.fbank, speed_factors=self.speed if train else (1.0,),
                           skip_bad=self.skip_bad, max_duration=self.max_duration, report=self.report, seed=self.seed)  # fmt: skip
        sampler = BucketBatchSampler([u.duration for u in utts], batch_size=self.batch_size,
                                     max_batch_seconds=self.max_batch_seconds, shuffle=train, seed=self.seed)  # fmt: skip
        if train and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", False)


class SpeechModule(pl.LightningModule):
    """Joint CTC/attention training; WER and CER on dev (greedy CTC) and test (``decoding``).

    Args:
        d_model, encoder_layers, decoder_layers, heads, conv_kernel, dropout: model size.
        attention: encoder self-attention variant (default ``{"name": "rel_mha"}``).
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
        self.tokenizer: Tokenizer | None = None
        for split in ("val", "test"):
            setattr(self, f"{split}_wer", torchmetrics.text.WordErrorRate())
            setattr(self, f"{split}_cer", torchmetrics.text.CharErrorRate())
        self._predictions: list[dict] = []

    def build(self, tokenizer: Tokenizer) -> None:
        hp = self.hparams
        self.tokenizer = tokenizer
        self.net = ASRModel(len(tokenizer), d_model=hp.d_model, encoder_layers=hp.encoder_layers,
                            decoder_layers=hp.decoder_layers, heads=hp.heads, conv_kernel=hp.conv_kernel,
                            dropout=hp.dropout, attention=hp.attention)  # fmt: skip

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        dm.setup(stage)
        if stage == "predict":
            return
        if self.net is None:
            self.build(dm.tokenizer)
        if stage == "fit" and self.trainer.is_global_zero:
            d = run_dir(self.trainer)
            d.mkdir(parents=True, exist_ok=True)
            dm.tokenizer.save(d / "tokenizer.json")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer"] = self.tokenizer.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.net is None and "tokenizer" in checkpoint:
            self.build(Tokenizer.from_dict(checkpoint["tokenizer"]))
            dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
            if dm is not None and dm.tokenizer is None:
                dm.tokenizer = self.tokenizer

    def training_step(self, batch: Any, batch_idx: int) -> Tensor | None:
        if batch is None:  # every utterance of the batch was skipped
            return None
        feats, lengths, targets, _ = batch
        if self.hparams.spec_augment:
            feats = spec_augment(feats, lengths)
        out = self.net(feats, lengths, targets)
        loss, parts = joint_loss(
            out, targets, ctc_weight=self.hparams.ctc_weight, label_smoothing=self.hparams.label_smoothing
        )
        bs = len(targets)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/ctc", parts["ctc"], batch_size=bs)
        self.log("train/att", parts["att"], batch_size=bs)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/skipped_total", float(self.trainer.datamodule.report.total))

    @torch.no_grad()
    def transcribe(self, feats: Tensor, lengths: Tensor, method: str | None = None) -> list[list[int]]:
        method = method or self.hparams.decoding
        enc, enc_len, mask = self.net.encode(feats, lengths)
        lp = self.net.ctc_log_probs(enc)
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
                hyps = joint_decode(self.net, mem, mm, lp[b], n, self.tokenizer, beam_size=hp.beam_size,
                                    ctc_weight=hp.ctc_weight, length_penalty=hp.length_penalty)  # fmt: skip
            else:
                hyps = attention_beam_search(self.net, mem, mm, beam_size=hp.beam_size, max_len=max(8, n),
                                             length_penalty=hp.length_penalty)  # fmt: skip
            out.append(hyps[0].tokens)
        return out

    def _eval(self, split: str, batch: Any, method: str) -> None:
        if batch is None:
            return
        feats, lengths, targets, _ = batch
        hyps = [self.tokenizer.decode(h) for h in self.transcribe(feats, lengths, method)]
        refs = [self.tokenizer.decode(t) for t in targets]
        getattr(self, f"{split}_wer").update(hyps, refs)
        getattr(self, f"{split}_cer").update(hyps, refs)
        self.log(f"{split}/wer", getattr(self, f"{split}_wer"), prog_bar=True, batch_size=len(refs))
        self.log(f"{split}/cer", getattr(self, f"{split}_cer"), batch_size=len(refs))

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval("val", batch, "greedy")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval("test", batch, self.hparams.decoding)

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict]:
        """Transcripts with CTC-aligned word timestamps for ``data.predict_manifest``."""
        from polyhead.speech.explain import ctc_timestamps

        if batch is None:
            return []
        feats, lengths, _, idx = batch
        hyps = self.transcribe(feats, lengths)
        with torch.no_grad():
            enc, enc_len, _ = self.net.encode(feats, lengths)
            lp = self.net.ctc_log_probs(enc)
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
        print(f"polyhead-speech: wrote {len(self._predictions)} transcripts to {path}")
        self._predictions = []

    def configure_optimizers(self) -> Any:
        # foreach: one kernel per step for all tensors; the per-tensor loop cost ~0.2 s per step on 2 CPU cores
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
