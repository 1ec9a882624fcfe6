"""Reverberation and noise augmentation: seeded, the SNR and RT60 they promise, and the corpus plan keeps the
test split of every augmentation setting identical."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyhead.speech.data.manifest import read_manifest
from polyhead.speech.data.noise import RecordedNoise, coloured_noise, mix_at_snr
from polyhead.speech.data.reverb import reverberate, synthetic_rir
from polyhead.speech.data.synth import (
    FESTIVAL_VOICES,
    TEST_VOICES,
    engines_available,
    plan,
    speak,
    synthesize_corpus,
)


def snr_db(clean: np.ndarray, mixed: np.ndarray) -> float:
    """Reference: signal energy over the energy of what was added, in float64."""
    clean, mixed = clean.astype(np.float64), mixed.astype(np.float64)
    return float(10 * np.log10(np.sum(clean**2) / np.sum((mixed - clean) ** 2)))


@pytest.mark.parametrize("target", [-5.0, 0.0, 10.0, 23.5, 40.0])
def test_mix_at_snr_hits_the_target(target: float) -> None:
    rng = np.random.default_rng(7)
    clean = (np.sin(np.arange(8000) * 0.05) * rng.uniform(0.1, 1.0, 8000)).astype(np.float32)
    for noise in (rng.standard_normal(8000).astype(np.float32) * 3, coloured_noise(8000, rng, pink=True)):
        assert snr_db(clean, mix_at_snr(clean, noise, target)) == pytest.approx(target, abs=1e-3)
    with pytest.raises(ValueError, match="shape"):
        mix_at_snr(clean, clean[:10], 10.0)


def test_pink_noise_has_a_falling_spectrum() -> None:
    rng = np.random.default_rng(0)
    white, pink = coloured_noise(1 << 15, rng, pink=False), coloured_noise(1 << 15, rng, pink=True)

    def low_high(x: np.ndarray) -> float:
        p = np.abs(np.fft.rfft(x)) ** 2
        return float(p[20:200].mean() / p[-2000:].mean())

    assert low_high(white) < 2 and low_high(pink) > 50  # 1/f power: the low bins are ~100x lower in frequency


def test_recorded_noise_resamples_loops_and_is_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rec = rng.standard_normal((4800, 2)).astype(np.float32) * 0.1  # 0.1 s of stereo at 48 kHz
    sf.write(tmp_path / "n.wav", rec, 48000)
    noise = RecordedNoise(path=tmp_path / "n.wav", sample_rate=16000)
    assert len(noise.samples) == 1600  # downmixed and resampled by 1/3
    a, b = noise.segment(5000, np.random.default_rng(3)), noise.segment(5000, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    start = int(np.random.default_rng(3).integers(1600))
    np.testing.assert_array_equal(a, noise.samples[(start + np.arange(5000)) % 1600])  # looped, not padded
    assert not np.array_equal(a, noise.segment(5000, np.random.default_rng(4)))
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        RecordedNoise(path=tmp_path / "missing.wav")
    sf.write(tmp_path / "silent.wav", np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="silent"):
        RecordedNoise(path=tmp_path / "silent.wav")


def test_synthetic_rir_decays_at_its_rt60_and_is_seeded() -> None:
    sr = 16000
    for rt60, drr in ((0.3, 0.0), (0.8, -6.0)):
        rir = synthetic_rir(np.random.default_rng(5), sample_rate=sr, rt60=rt60, drr_db=drr)
        np.testing.assert_array_equal(
            rir, synthetic_rir(np.random.default_rng(5), sample_rate=sr, rt60=rt60, drr_db=drr)
        )
        assert rir[0] == 1.0 and len(rir) == 1 + round(0.002 * sr) + round(rt60 * sr)
        tail = rir[1:].astype(np.float64)
        assert 10 * np.log10(1.0 / np.sum(tail**2)) == pytest.approx(drr, abs=1e-4)
        # Schroeder backward integration: the energy decay curve falls 60 dB per rt60; fit its -5..-25 dB part
        edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
        sel = (edc < -5) & (edc > -25)
        slope = np.polyfit(np.arange(len(tail))[sel] / sr, edc[sel], 1)[0]
        assert -60 / slope == pytest.approx(rt60, rel=0.1)
    with pytest.raises(ValueError, match="rt60"):
        synthetic_rir(np.random.default_rng(0), sample_rate=sr, rt60=0.0)


def test_reverberate_is_the_convolution_at_the_same_level() -> None:
    rng = np.random.default_rng(2)
    wav, rir = rng.standard_normal(3000).astype(np.float32), rng.standard_normal(400).astype(np.float32)
    out = reverberate(wav, rir)
    ref = np.convolve(wav.astype(np.float64), rir.astype(np.float64))[:3000]
    ref *= np.sqrt(np.mean(wav.astype(np.float64) ** 2) / np.mean(ref**2))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(reverberate(wav, np.array([1.0], np.float32)), wav, atol=1e-6)


def test_augmented_plans_keep_the_test_split_and_augment_only_train_and_dev() -> None:
    base = plan(400, seed=0, task="digits")
    aug = plan(400, seed=0, task="digits", voices="every+festival", reverb=0.5, recorded_noise=0.5)
    assert [j for j in base if j["split"] == "test"] == [j for j in aug if j["split"] == "test"]
    for a, b in zip(base, aug):
        assert (a["text"], a["split"], a["rate"], a["snr"], a["seed"]) == (
            b["text"],
            b["split"],
            b["rate"],
            b["snr"],
            b["seed"],
        )
    train = [j for j in aug if j["split"] != "test"]
    voices = {(j["engine"], j["voice"]) for j in train}
    assert not voices & set(TEST_VOICES) and set(FESTIVAL_VOICES) <= voices
    assert {j["engine"] for j in train} == {"flite", "espeak-ng", "festival"}
    share = sum("rt60" in j for j in train) / len(train)
    assert 0.4 < share < 0.6 and all(0.2 <= j["rt60"] <= 0.9 for j in train if "rt60" in j)
    noisy = [j for j in train if j["snr"] is not None]
    assert 0.35 < sum(bool(j.get("recorded")) for j in noisy) / len(noisy) < 0.65
    assert not any(j.get("recorded") for j in train if j["snr"] is None)
    with pytest.raises(ValueError, match="reverb"):
        plan(10, seed=0, reverb=1.5)
    with pytest.raises(ValueError, match="voice set"):
        plan(10, seed=0, voices="all")


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival is not installed")
def test_festival_voices_speak(tmp_path: Path) -> None:
    for _, voice in FESTIVAL_VOICES:
        wav = speak("one two three", "festival", voice, rate=1.0, pitch=50, workdir=tmp_path)
        assert wav.dtype == np.float32 and 0.5 < len(wav) / 16000 < 4 and np.sqrt(np.mean(wav**2)) > 0.01
    slow = speak("one two three", "festival", "kal_diphone", rate=0.8, pitch=50, workdir=tmp_path)
    fast = speak("one two three", "festival", "kal_diphone", rate=1.2, pitch=50, workdir=tmp_path)
    assert len(slow) > 1.2 * len(fast)


@pytest.mark.skipif(
    not all(engines_available().values()), reason="needs espeak-ng, flite and festival (text2wave)"
)
def test_broader_corpus_is_written_with_the_same_test_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "noise.wav", rng.standard_normal(8000).astype(np.float32) * 0.1, 8000)
    kw = {"num_utterances": 16, "seed": 2, "workers": 2, "task": "digits"}
    base = synthesize_corpus(tmp_path / "c", **kw)
    broad = synthesize_corpus(tmp_path / "c", **kw, voices="every+festival", reverb=1.0, recorded_noise=1.0,
                              noise_file=tmp_path / "noise.wav")  # fmt: skip
    assert broad != base and "augment" in json.loads((broad / "settings.json").read_text())
    test_b, test_a = read_manifest(base / "test.jsonl"), read_manifest(broad / "test.jsonl")
    assert [u.text for u in test_a] == [u.text for u in test_b] and test_a
    for a, b in zip(test_a, test_b):  # the same audio, sample for sample
        np.testing.assert_array_equal(sf.read(a.audio_filepath)[0], sf.read(b.audio_filepath)[0])
    train_a, train_b = read_manifest(broad / "train.jsonl"), read_manifest(base / "train.jsonl")
    assert [u.text for u in train_a] == [u.text for u in train_b]
    assert any(not np.array_equal(sf.read(a.audio_filepath)[0], sf.read(b.audio_filepath)[0])
               for a, b in zip(train_a, train_b))  # fmt: skip
    assert synthesize_corpus(tmp_path / "c", **kw) == base  # cached under the same key
