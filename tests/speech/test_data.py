"""polyhead-speech data: audio I/O checks, features and CMVN, SpecAugment, tokenizers, manifests, bucketing,
and bad input reported with its manifest line (or counted and skipped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polyhead.speech.data.audio import AudioError, load_audio
from polyhead.speech.data.dataset import BucketBatchSampler, SpeechDataset, collate, screen
from polyhead.speech.data.features import Fbank, spec_augment, speed_perturb
from polyhead.speech.data.manifest import ManifestError, SkipReport, build_manifest, read_manifest
from polyhead.speech.data.normalize import TextNormalizer
from polyhead.speech.data.tokenizer import SPECIALS, BpeTokenizer, CharTokenizer, Tokenizer

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"


def test_audio_resample_downmix_and_bad_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(44100) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone + 0.01 * rng.standard_normal(44100)], 1).astype(np.float32)
    sf.write(tmp_path / "st.wav", stereo, 44100)
    wav = load_audio(tmp_path / "st.wav", 16000)
    assert wav.shape == (16000,) and wav.dtype == torch.float32
    spec = torch.fft.rfft(wav).abs()
    assert abs(int(spec.argmax()) - 440) <= 1  # 1 Hz bins over one second: the tone survives resampling

    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.flac").write_text("not audio at all")
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 16000)
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    full = (tmp_path / "st.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[:30])  # truncated inside the header
    for name, msg in [("empty.wav", "empty file"), ("text.flac", "not a readable audio file"),
                      ("zero.wav", "zero-length"), ("silent.wav", "silent audio"), ("cut.wav", "not a readable")]:  # fmt: skip
        with pytest.raises(AudioError, match=msg) as e:
            load_audio(tmp_path / name)
        assert name in str(e.value)


def test_fbank_shape_and_cmvn() -> None:
    fb = Fbank()
    wav = torch.randn(16000 * 2) * torch.linspace(0.1, 1, 32000)
    f = fb(wav)
    assert f.shape == (fb.num_frames(32000), 80) == (197, 80)
    torch.testing.assert_close(f.mean(0), torch.zeros(80), atol=1e-4, rtol=0)
    torch.testing.assert_close(f.std(0), torch.ones(80), atol=1e-3, rtol=0)
    assert speed_perturb(wav, 1.1).shape[0] == pytest.approx(32000 / 1.1, abs=2)


def test_spec_augment_masks_within_limits() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 300, 80) + 5
    lengths = torch.tensor([300, 250, 120, 60])
    y = spec_augment(
        x, lengths, freq_masks=2, freq_width=10, time_masks=2, time_width=40, max_time_ratio=0.1, generator=g
    )
    masked = y == 0
    band = masked.all(1)  # (B, F) whole bands
    frame = masked.all(2)  # (B, T) whole frames
    assert band.any() and frame.any()
    assert (band.sum(1) <= 2 * 9).all()
    for b, L in enumerate(lengths.tolist()):
        assert frame[b].sum() <= 2 * min(39, int(0.1 * L))
        assert not frame[b, L:].any()
    assert torch.equal(y[~masked], x[~masked])


def test_tokenizers_round_trip_and_check(tmp_path: Path) -> None:
    texts = [json.loads(line)["text"] for line in (SAMPLE / "train.jsonl").read_text().splitlines()]
    char = CharTokenizer.train(texts)
    for t in texts:
        ids = char.encode(t)
        assert min(ids) >= len(SPECIALS) and char.decode(ids) == t
    assert char.check("café 9") is None  # accents folded, 9 spelled "nine"
    keep = CharTokenizer.train(texts, TextNormalizer("en", "keep"))
    assert "['9']" in keep.check("café 9")
    assert "'" in char.pieces and char.check("don't") is None  # English alphabet whatever the texts use
    assert "['λ']" in char.check("λ calculus")
    char.save(tmp_path / "c.json")
    assert Tokenizer.load(tmp_path / "c.json").encode(texts[0]) == char.encode(texts[0])
    bpe = BpeTokenizer.train(texts * 3, vocab_size=120)
    for t in texts:
        assert bpe.decode(bpe.encode(t)) == t
    bpe.save(tmp_path / "b.json")
    again = Tokenizer.load(tmp_path / "b.json")
    assert again.encode(texts[1]) == bpe.encode(texts[1]) and len(again) == len(bpe)


def test_manifest_errors_and_skips(tmp_path: Path) -> None:
    good = (SAMPLE / "train.jsonl").read_text().splitlines()[:3]
    lines = [good[0], "{not json", json.dumps({"audio_filepath": "a.flac", "text": "x"}), good[1],
             json.dumps({"audio_filepath": "a.flac", "text": "x", "duration": 0}), good[2]]  # fmt: skip
    m = tmp_path / "m.jsonl"
    m.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r"m.jsonl:2: "):
        read_manifest(m)
    report = SkipReport()
    utts = read_manifest(m, skip_bad=True, report=report)
    assert len(utts) == 3 and report.total == 3 and [u.line for u in utts] == [1, 4, 6]
    assert dict(report.skipped) == {"invalid JSON": 1, "missing fields": 1, "bad record": 1}
    assert report.summary().startswith("1 ")


def test_build_manifest_librispeech_and_tsv(tmp_path: Path) -> None:
    d = tmp_path / "ls" / "19" / "198"
    d.mkdir(parents=True)
    for i in range(3):
        sf.write(
            d / f"19-198-000{i}.flac", 0.1 * np.random.default_rng(i).standard_normal(8000 + 1600 * i), 16000
        )
    (d / "19-198.trans.txt").write_text("".join(f"19-198-000{i} WORD NUMBER {i}\n" for i in range(3)))
    utts = build_manifest(tmp_path / "ls", tmp_path / "ls.jsonl")
    assert [u.duration for u in utts] == [0.5, 0.6, 0.7] and utts[0].speaker == "19"
    assert len(read_manifest(tmp_path / "ls.jsonl")) == 3
    (tmp_path / "t.tsv").write_text("19-198-0000\thello there\nmissing-id\tno audio\n")
    with pytest.raises(ManifestError, match="missing-id"):
        build_manifest(tmp_path / "ls", tmp_path / "t.jsonl", transcripts=tmp_path / "t.tsv")


def test_bad_utterances_are_skipped_and_counted(tmp_path: Path) -> None:
    utts = read_manifest(SAMPLE / "train.jsonl")[:4]
    (tmp_path / "broken.flac").write_bytes(b"RIFF....garbage")
    from dataclasses import replace

    utts[1] = replace(utts[1], audio_filepath=str(tmp_path / "broken.flac"))
    utts.append(replace(utts[0], text="numbers 123", line=99))
    utts.append(replace(utts[0], duration=99.0, line=100))
    tok = CharTokenizer.train((u.text for u in utts[:1] + utts[2:4]), TextNormalizer("en", "keep"))
    with pytest.raises(ManifestError, match="characters outside the tokenizer") as e:
        screen(utts, tok, max_duration=20, skip_bad=False, report=SkipReport())
    assert e.value.reason == "characters outside the tokenizer" and ":99:" in str(e.value)
    report = SkipReport()
    kept = screen(utts, tok, max_duration=20, skip_bad=True, report=report)
    assert len(kept) == 4 and dict(report.skipped) == {"characters outside the tokenizer": 1,
                                                      "longer than max_duration": 1}  # fmt: skip
    ds = SpeechDataset(kept, tok, Fbank(), skip_bad=True)
    batch = collate([ds[i] for i in range(len(ds))])
    assert len(batch) == 3 and len(batch.targets) == 3 and batch.feats.shape[0] == 3
    assert [(s.index, s.reason) for s in batch.skipped] == [(1, "unreadable audio")]
    assert "train.jsonl:" in batch.skipped[0].where
    empty = collate([ds[1]])
    assert len(empty) == 0 and len(empty.skipped) == 1
    with pytest.raises(AudioError, match=r"train.jsonl:\d+: .*broken.flac") as e:
        SpeechDataset(kept, tok, Fbank(), skip_bad=False)[1]
    assert e.value.reason == "unreadable audio"


def test_bucket_sampler_covers_everything_with_little_padding() -> None:
    rng = np.random.default_rng(0)
    dur = rng.uniform(1, 15, 500).tolist()
    s = BucketBatchSampler(dur, batch_size=16, max_batch_seconds=100, shuffle=True, seed=0)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(len(b) * max(dur[i] for i in b) <= 100 or len(b) == 1 for b in batches)
    pad = sum(len(b) * max(dur[i] for i in b) - sum(dur[i] for i in b) for b in batches) / sum(dur)
    assert pad < 0.1
    s.set_epoch(1)
    assert list(s) != batches


def test_bucket_sampler_shards_over_ranks() -> None:
    dur = np.random.default_rng(1).uniform(1, 15, 203).tolist()
    full = BucketBatchSampler(dur, batch_size=8, max_batch_seconds=60, shuffle=True, seed=3)
    ranks = [BucketBatchSampler(dur, batch_size=8, max_batch_seconds=60, shuffle=True, seed=3, num_replicas=3,
                                rank=r) for r in range(3)]  # fmt: skip
    shards = [list(s) for s in ranks]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(full) // 3  # same step count per rank
    whole = list(full)[: 3 * len(shards[0])]
    assert [b for step in zip(*shards) for b in step] == whole  # disjoint, and together the seeded order
    with pytest.raises(ValueError, match="rank must be in"):
        BucketBatchSampler(dur, num_replicas=2, rank=2)
