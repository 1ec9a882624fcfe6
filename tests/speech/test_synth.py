"""The synthesised corpus: the seeded plan holds out whole voices, and (with espeak-ng and flite installed)
the builder writes readable 16 kHz audio with matching manifests and reuses its cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyhead.speech.data.manifest import read_manifest
from polyhead.speech.data.normalize import TextNormalizer
from polyhead.speech.data.synth import (
    DIGIT_VOICES,
    TEST_VOICES,
    VOICES,
    engines_available,
    plan,
    synthesize_corpus,
)
from polyhead.speech.text import DIGITS, BigramText, DigitText

normalize = TextNormalizer()


def test_plan_holds_out_whole_voices_and_is_seeded() -> None:
    jobs = plan(600, seed=3)
    assert plan(600, seed=3) == jobs and plan(600, seed=4) != jobs
    voices = {
        s: {(j["engine"], j["voice"]) for j in jobs if j["split"] == s} for s in ("train", "dev", "test")
    }
    assert voices["test"] == set(TEST_VOICES)
    assert not (voices["train"] | voices["dev"]) & set(TEST_VOICES)
    assert voices["train"] == set(VOICES) - set(TEST_VOICES)
    share = {s: sum(j["split"] == s for j in jobs) / len(jobs) for s in voices}
    assert 0.15 < share["test"] < 0.25 and 0.05 < share["dev"] < 0.15
    assert all(0.8 <= j["rate"] <= 1.15 and 25 <= j["pitch"] <= 75 for j in jobs)


def test_digit_plan_balances_engines_and_holds_out_voices() -> None:
    jobs = plan(900, seed=0, task="digits")
    train = [j for j in jobs if j["split"] == "train"]
    voices = {(j["engine"], j["voice"]) for j in train}
    assert not voices & set(TEST_VOICES) and len(voices) > 30 and voices <= set(DIGIT_VOICES)
    flite = sum(j["engine"] == "flite" for j in train) / len(train)
    assert 0.4 < flite < 0.6  # engine first, then voice: flite's 3 training voices are not drowned
    texts = [j["text"] for j in jobs]
    assert all(
        set(t.split()) <= set(DIGITS) and 3 <= len(t.split()) <= 7 and normalize(t) == t for t in texts
    )
    rng = np.random.default_rng(0)
    assert DigitText(min_digits=2, max_digits=2).sentence(rng).count(" ") == 1
    with pytest.raises(ValueError, match="min_digits"):
        DigitText(min_digits=0)


def test_sentences_are_normalised_and_varied() -> None:
    text, rng = BigramText(), np.random.default_rng(0)
    sentences = [text.sentence(rng) for _ in range(300)]
    assert all(s == normalize(s) and 4 <= len(s.split()) <= 14 for s in sentences)
    words = {w for s in sentences for w in s.split()}
    assert len(words) > 500 and words <= set(text.vocab)
    assert len(text.vocab) > 1500


@pytest.mark.slow
@pytest.mark.skipif(
    not (engines_available()["espeak-ng"] and engines_available()["flite"]),
    reason="needs espeak-ng and flite",
)
def test_synthesized_corpus_is_readable_and_cached(tmp_path: Path) -> None:
    root = synthesize_corpus(tmp_path, num_utterances=12, seed=1, workers=2)
    utts = {s: read_manifest(root / f"{s}.jsonl") for s in ("train", "dev", "test")}
    assert sum(len(u) for u in utts.values()) == 12
    for u in (u for split in utts.values() for u in split):
        data, sr = sf.read(u.audio_filepath, dtype="float32", always_2d=True)
        assert sr == 16000 and data.shape[1] == 1 and abs(data.shape[0] / sr - u.duration) < 1e-6
        assert 0.5 < u.duration < 20 and np.abs(data).max() <= 1.0 and data.std() > 1e-3
        assert u.text == normalize(u.text) and u.speaker.split(":")[0] in {"espeak-ng", "flite"}
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert synthesize_corpus(tmp_path, num_utterances=12, seed=1, workers=2) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == mtimes  # reused, nothing rewritten
    assert synthesize_corpus(tmp_path, num_utterances=12, seed=2, workers=2) != root
