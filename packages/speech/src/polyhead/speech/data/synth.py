"""The embedded default corpora: synthesised speech (espeak-ng, flite, festival) with unseen test voices.

Two tasks: ``sentences`` (the default corpus: open-vocabulary sentences from
:class:`polyhead.speech.text.BigramText`, the 12 :data:`VOICES`: flite ``awb``, ``rms``, ``slt``, ``kal16``
and espeak-ng US, British and Scottish variants) and ``digits`` (connected digit strings from
:class:`polyhead.speech.text.DigitText`, the 39 :data:`DIGIT_VOICES`: the 4 flite voices and 7 espeak-ng
English dialects x 5 voice variants, engine drawn first; the quick task of ``polyhead demo``). Each
utterance is spoken by one voice at a random rate (espeak-ng 140-200 words/min, flite duration stretch
0.87-1.25) and pitch (espeak-ng 25-75), resampled to 16 kHz, with white or pink noise
at 10-40 dB SNR on half of the utterances. The ``test_voices`` never appear in train or dev, so test WER
measures generalisation to unseen speakers. Synthesis runs in a thread pool over engine subprocesses, and
the corpus is cached in a folder keyed by a hash of its settings.

The broader corpus (issue 20, item 8) is opt-in, so the default corpora and their cached copies stay as they
were: ``voices="every"`` draws from every English voice of flite and espeak-ng (:data:`EVERY_VOICES`: 5
flite voices; 8 espeak-ng English dialects x its 100 voice variants), ``voices="every+festival"`` adds the
three English voices of Debian's festival packages (:data:`FESTIVAL_VOICES`: diphone kal and ked, HTS slt);
``reverb`` is the share of training and dev utterances convolved with a seeded synthetic room impulse
response (:mod:`polyhead.speech.data.reverb`, RT60 0.2-0.9 s), ``recorded_noise`` the share of the noisy
ones whose noise is a segment of a noise recording (:mod:`polyhead.speech.data.noise`; by default the one in
``alsa-utils``) instead of white/pink noise. Augmentations draw from a generator of their own
(per-utterance seed), never from the plan's, and never touch the test split: the test utterances of every
setting are the same files, so unseen-voice WERs of the settings compare directly.

``apt-get install espeak-ng flite`` (the project's ``ci/setup`` does it; ``festival festvox-kallpc16k
festvox-kdlpc16k festvox-us-slt-hts alsa-utils`` for the broader corpus). A small committed sample made by
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
from polyhead.speech.data.noise import ALSA_NOISE, RecordedNoise, coloured_noise, mix_at_snr
from polyhead.speech.data.reverb import reverberate, synthetic_rir
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
# espeak-ng 1.51's voice variants (espeak-ng-data/voices/!v): every one is an English voice with a dialect
_ESPEAK_VARIANT_NAMES = (
    "Alex Alicia Andrea Andy Annie AnxiousAndy Demonic Denis Diogo Gene Gene2 Henrique Hugo Jacky Lee Marco "
    "Mario Michael Mike Nguyen RicishayMax RicishayMax2 RicishayMax3 Storm Tweaky UniRobot adam anika "
    "anikaRobot announcer antonio aunty belinda benjamin boris caleb croak david ed edward edward2 f1 f2 f3 "
    "f4 f5 fast grandma grandpa gustave iven iven2 iven3 iven4 john kaukovalta klatt klatt2 klatt3 klatt4 "
    "klatt5 klatt6 linda m1 m2 m3 m4 m5 m6 m7 m8 marcelo max michel miguel norbert pablo paul pedro quincy rob "
    "robert robosoft robosoft2 robosoft3 robosoft4 robosoft5 robosoft6 robosoft7 robosoft8 sandro shelby "
    "steph steph2 steph3 travis victor whisper whisperf zac"
)
ESPEAK_VARIANTS = _ESPEAK_VARIANT_NAMES.split()
ESPEAK_ENGLISH = [*ESPEAK_DIALECTS, "en-us-nyc"]
FLITE_VOICES = ("awb", "rms", "slt", "kal", "kal16")  # flite -lv, less awb_time (a talking clock)
EVERY_VOICES: list[tuple[str, str]] = [
    *[("flite", v) for v in FLITE_VOICES],
    *[("espeak-ng", f"{d}+{v}") for d in ESPEAK_ENGLISH for v in ESPEAK_VARIANTS],
]
# Debian's English festival voices: festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts
FESTIVAL_VOICES: list[tuple[str, str]] = [
    ("festival", "kal_diphone"),
    ("festival", "ked_diphone"),
    ("festival", "cmu_us_slt_arctic_hts"),
]
VOICE_SETS = ("task", "every", "every+festival")
SAMPLE_RATE = 16000
TASKS = ("sentences", "digits")


def engines_available() -> dict[str, bool]:
    return {e: shutil.which(e) is not None for e in ("espeak-ng", "flite", "text2wave")}


def speak(text: str, engine: str, voice: str, *, rate: float, pitch: int, workdir: Path) -> np.ndarray:
    """One utterance -> float32 mono at 16 kHz. ``rate`` is a tempo factor (1 = the engine's default)."""
    import soundfile as sf
    import torch
    import torchaudio.functional as AF

    out = workdir / f"{abs(hash((text, engine, voice, rate, pitch)))}.wav"
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(175 * rate)), "-p", str(pitch), "-w", str(out), text]
    elif engine == "festival":  # text2wave is festival's file-output front end; rate via Duration_Stretch
        cmd = ["text2wave", "-eval", f"(voice_{voice})", "-eval",
               f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})", "-o", str(out)]  # fmt: skip
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
    stdin = text if engine == "festival" else None
    subprocess.run(cmd, check=True, capture_output=True, timeout=60, input=stdin, text=True)
    data, sr = sf.read(str(out), dtype="float32", always_2d=True)
    out.unlink()
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(1)))
    if sr != SAMPLE_RATE:
        wav = AF.resample(wav, sr, SAMPLE_RATE)
    return wav.numpy()


