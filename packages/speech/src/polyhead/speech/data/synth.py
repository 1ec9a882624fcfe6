"""The embedded default corpora: synthesised speech from espeak-ng and flite, with unseen test voices.

Two tasks: ``sentences`` (the default corpus: open-vocabulary sentences from
:class:`polyhead.speech.text.BigramText`, the 12 :data:`VOICES`: flite ``awb``, ``rms``, ``slt``, ``kal16``
and espeak-ng US, British and Scottish variants) and ``digits`` (connected digit strings from
:class:`polyhead.speech.text.DigitText`, the 38 :data:`DIGIT_VOICES`: the 4 flite voices and 7 espeak-ng
English dialects x 5 voice variants, engine drawn first; the quick task of ``polyhead demo``). Each
utterance is spoken by one voice at a random rate (espeak-ng 140-200 words/min, flite duration stretch
0.87-1.25) and pitch (espeak-ng 25-75), resampled to 16 kHz, with white or pink noise
at 10-40 dB SNR on half of the utterances. The ``test_voices`` never appear in train or dev, so test WER
measures generalisation to unseen speakers. Synthesis runs in a thread pool over engine subprocesses, and
the corpus is cached in a folder keyed by a hash of its settings.

``apt-get install espeak-ng flite`` (the project's ``ci/setup`` does it). A small committed sample made by
this module lives in ``shared/speech`` for the tests.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from polyhead.speech.data.manifest import Utterance, write_manifest
from polyhead.speech.text import BigramText, DigitText

VOICES: list[tuple[str, str]] = [
    ("flite", "awb"), ("flite", "rms"), ("flite", "slt"), ("flite", "kal16"),
    ("espeak-ng", "en-us+m1"), ("espeak-ng", "en-us+m3"), ("espeak-ng", "en-us+f2"), ("espeak-ng", "en-us+f4"),
    ("espeak-ng", "en-gb+m2"), ("espeak-ng", "en-gb+f3"), ("espeak-ng", "en-gb-scotland+m4"),
    ("espeak-ng", "en-us+klatt"),
]  # fmt: skip
TEST_VOICES: list[tuple[str, str]] = [
    ("flite", "rms"),
    ("espeak-ng", "en-gb-scotland+m4"),
    ("espeak-ng", "en-us+f4"),
]
ESPEAK_DIALECTS = [
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
]
DIGIT_VOICES: list[tuple[str, str]] = [
    *[("flite", v) for v in ("awb", "rms", "slt", "kal16")],
    *[("espeak-ng", f"{d}+{v}") for d in ESPEAK_DIALECTS for v in ("m1", "m3", "m4", "f2", "f4")],
]
SAMPLE_RATE = 16000
TASKS = ("sentences", "digits")


def engines_available() -> dict[str, bool]:
    return {e: shutil.which(e) is not None for e in ("espeak-ng", "flite")}


def speak(text: str, engine: str, voice: str, *, rate: float, pitch: int, workdir: Path) -> np.ndarray:
    """One utterance -> float32 mono at 16 kHz. ``rate`` is a tempo factor (1 = the engine's default)."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    out = workdir / f"{abs(hash((text, engine, voice, rate, pitch)))}.wav"
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(175 * rate)), "-p", str(pitch), "-w", str(out), text]
    elif engine == "flite":
        cmd = [
            "flite",
            "-voice",
            voice,
            "--setf",
            f"duration_stretch={1 / rate:.3f}",
            "-t",
            text,
            "-o",
            str(out),
        ]
    else:
        raise ValueError(f"unknown engine {engine!r}")
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    out.unlink()
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
    if sr != SAMPLE_RATE:
        wav = AF.resample(wav, sr, SAMPLE_RATE)
    return wav.numpy()


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator, *, pink: bool) -> np.ndarray:
    noise = rng.standard_normal(len(wav)).astype(np.float32)
    if pink:  # 1/f spectrum
        spec = np.fft.rfft(noise)
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1.0))
        noise = np.fft.irfft(spec, n=len(wav)).astype(np.float32)
    p_sig = float(np.mean(wav**2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-12
    return (wav + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))).astype(np.float32)


