"""``polyhead-speech``: fit | validate | test | predict, plus ``synthesize`` (the default corpus),
``manifest`` (a manifest from a LibriSpeech-style folder or an ``id<TAB>text`` file), ``transcribe``
(audio files -> JSON lines with text and word timestamps) and ``explain`` (cross-attention vs saliency)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyhead.speech.inference import explain_main, transcribe_main
from polyhead.speech.module import SpeechDataModule, SpeechModule
from polyhead.train import run_cli


def synthesize(argv: list[str]) -> int:
    from polyhead.speech.data.synth import synthesize_corpus

    p = argparse.ArgumentParser(
        prog="polyhead-speech synthesize", description="Synthesise the default corpus."
    )
    p.add_argument("out", type=Path)
    p.add_argument("--num-utterances", type=int, default=1200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args(argv)
    try:
        root = synthesize_corpus(a.out, num_utterances=a.num_utterances, seed=a.seed, workers=a.workers)
    except RuntimeError as err:
        print(f"polyhead-speech synthesize: {err}", file=sys.stderr)
        return 2
    print(root)
    return 0


def manifest(argv: list[str]) -> int:
    from polyhead.speech.data.manifest import ManifestError, build_manifest

    p = argparse.ArgumentParser(prog="polyhead-speech manifest", description="Build a JSON-lines manifest.")
    p.add_argument("folder", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--transcripts", type=Path, default=None, help="id<TAB>text file (default: *.trans.txt)")
    a = p.parse_args(argv)
    try:
        utts = build_manifest(a.folder, a.out, transcripts=a.transcripts)
    except (FileNotFoundError, ManifestError) as err:
        print(f"polyhead-speech manifest: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(utts)} utterances to {a.out}")
    return 0


def main(args: list[str] | None = None) -> None:
    run_cli(
        "speech",
        SpeechModule,
        SpeechDataModule,
        monitor="val/wer",
        mode="min",
        trainer_defaults={"max_epochs": 40, "gradient_clip_val": 5.0},
        extra_commands={
            "synthesize": synthesize,
            "manifest": manifest,
            "transcribe": transcribe_main,
            "explain": explain_main,
        },
        args=args,
    )