def add_noise(wav: np.ndarray, snr_db: float, rng: np.random.Generator, *, pink: bool) -> np.ndarray:
    return mix_at_snr(wav, coloured_noise(len(wav), rng, pink=pink), snr_db)


def task_voices(task: str, voices: str = "task") -> list[tuple[str, str]]:
    """The voices of a task's corpus (its test voices are :data:`TEST_VOICES`).

    ``voices``: ``task`` (the task's own list), ``every`` (:data:`EVERY_VOICES`) or ``every+festival``.
    """
    if task not in TASKS:
        raise ValueError(f"unknown synthesis task {task!r}; expected one of {TASKS}")
    if voices not in VOICE_SETS:
        raise ValueError(f"unknown voice set {voices!r}; expected one of {VOICE_SETS}")
    if voices == "every":
        return EVERY_VOICES
    if voices == "every+festival":
        return EVERY_VOICES + FESTIVAL_VOICES
    return VOICES if task == "sentences" else DIGIT_VOICES


def plan(
    num_utterances: int,
    seed: int,
    test_fraction: float = 0.2,
    dev_fraction: float = 0.1,
    *,
    task: str = "sentences",
    voices: str = "task",
    reverb: float = 0.0,
    recorded_noise: float = 0.0,
) -> list[dict]:
    """The seeded list of utterances to synthesise: text, voice, rate, pitch, noise, split, augmentation.

    ``reverb`` / ``recorded_noise``: shares of the train and dev utterances that are reverberated / whose
    noise (if any) is recorded. Their draws come from a generator seeded per utterance, so the plan's own
    draws (texts, splits, voices, rates, noise levels) do not depend on them.
    """
    for name, share in (("reverb", reverb), ("recorded_noise", recorded_noise)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} is a share of utterances in [0, 1], got {share}")
    rng = np.random.default_rng(seed)
    text = BigramText() if task == "sentences" else DigitText()
    train_voices = [v for v in task_voices(task) if v not in TEST_VOICES]
    broader = [v for v in task_voices(task, voices) if v not in TEST_VOICES]
    broader_engines = sorted({e for e, _ in broader})
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
        if split != "test" and voices != "task":
            # a broader voice set: engine first, then voice, from a generator of its own, so that the
            # plan's draws above (and so the test split) are those of the task's own voice set
            pick = np.random.default_rng([seed, i, 8])
            engine = broader_engines[int(pick.integers(len(broader_engines)))]
            same = [v for v in broader if v[0] == engine]
            engine, voice = same[int(pick.integers(len(same)))]
        jobs.append({
            "id": f"utt{i:06d}", "split": split, "text": text.sentence(rng), "engine": engine, "voice": voice,
            "rate": float(rng.uniform(0.8, 1.15)), "pitch": int(rng.integers(25, 76)),
            "snr": float(rng.uniform(10, 40)) if rng.random() < 0.5 else None, "pink": bool(rng.random() < 0.5),
            "seed": int(rng.integers(2**31)),
        })  # fmt: skip
        if split != "test" and (reverb or recorded_noise):
            aug = np.random.default_rng([seed, i, 20])
            if aug.random() < reverb:
                jobs[-1]["rt60"] = float(aug.uniform(0.2, 0.9))
                jobs[-1]["drr_db"] = float(aug.uniform(-6.0, 6.0))
            if jobs[-1]["snr"] is not None and aug.random() < recorded_noise:
                jobs[-1]["recorded"] = True
    return jobs


