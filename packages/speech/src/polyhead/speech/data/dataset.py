"""Utterance dataset, length-bucketed batch sampler and collate.

:class:`SpeechDataset` loads and featurises one utterance at a time. With ``skip_bad`` a bad utterance
(unreadable / empty / silent audio, longer than ``max_duration``, too short for the model) comes back as a
:class:`Skipped` record (manifest line and reason) instead of features; :func:`collate` drops it from the
batch and hands it on in :attr:`Batch.skipped`, so the LightningModule counts it in the main process
(DataLoader workers keep no shared state). Utterances that fail the cheap checks (text, declared duration)
are removed up front by :func:`screen`, which counts them in a :class:`SkipReport`.

:class:`BucketBatchSampler` sorts utterances by duration into buckets of ``bucket_size`` batches, forms
batches of at most ``max_batch_seconds`` of audio (and ``batch_size`` items) inside a bucket, and shuffles
the batches (seeded, per epoch), so padding stays small. Under DDP each of ``num_replicas`` ranks takes
every ``num_replicas``-th batch of the same seeded order (the tail that does not divide evenly is dropped,
so every rank runs the same number of steps); the trainer then needs ``use_distributed_sampler: false``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

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
    """Drop (or raise on) utterances whose text (against ``tokenizer``) or declared duration is unusable."""
    keep = []
    for u in utts:
        problem, reason = tokenizer.check(u.text), "characters outside the tokenizer"
        if problem is None and not tokenizer.normalize(u.text):
            problem = reason = "empty transcript"
        if problem is None and u.duration > max_duration:
            problem = f"longer than max_duration ({u.duration:.1f}s > {max_duration:.1f}s)"
            reason = "longer than max_duration"
        if problem is None:
            keep.append(u)
            continue
        if not skip_bad:
            raise ManifestError(f"{u.where()}: {problem} (text {u.text!r})", reason=reason)
        report.add(reason, u.where())
    return keep


@dataclass  # not frozen: Lightning rebuilds dataclasses in a batch when moving it to the device
class Skipped:
    """An utterance the dataset could not load: its index, manifest place and reason."""

    index: int
    where: str
    reason: str


@dataclass
class Batch:
    """Padded features ``(B, T, F)``, their lengths, token targets, dataset indices, and the skipped items."""

    feats: Tensor
    lengths: Tensor
    targets: list[list[int]]
    indices: list[int]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)


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
        seed: int = 0,
    ) -> None:
        self.utts, self.tokenizer, self.fbank = utts, tokenizer, fbank
        self.speed_factors, self.skip_bad, self.max_duration = speed_factors, skip_bad, max_duration
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> tuple[Tensor, list[int], int] | Skipped:
        u = self.utts[i]
        try:
            wav = load_audio(u.audio_filepath, self.fbank.sample_rate)
            seconds = wav.numel() / self.fbank.sample_rate
            if seconds > self.max_duration:
                raise AudioError(
                    f"{u.audio_filepath}: {seconds:.1f}s is longer than max_duration {self.max_duration}s",
                    reason="longer than max_duration",
                )
            if len(self.speed_factors) > 1:
                wav = speed_perturb(wav, float(self.rng.choice(self.speed_factors)), self.fbank.sample_rate)
            feats = self.fbank(wav)
            if feats.shape[0] < 8:
                raise AudioError(
                    f"{u.audio_filepath}: too short ({seconds * 1000:.0f} ms) for the model",
                    reason="too short",
                )
        except AudioError as err:
            if not self.skip_bad:
                raise AudioError(f"{u.where()}: {err}", reason=err.reason) from None
            log.warning("skipping %s: %s", u.where(), err)
            return Skipped(i, u.where(), err.reason)
        return feats, self.tokenizer.encode(u.text), i


def collate(batch: list) -> Batch:
    """Pad features; :class:`Skipped` items go to ``Batch.skipped`` (the batch may then be empty)."""
    skipped = [b for b in batch if isinstance(b, Skipped)]
    items = [b for b in batch if not isinstance(b, Skipped)]
    if not items:
        return Batch(torch.zeros(0, 0, 0), torch.zeros(0, dtype=torch.long), [], [], skipped)
    lengths = torch.tensor([b[0].shape[0] for b in items])
    feats = torch.nn.utils.rnn.pad_sequence([b[0] for b in items], batch_first=True)
    return Batch(feats, lengths, [b[1] for b in items], [b[2] for b in items], skipped)


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
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={num_replicas}"
            )
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_size, self.max_batch_seconds = batch_size, max_batch_seconds
        self.bucket_size, self.shuffle, self.seed = bucket_size, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
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
        batches: list[list[int]] = []
        cur: list[int] = []
        cur_max = 0.0
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
        if self.num_replicas > 1:
            batches = batches[: len(batches) - len(batches) % self.num_replicas][
                self.rank :: self.num_replicas
            ]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())
