"""Utterance dataset, length-bucketed batch sampler and collate.

:class:`SpeechDataset` loads and featurises one utterance at a time; with ``skip_bad`` a bad utterance
(unreadable / empty / silent audio, text the tokenizer cannot represent, longer than ``max_duration``) is
reported with its manifest line and counted, and the dataset hands back ``None`` so that the collate drops
it: training never dies mid-epoch on one bad file. Utterances that fail the cheap checks (text, declared
duration) are removed up front.

:class:`BucketBatchSampler` sorts utterances by duration into buckets of ``bucket_size`` batches, forms
batches of at most ``max_batch_seconds`` of audio (and ``batch_size`` items) inside a bucket, and shuffles
the batches (seeded, per epoch), so padding stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from polyhead.speech.data.audio import AudioError, load_audio
from polyhead.speech.data.features import Fbank, speed_perturb
from polyhead.speech.data.manifest import ManifestError, SkipReport, Utterance
from polyhead.speech.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def screen(
    utts: list[Utterance], tokenizer: Tokenizer, *, max_duration: float, skip_bad: bool, report: SkipReport
) -> list[Utterance]:
    """Drop (or raise on) utterances whose text or declared duration is unusable."""
    keep = []
    for u in utts:
        problem = tokenizer.check(u.text)
        if problem is None and not u.text.strip():
            problem = "empty transcript"
        if problem is None and u.duration > max_duration:
            problem = f"longer than max_duration ({u.duration:.1f}s > {max_duration:.1f}s)"
        if problem is None:
            keep.append(u)
            continue
        if not skip_bad:
            raise ManifestError(f"{u.where()}: {problem}")
        report.add(problem.split(":")[0].split(" (")[0], u.where())
    return keep


class SpeechDataset(Dataset):
    def __init__(
        self,
        utts: list[Utterance],
        tokenizer: Tokenizer,
        fbank: Fbank,
        *,
        speed_factors: tuple[float, ...] = (1.0,),
        skip_bad: bool = False,
        max_duration: float = 30.0,
        report: SkipReport | None = None,
        seed: int = 0,
    ) -> None:
        self.utts, self.tokenizer, self.fbank = utts, tokenizer, fbank
        self.speed_factors, self.skip_bad, self.max_duration = speed_factors, skip_bad, max_duration
        self.report = report if report is not None else SkipReport()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], int] | None:
        u = self.utts[i]
        try:
            wav = load_audio(u.audio_filepath, self.fbank.sample_rate)
            seconds = wav.numel() / self.fbank.sample_rate
            if seconds > self.max_duration:
                raise AudioError(
                    f"{u.audio_filepath}: {seconds:.1f}s is longer than max_duration {self.max_duration}s"
                )
            if len(self.speed_factors) > 1:
                wav = speed_perturb(wav, float(self.rng.choice(self.speed_factors)), self.fbank.sample_rate)
            feats = self.fbank(wav)
            if feats.shape[0] < 8:
                raise AudioError(f"{u.audio_filepath}: too short ({seconds * 1000:.0f} ms) for the model")
        except AudioError as err:
            if not self.skip_bad:
                raise AudioError(f"{u.where()}: {err}") from None
            self.report.add(str(err).split(": ", 1)[-1].split(" (")[0], u.where())
            log.warning("skipping %s: %s", u.where(), err)
            return None
        return feats, self.tokenizer.encode(u.text), i


def collate(batch: list) -> tuple[Tensor, Tensor, list[list[int]], list[int]] | None:
    """Pad features; drops ``None`` (skipped) items. Returns ``(feats (B, T, F), lengths, targets, indices)``."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    lengths = torch.tensor([b[0].shape[0] for b in batch])
    feats = torch.nn.utils.rnn.pad_sequence([b[0] for b in batch], batch_first=True)
    return feats, lengths, [b[1] for b in batch], [b[2] for b in batch]


class BucketBatchSampler(Sampler[list[int]]):
    def __init__(
        self,
        durations: list[float],
        *,
        batch_size: int = 32,
        max_batch_seconds: float = 200.0,
        bucket_size: int = 8,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size, self.max_batch_seconds = batch_size, max_batch_seconds
        self.bucket_size, self.shuffle, self.seed = bucket_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        # sort by duration with random tie-breaking so equal-length utterances mix across epochs
        order = (
            np.lexsort((rng.random(len(self.durations)), self.durations))
            if self.shuffle
            else np.argsort(self.durations, kind="stable")
        )
        batches, cur, cur_max = [], [], 0.0
        for i in order:
            d = self.durations[i]
            if cur and (
                len(cur) >= self.batch_size or max(cur_max, d) * (len(cur) + 1) > self.max_batch_seconds
            ):
                batches.append(cur)
                cur, cur_max = [], 0.0
            cur.append(int(i))
            cur_max = max(cur_max, d)
        if cur:
            batches.append(cur)
        if self.shuffle:
            # shuffle inside buckets of neighbouring batches, then the buckets
            buckets = [batches[i : i + self.bucket_size] for i in range(0, len(batches), self.bucket_size)]
            for b in buckets:
                rng.shuffle(b)
            rng.shuffle(buckets)
            batches = [x for b in buckets for x in b]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