def synthesize_corpus(
    out_dir: str | Path,
    *,
    num_utterances: int = 1000,
    seed: int = 0,
    workers: int = 4,
    task: str = "sentences",
    voices: str = "task",
    reverb: float = 0.0,
    recorded_noise: float = 0.0,
    noise_file: str | Path = ALSA_NOISE,
) -> Path:
    """Synthesise (or reuse) a corpus; returns its folder with ``train/dev/test.jsonl`` and ``audio/``.

    ``voices``, ``reverb``, ``recorded_noise``: see :func:`plan`; ``noise_file``: the noise recording.
    """
    import soundfile as sf

    voice_list = task_voices(task, voices)
    needed = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
    engines = engines_available()
    missing = sorted({needed[e] for e, _ in voice_list if not engines[needed[e]]})
    if missing:
        raise RuntimeError(
            f"speech synthesis needs {missing}: apt-get install espeak-ng flite"
            + (
                " festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
                if "text2wave" in missing
                else ""
            )
        )
    settings = {
        "num_utterances": num_utterances,
        "seed": seed,
        "voices": voice_list,
        "test_voices": TEST_VOICES,
        "v": 1,
    }
    if task != "sentences":  # the sentence corpus keeps its original cache key
        settings["task"] = task
    if reverb or recorded_noise:  # so do corpora without augmentation
        augment: dict[str, object] = {"reverb": reverb, "recorded_noise": recorded_noise}
        if recorded_noise:
            augment["noise_file"] = str(noise_file)
        settings["augment"] = augment
    recording = RecordedNoise(path=noise_file, sample_rate=SAMPLE_RATE) if recorded_noise else None
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(out_dir) / f"synth_{key}"
    if (root / "test.jsonl").is_file():
        return root
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    jobs = plan(num_utterances, seed, task=task, voices=voices, reverb=reverb, recorded_noise=recorded_noise)

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
            rng = np.random.default_rng(job["seed"])
            if "rt60" in job:  # the room first, then noise at the microphone
                rir = synthetic_rir(rng, sample_rate=SAMPLE_RATE, rt60=job["rt60"], drr_db=job["drr_db"])
                wav = reverberate(wav, rir)
            if job["snr"] is not None and job.get("recorded") and recording is not None:
                wav = mix_at_snr(wav, recording.segment(len(wav), rng), job["snr"])
            elif job["snr"] is not None:
                wav = add_noise(wav, job["snr"], rng, pink=job["pink"])
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