def task_voices(task: str) -> list[tuple[str, str]]:
    """The voices of a task's corpus (its test voices are :data:`TEST_VOICES`)."""
    if task not in TASKS:
        raise ValueError(f"unknown synthesis task {task!r}; expected one of {TASKS}")
    return VOICES if task == "sentences" else DIGIT_VOICES


def plan(
    num_utterances: int,
    seed: int,
    test_fraction: float = 0.2,
    dev_fraction: float = 0.1,
    *,
    task: str = "sentences",
) -> list[dict]:
    """The seeded list of utterances to synthesise: text, voice, rate, pitch, noise, split."""
    rng = np.random.default_rng(seed)
    text = BigramText() if task == "sentences" else DigitText()
    train_voices = [v for v in task_voices(task) if v not in TEST_VOICES]
    jobs = []
    for i in range(num_utterances):
        r = rng.random()
        split = "test" if r < test_fraction else "dev" if r < test_fraction + dev_fraction else "train"
        pool = TEST_VOICES if split == "test" else train_voices
        if task == "digits":  # engine first, then one of its voices: flite is not drowned by espeak-ng
            engines = sorted({e for e, _ in pool})
            engine = engines[int(rng.integers(len(engines)))]
            pool = [v for v in pool if v[0] == engine]
        engine, voice = pool[int(rng.integers(len(pool)))]
        jobs.append({
            "id": f"utt{i:06d}", "split": split, "text": text.sentence(rng), "engine": engine, "voice": voice,
            "rate": float(rng.uniform(0.8, 1.15)), "pitch": int(rng.integers(25, 76)),
            "snr": float(rng.uniform(10, 40)) if rng.random() < 0.5 else None, "pink": bool(rng.random() < 0.5),
            "seed": int(rng.integers(2**31)),
        })  # fmt: skip
    return jobs


def synthesize_corpus(
    out_dir: str | Path,
    *,
    num_utterances: int = 1000,
    seed: int = 0,
    workers: int = 4,
    task: str = "sentences",
) -> Path:
    """Synthesise (or reuse) a corpus; returns its folder with ``train/dev/test.jsonl`` and ``audio/``."""
    import soundfile as sf

    missing = [e for e, ok in engines_available().items() if not ok]
    if missing:
        raise RuntimeError(f"speech synthesis needs {missing}: apt-get install espeak-ng flite")
    settings = {
        "num_utterances": num_utterances,
        "seed": seed,
        "voices": task_voices(task),
        "test_voices": TEST_VOICES,
        "v": 1,
    }
    if task != "sentences":  # the sentence corpus keeps its original cache key
        settings["task"] = task
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(out_dir) / f"synth_{key}"
    if (root / "test.jsonl").is_file():
        return root
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    jobs = plan(num_utterances, seed, task=task)

    def run(job: dict) -> Utterance:
        path = audio / f"{job['id']}.flac"
        if not path.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                wav = speak(
                    job["text"],
                    job["engine"],
                    job["voice"],
                    rate=job["rate"],
                    pitch=job["pitch"],
                    workdir=Path(tmp),
                )
            if job["snr"] is not None:
                wav = add_noise(wav, job["snr"], np.random.default_rng(job["seed"]), pink=job["pink"])
            peak = float(np.abs(wav).max()) + 1e-9
            if peak > 0.99:
                wav = wav * (0.99 / peak)
            sf.write(str(path), wav, SAMPLE_RATE, format="FLAC")
        info = sf.info(str(path))
        return Utterance(
            str(path), job["text"], info.frames / info.samplerate, f"{job['engine']}:{job['voice']}"
        )

    with ThreadPoolExecutor(workers) as pool:
        utts = list(pool.map(run, jobs))
    for split in ("train", "dev", "test"):
        write_manifest([u for u, j in zip(utts, jobs) if j["split"] == split], root / f"{split}.jsonl")
    (root / "settings.json").write_text(json.dumps(settings, indent=1))
    return root
