"""``polyhead-speech``: the training subcommands and the speech tools, in one command.

    polyhead-speech fit|validate|test|predict [...]   # LightningCLI (polyhead.train.run_cli)
    polyhead-speech transcribe RUN a.wav b.mp3        # audio -> JSON lines with text and word timestamps
    polyhead-speech explain RUN --manifest m.jsonl    # cross-attention vs saliency report
    polyhead-speech manifest DIR out.jsonl            # a manifest from LibriSpeech / Common Voice / id<TAB>text
    polyhead-speech synthesize OUT                    # the embedded synthesised corpus

Heavy libraries are imported only by the subcommand that needs them: ``--help`` imports nothing but this
file, ``transcribe`` and ``explain`` import torch and the model but not Lightning or W&B. Bad input (a
manifest line, an audio file, a checkpoint) ends every subcommand with one line naming it and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyhead.speech.data.errors import SpeechDataError

TOOLS = {
    "transcribe": "audio files (or a manifest) -> JSON lines with text, word timestamps and real-time factor",
    "explain": "decoder cross-attention vs perturbation saliency for utterances of a manifest",
    "manifest": "build a JSON-lines manifest from LibriSpeech, Common Voice, alsa-utils or id<TAB>text",
    "synthesize": "synthesise the embedded corpus (espeak-ng, flite, festival voices) into a folder",
}
TRAINING = {
    "fit": "train (no config needed: the synthesised corpus)",
    "validate": "dev WER/CER of the best checkpoint of the latest run",
    "test": "WER/CER on a manifest with the run's tokenizer -> metrics.json (counts of scored and skipped)",
    "predict": "transcripts of a manifest or audio files -> predictions.jsonl in the run directory",
}


def usage() -> str:
    rows = [*TRAINING.items(), *TOOLS.items()]
    return "\n".join([
        "usage: polyhead-speech SUBCOMMAND [options]   (polyhead-speech SUBCOMMAND --help for its options)",
        "",
        "Attention speech-to-text (Conformer + Transformer decoder, joint CTC/attention) on polyhead.",
        "",
        "subcommands:",
        *(f"  {name:<11} {what}" for name, what in rows),
    ])  # fmt: skip


def synthesize(argv: list[str]) -> int:
    from polyhead.speech.data.noise import ALSA_NOISE
    from polyhead.speech.data.synth import TASKS, VOICE_SETS, synthesize_corpus

    p = argparse.ArgumentParser(prog="polyhead-speech synthesize", description=TOOLS["synthesize"])
    p.add_argument("out", type=Path)
    p.add_argument("--num-utterances", type=int, default=1200)
    p.add_argument("--task", choices=TASKS, default="sentences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--voices", choices=VOICE_SETS, default="task",
                   help="training voices: the task's own, every flite/espeak-ng English voice, or also festival's")  # fmt: skip
    p.add_argument("--reverb", type=float, default=0.0, help="share of train/dev utterances reverberated")
    p.add_argument("--recorded-noise", type=float, default=0.0,
                   help="share of noisy train/dev utterances with recorded noise (--noise-file)")  # fmt: skip
    p.add_argument("--noise-file", type=Path, default=ALSA_NOISE)
    a = p.parse_args(argv)
    try:
        root = synthesize_corpus(
            a.out, num_utterances=a.num_utterances, seed=a.seed, workers=a.workers, task=a.task,
            voices=a.voices, reverb=a.reverb, recorded_noise=a.recorded_noise, noise_file=a.noise_file,
        )  # fmt: skip
    except (RuntimeError, FileNotFoundError, ValueError) as err:
        print(f"polyhead-speech synthesize: {err}", file=sys.stderr)
        return 2
    print(root)
    return 0


def manifest(argv: list[str]) -> int:
    from polyhead.speech.data.alsa import build_alsa_manifest
    from polyhead.speech.data.common_voice import COMMON_VOICE_SPLITS, build_common_voice_manifest
    from polyhead.speech.data.manifest import build_manifest

    p = argparse.ArgumentParser(
        prog="polyhead-speech manifest",
        description=TOOLS["manifest"],
        epilog="LibriSpeech: FOLDER holds <spk>-<chapter>.trans.txt files next to the .flac files. Common "
        "Voice: FOLDER is the language folder with validated.tsv/train.tsv/dev.tsv/test.tsv and clips/.",
    )
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--transcripts", type=Path, default=None, help="id<TAB>text file (default: *.trans.txt)")
    p.add_argument("--common-voice", choices=COMMON_VOICE_SPLITS, default=None, metavar="SPLIT",
                   help=f"read a Common Voice release: which TSV ({', '.join(COMMON_VOICE_SPLITS)})")  # fmt: skip
    p.add_argument("--alsa", action="store_true",
                   help="FOLDER is alsa-utils' /usr/share/sounds/alsa: its 8 read phrases (one human speaker)")  # fmt: skip
    p.add_argument("--skip-bad", action="store_true", help="skip and count bad rows / missing clips")
    a = p.parse_args(argv)
    try:
        if a.alsa:
            utts, skipped = build_alsa_manifest(a.folder, a.out), ""
        elif a.common_voice:
            utts, report = build_common_voice_manifest(
                a.folder, a.out, split=a.common_voice, skip_bad=a.skip_bad
            )
            skipped = f"; skipped {report.total} ({report.summary()})" if report.total else ""
        else:
            utts, skipped = build_manifest(a.folder, a.out, transcripts=a.transcripts), ""
    except (FileNotFoundError, SpeechDataError) as err:
        print(f"polyhead-speech manifest: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(utts)} utterances to {a.out}{skipped}")
    return 0


def transcribe(argv: list[str]) -> int:
    from polyhead.speech.inference import transcribe_main

    return transcribe_main(argv)


def explain(argv: list[str]) -> int:
    from polyhead.speech.inference import explain_main

    return explain_main(argv)


def main(args: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    tools = {"synthesize": synthesize, "manifest": manifest, "transcribe": transcribe, "explain": explain}
    if argv[0] in tools:
        code = tools[argv[0]](argv[1:])
        if code:
            raise SystemExit(code)
        return
    if argv[0] not in TRAINING:
        print(f"polyhead-speech: error: unknown subcommand {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    from polyhead.speech.datamodule import SpeechDataModule
    from polyhead.speech.module import SpeechModule
    from polyhead.train import run_cli

    try:
        run_cli(
            "speech",
            SpeechModule,
            SpeechDataModule,
            monitor="val/wer",
            mode="min",
            trainer_defaults={"max_epochs": 40, "gradient_clip_val": 5.0},
            args=argv,
        )
    except SpeechDataError as err:
        # a DataLoader worker re-raises with the worker's traceback in the message: its last line is ours
        print(
            f"polyhead-speech {argv[0]}: error: {str(err).strip().splitlines()[-1]}",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2) from None
