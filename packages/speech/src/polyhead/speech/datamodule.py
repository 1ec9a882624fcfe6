"""LightningDataModule for speech-to-text: manifests (or a synthesised corpus) -> length-bucketed batches.

    polyhead-speech fit                                      # synthesised sentences (espeak-ng + flite)
    polyhead-speech fit --data.task digits                   # synthesised digit strings (the quick task)
    polyhead-speech fit --data.train_manifest train.jsonl --data.dev_manifest dev.jsonl
    polyhead-speech test --data.test_manifest other.jsonl    # any manifest, read with the run's tokenizer
    polyhead-speech fit --data.common_voice cv-corpus-17.0/en   # Common Voice: train/dev/test.tsv + MP3 clips

Each stage reads only the manifest it needs (``fit``: train + dev, ``validate``: dev, ``test``: test,
``predict``: the predict manifest or audio files); none given: the synthesised corpus of ``task``. A run
that restores a checkpoint (``test``, ``predict``, ``validate``, ``fit --ckpt_path last``) takes the
tokenizer, text normaliser and feature settings from it (:mod:`polyhead.speech.run_settings`); only a fresh
``fit`` builds them, from the training transcripts. Every record of the split's manifest ends up scored or
skipped with a reason (:attr:`SpeechDataModule.reports`): the module adds the audio that fails to load and
writes the counts to metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from polyhead.speech.data.audio import AudioError, audio_duration
from polyhead.speech.data.dataset import BucketBatchSampler, SpeechDataset, collate, screen
from polyhead.speech.data.errors import SpeechDataError
from polyhead.speech.data.features import Fbank
from polyhead.speech.data.manifest import SkipReport, Utterance, read_manifest
from polyhead.speech.data.normalize import TextNormalizer
from polyhead.speech.data.tokenizer import BpeTokenizer, CharTokenizer, Tokenizer
from polyhead.speech.run_settings import SpeechSettings

SPLIT_OF_STAGE = {"fit": ("train", "dev"), "validate": ("dev",), "test": ("test",), "predict": ("predict",)}


class SpeechDataModule(pl.LightningDataModule):
    """Manifests (or the synthesised corpus) -> length-bucketed batches of log-mel features.

    Args:
        train_manifest, dev_manifest, test_manifest: JSON-lines manifests (``audio_filepath``, ``text``,
            ``duration``); ``fit`` needs train and dev, ``test`` the test manifest; none of them: the
            synthesised corpus.
        predict_manifest, predict_audio: what ``predict`` transcribes: a manifest, or audio files of any
            format libsndfile reads (WAV, FLAC, OGG, MP3, ...), sample rate and channel count.
        common_voice: a Common Voice language folder (``train.tsv``, ``dev.tsv``, ``test.tsv``, ``clips/``):
            the splits of any manifest not given come from its TSVs.
        task: synthesised corpus: ``sentences`` (open vocabulary) or ``digits`` (connected digits).
        cache_dir: where the synthesised corpus is written.
        num_utterances, seed, synth_workers: synthesised corpus settings.
        voices: the synthesised corpus's training voices: ``task`` (the task's own), ``every`` (every English
            voice of flite and espeak-ng) or ``every+festival`` (and festival's English voices).
        reverb: share of synthesised training/dev utterances convolved with a synthetic room response.
        recorded_noise: share of the noisy synthesised training/dev utterances whose noise is a segment of
            ``noise_file`` (a recording; default: alsa-utils' ``Noise.wav``) instead of white/pink noise.
        tokenizer: ``char`` or ``bpe`` (sentencepiece, trained on the training transcripts).
        bpe_vocab_size: BPE vocabulary size.
        text_language: transcript normalisation, ``en`` (English rules) or ``basic`` (any script).
        numbers: ``spell`` digits out as English words, or ``keep`` them (a char tokenizer reports them).
        n_mels: mel bands of the features.
        batch_size, max_batch_seconds: batch limits (items, seconds of audio).
        max_duration: longer utterances are errors (or skipped with ``skip_bad``).
        skip_bad: skip and count bad manifest lines, unreadable audio and text the tokenizer cannot
            represent, instead of stopping at the first one.
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
        common_voice: str | None = None,
        task: Literal["sentences", "digits"] = "sentences",
        cache_dir: str = "runs/speech/cache",
        num_utterances: int = 1200,
        seed: int = 0,
        synth_workers: int = 4,
        voices: Literal["task", "every", "every+festival"] = "task",
        reverb: float = 0.0,
        recorded_noise: float = 0.0,
        noise_file: str = "/usr/share/sounds/alsa/Noise.wav",
        tokenizer: Literal["char", "bpe"] = "char",
        bpe_vocab_size: int = 256,
        text_language: Literal["en", "basic"] = "en",
        numbers: Literal["spell", "keep"] = "spell",
        n_mels: int = 80,
        batch_size: int = 32,
        max_batch_seconds: float = 160.0,
        max_duration: float = 20.0,
        skip_bad: bool = False,
        speed_perturb: list[float] | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if (train_manifest is None) != (dev_manifest is None):
            raise ValueError(
                "real data for fit needs both data.train_manifest and data.dev_manifest; got only "
                + ("data.train_manifest" if train_manifest else "data.dev_manifest")
            )
        files = {"train": train_manifest, "dev": dev_manifest, "test": test_manifest}
        for k, v in [*((f"data.{s}_manifest", f) for s, f in files.items()), ("data.predict_manifest", predict_manifest)]:  # fmt: skip
            if v is not None and not Path(v).is_file():
                raise FileNotFoundError(f"{k}: no such file: {v}")
        if common_voice is not None and not Path(common_voice).is_dir():
            raise FileNotFoundError(f"data.common_voice: no such folder: {common_voice}")
        if predict_manifest is not None and predict_audio:
            raise ValueError("give data.predict_manifest or data.predict_audio, not both")
        if task not in ("sentences", "digits"):
            raise ValueError(f"data.task must be 'sentences' or 'digits', got {task!r}")
        self.normalizer = TextNormalizer(text_language, numbers)  # raises on an invalid combination
        self.files = {s: f for s, f in files.items() if f is not None}
        self.common_voice = common_voice
        self.predict_manifest, self.predict_audio = predict_manifest, predict_audio
        self.task, self.cache_dir, self.num_utterances = task, Path(cache_dir), num_utterances
        self.seed, self.synth_workers = seed, synth_workers
        if voices not in ("task", "every", "every+festival"):
            raise ValueError(f"data.voices must be 'task', 'every' or 'every+festival', got {voices!r}")
        for name, share in (("data.reverb", reverb), ("data.recorded_noise", recorded_noise)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} is a share of utterances in [0, 1], got {share}")
        self.voices, self.reverb, self.recorded_noise = voices, reverb, recorded_noise
        self.noise_file = noise_file
        self.tokenizer_kind, self.bpe_vocab_size, self.n_mels = tokenizer, bpe_vocab_size, n_mels
        self.batch_size, self.max_batch_seconds, self.max_duration = (
            batch_size,
            max_batch_seconds,
            max_duration,
        )
        self.skip_bad, self.speed = skip_bad, tuple(speed_perturb or (1.0,))
        self.num_workers = num_workers
        self.settings: SpeechSettings | None = None
        self.raw: dict[str, list[Utterance]] = {}  # split -> utterances as read
        self.splits: dict[str, list[Utterance]] = {}  # split -> those the run's tokenizer represents
        self.sources: dict[str, str] = {}  # split -> the manifest (or input list) it was read from
        self.records: dict[str, int] = {}  # split -> records in that source (scored + skipped)
        self.reports: dict[str, SkipReport] = {}

    # ---- where each split comes from ---------------------------------------------------------------
    def _synth_root(self) -> Path:
        from polyhead.speech.data.synth import synthesize_corpus

        try:
            return synthesize_corpus(self.cache_dir, num_utterances=self.num_utterances, seed=self.seed,
                                     workers=self.synth_workers, task=self.task, voices=self.voices,
                                     reverb=self.reverb, recorded_noise=self.recorded_noise,
                                     noise_file=self.noise_file)  # fmt: skip
        except (
            RuntimeError,
            FileNotFoundError,
        ) as err:  # the synthesisers or the noise recording are missing
            raise SpeechDataError(str(err), reason="no synthesiser") from None

    def manifest_of(self, split: str) -> Path:
        if split in self.files:
            return Path(self.files[split])
        if self.common_voice is not None:
            return Path(self.common_voice) / f"{split}.tsv"
        if self.files:  # real data for another split: never fall back to the synthesised corpus silently
            raise SpeechDataError(
                f"the {split} split needs data.{split}_manifest (only {sorted(self.files)} given)",
                reason="missing manifest",
            )
        return self._synth_root() / f"{split}.jsonl"

    def prepare_data(self) -> None:
        stage = self.trainer.state.fn if self.trainer is not None else "fit"
        real = self.common_voice is not None or all(s in self.files for s in SPLIT_OF_STAGE.get(stage, ()))
        if stage != "predict" and not real:
            self._synth_root()

    # ---- setup ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # A fresh fit builds the settings from the training transcripts. Otherwise they come from the
        # checkpoint: Lightning restores it after setup, so the module hands them over in on_load_checkpoint
        # and the text is checked against them when the loaders are made (:meth:`utterances`).
        if self.settings is None and stage == "fit":
            self.settings = self._new_settings()
        for split in SPLIT_OF_STAGE[stage]:
            if split in self.raw and split != "predict":
                continue
            self.reports[split] = report = SkipReport()
            self.splits.pop(split, None)
            if split == "predict":
                self.raw[split] = self._predict_utterances(report)
            else:
                path = self.manifest_of(split)
                self.sources[split] = str(path)
                self.raw[split] = self._read(path, report)
                self.records[split] = len(self.raw[split]) + report.total
            if report.total:
                print(f"polyhead-speech: {self.sources[split]}: skipped {report.total} of {self.records[split]} "
                      f"records while reading ({report.summary()}); first: {report.examples[:3]}")  # fmt: skip

    def utterances(self, split: str) -> list[Utterance]:
        """The split's utterances whose text the run's tokenizer represents (the others reported/counted)."""
        if split not in self.splits:
            if self.settings is None:  # no checkpoint restored: an untrained model, settings as a fresh fit's
                self.settings = self._new_settings()
            raw, report = self.raw[split], self.reports[split]
            if split == "predict":  # untranscribed input: no text to check
                self.splits[split] = raw
            else:
                before = report.total
                self.splits[split] = screen(raw, self.settings.tokenizer, max_duration=self.max_duration,
                                            skip_bad=self.skip_bad, report=report)  # fmt: skip
                if report.total > before:
                    print(f"polyhead-speech: {self.sources[split]}: skipped {report.total - before} records "
                          f"against the run's tokenizer/limits; first: {report.examples[-3:]}")  # fmt: skip
        return self.splits[split]

    def _read(self, path: Path, report: SkipReport, skip_bad: bool | None = None) -> list[Utterance]:
        """A JSON-lines manifest, or a Common Voice TSV (``<split>.tsv`` of ``data.common_voice``)."""
        skip = self.skip_bad if skip_bad is None else skip_bad
        if path.suffix == ".tsv":
            from polyhead.speech.data.common_voice import read_common_voice

            return read_common_voice(path.parent, path.stem, skip_bad=skip, report=report)
        return read_manifest(path, skip_bad=skip, report=report)

    def _new_settings(self) -> SpeechSettings:
        """Tokenizer and features built from the training transcripts (a fresh ``fit``, or an untrained model)."""
        texts = [u.text for u in self._read(self.manifest_of("train"), SkipReport(), skip_bad=True)]
        tok: Tokenizer
        if self.tokenizer_kind == "char":
            tok = CharTokenizer.train(texts, self.normalizer)
        else:
            tok = BpeTokenizer.train(texts, self.bpe_vocab_size, self.normalizer)
        return SpeechSettings(tok, Fbank(n_mels=self.n_mels).config())

    def _predict_utterances(self, report: SkipReport) -> list[Utterance]:
        if self.predict_manifest is not None:
            self.sources["predict"] = self.predict_manifest
            raw = read_manifest(self.predict_manifest, skip_bad=self.skip_bad, report=report)
            self.records["predict"] = len(raw) + report.total
            return raw
        if not self.predict_audio:
            raise SpeechDataError(
                "predict needs data.predict_manifest or data.predict_audio", reason="no input"
            )
        self.sources["predict"] = "data.predict_audio"
        self.records["predict"] = len(self.predict_audio)
        utts = []
        for i, p in enumerate(self.predict_audio):
            try:
                utts.append(Utterance(p, "", audio_duration(p), line=i + 1, manifest="data.predict_audio"))
            except AudioError as err:
                if not self.skip_bad:
                    raise AudioError(f"data.predict_audio[{i}]: {err}", reason=err.reason) from None
                report.add(err.reason, f"data.predict_audio[{i}] {p}")
        return utts

    # ---- loaders ---------------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> DataLoader:
        utts = self.utterances(split)
        if self.settings is None:
            raise RuntimeError("the data module has no tokenizer/feature settings yet (setup() not run)")
        ds = SpeechDataset(utts, self.settings.tokenizer, self.settings.fbank(),
                           speed_factors=self.speed if train else (1.0,), skip_bad=self.skip_bad,
                           max_duration=self.max_duration, seed=self.seed)  # fmt: skip
        sampler = BucketBatchSampler([u.duration for u in utts], batch_size=self.batch_size,
                                     max_batch_seconds=self.max_batch_seconds, shuffle=train, seed=self.seed,
                                     **self._shard(train))  # fmt: skip
        if train and self.trainer is not None:
            sampler.set_epoch(self.trainer.current_epoch)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

    def _shard(self, train: bool) -> dict[str, int]:
        """DDP: training batches are split over the ranks. Evaluation loaders are not (each rank would score
        the whole split), so the recipes run ``test``/``predict`` on one device."""
        t = self.trainer
        if not train or t is None or t.world_size <= 1:
            return {}
        return {"num_replicas": t.world_size, "rank": t.global_rank}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", False)
