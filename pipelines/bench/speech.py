"""Benchmark: speech training throughput and inference real-time factor on CPU.

    uv run python pipelines/bench/speech.py [--checkpoint RUN_DIR] [--manifest test.jsonl] [--steps 10] [--threads 2]

- Training throughput: seconds of audio per wall second for forward + joint CTC/attention loss + backward
  + Adam step on batches from the manifest (default: the committed sample ``shared/speech``), at the
  default model size and the quick-mode size; features are computed inside the timed loop, as in training.
- Inference real-time factor (processing seconds per audio second, lower is faster) of greedy CTC, CTC
  beam search (beam 8), attention beam search and joint rescoring, for a checkpoint (or a freshly built
  model when none is given: the decoders then run to their length limits, which is the worst case),
  relative to greedy CTC measured in the same run.

Prints a table and writes JSON.

Two experiments of issue 20 run from here too (each prints a Markdown table and writes JSON):

    uv run python pipelines/bench/speech.py --corpus-ablation [--epochs 8] [--threads 2]
    uv run python pipelines/bench/speech.py --human RUN_DIR [--human-folder /usr/share/sounds/alsa]

- ``--corpus-ablation``: the quick model (``polyhead.speech.pipeline.QUICK_MODEL``, digits task, same
  utterance count and epochs in every row, so the same number of steps) trained on successively broader
  synthesised corpora: the task's 39 voices; every flite and espeak-ng English voice; + festival's voices;
  + room reverberation (half the training utterances); + recorded noise (half the noisy ones). Every row is
  scored on the same unseen-voice test files (the first corpus's test split) with greedy CTC and joint
  CTC/attention decoding.
- ``--human RUN_DIR``: a trained run scored on real human speech: the 8 phrases of one speaker that Debian's
  alsa-utils installs (``polyhead.speech.data.alsa``), with greedy CTC and joint decoding, plus the
  transcripts themselves; the run needs a vocabulary that covers them (the sentence task, not digits).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def bench_training(manifest: Path, steps: int) -> list[dict]:
    from polyhead.speech.data.audio import load_audio
    from polyhead.speech.data.features import Fbank, spec_augment
    from polyhead.speech.data.manifest import read_manifest
    from polyhead.speech.data.tokenizer import CharTokenizer
    from polyhead.speech.models import ASRModel, joint_loss

    utts = read_manifest(manifest)[:16]
    tok = CharTokenizer.train(u.text for u in utts)
    wavs = [load_audio(u.audio_filepath) for u in utts]
    seconds = sum(w.numel() for w in wavs) / 16000
    targets = [tok.encode(u.text) for u in utts]
    fb = Fbank()
    rows = []
    for name, kw in {
        "default (d144, 4+2 layers)": {},
        "quick (d96, 3+1 layers)": {"d_model": 96, "encoder_layers": 3, "decoder_layers": 1},
    }.items():
        base = {"d_model": 144, "encoder_layers": 4, "decoder_layers": 2}
        model = ASRModel(len(tok), **{**base, **kw})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)  # as SpeechModule
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            feats = [fb(w) for w in wavs]
            lengths = torch.tensor([f.shape[0] for f in feats])
            x = spec_augment(torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths)
            loss, _ = joint_loss(model(x, lengths, targets), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times.append(time.perf_counter() - t0)
        rows.append({"model": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                     "batch_audio_s": seconds, "audio_s_per_s": seconds / statistics.median(times)})  # fmt: skip
    return rows


def bench_inference(checkpoint: str | None, manifest: Path, n: int) -> list[dict]:
    from polyhead.speech.data.audio import load_audio
    from polyhead.speech.data.features import Fbank
    from polyhead.speech.data.manifest import read_manifest
    from polyhead.speech.data.tokenizer import CharTokenizer
    from polyhead.speech.inference import load_model, transcribe
    from polyhead.speech.models import ASRModel
    from polyhead.speech.run_settings import SpeechSettings

    utts = read_manifest(manifest)[:n]
    if checkpoint:
        model, settings, hp, _ = load_model(checkpoint)
    else:
        settings = SpeechSettings(CharTokenizer.train(u.text for u in utts), Fbank().config())
        model = ASRModel(len(settings.tokenizer)).eval()
    wavs = [load_audio(u.audio_filepath, settings.sample_rate) for u in utts]
    seconds = sum(w.numel() for w in wavs) / settings.sample_rate
    rows = []
    for decoding in ("greedy", "ctc_beam", "attention", "joint"):
        # warm-up: the first call of a decoder pays one-off costs (lazy imports, the beam decoder's lexicon
        # setup, the allocator's first growth) that would otherwise be charged to whichever runs first
        transcribe(model, settings, wavs[0], decoding=decoding, beam_size=8)
        t0 = time.perf_counter()
        for w in wavs:
            transcribe(model, settings, w, decoding=decoding, beam_size=8)
        rows.append({"decoding": decoding, "rtf": (time.perf_counter() - t0) / seconds})
    for r in rows:
        r["x_greedy"] = r["rtf"] / rows[0]["rtf"]
    return rows


CORPUS_ROWS: list[tuple[str, dict[str, object]]] = [
    ("the digits task's 39 voices (flite 4, espeak-ng 7 dialects x 5)", {}),
    ("every flite + espeak-ng English voice (5 + 8 x 100)", {"voices": "every"}),
    ("+ festival (kal, ked diphone; slt HTS)", {"voices": "every+festival"}),
    ("+ room reverberation (50 %)", {"voices": "every+festival", "reverb": 0.5}),
    ("+ recorded noise (50 % of noisy)", {"voices": "every+festival", "reverb": 0.5, "recorded_noise": 0.5}),
]


def corpus_ablation(
    out: Path,
    epochs: int,
    rows: list[int] | None = None,
    decodings: tuple[str, ...] = ("greedy", "joint"),
    seed: int | None = None,
) -> list[dict]:
    """Train the quick model on each corpus of :data:`CORPUS_ROWS`; score all on the same test files."""
    from polyhead.speech.cli import main as cli_main
    from polyhead.speech.data.synth import synthesize_corpus
    from polyhead.speech.pipeline import QUICK_DATA, QUICK_MODEL
    from polyhead.train.experiment import fit_test

    cache = out / "cache"
    test_manifest = synthesize_corpus(cache, num_utterances=600, seed=0, task="digits") / "test.jsonl"
    results = []
    tag = "" if seed is None else f"_seed{seed}"  # another training seed: its own runs and JSON
    seed_args = [] if seed is None else ["--seed_everything", str(seed)]
    for i in range(len(CORPUS_ROWS)) if rows is None else rows:  # in the order given
        label, aug = CORPUS_ROWS[i]
        common = ["--data.cache_dir", str(cache), "--run.wandb", "disabled", *QUICK_DATA,
                  *(a for k, v in aug.items() for a in (f"--data.{k}", str(v)))]  # fmt: skip
        t0 = time.monotonic()
        first = fit_test(cli_main, domain="speech", root=out, experiment=f"corpus{i}{tag}", common_args=common,
                         fit_args=[*QUICK_MODEL, "--trainer.max_epochs", str(epochs), *seed_args],
                         test_args=[f"--data.test_manifest={test_manifest}", "--model.decoding", decodings[0]])  # fmt: skip
        row = {"row": i, "seed": seed, "corpus": label, "settings": aug, "run_dir": str(first.run_dir),
               decodings[0]: first.metrics, "fit_test_s": first.wall_s}  # fmt: skip
        for decoding in decodings[1:]:
            cli_main(["test", *common, "--run.root", str(out), "--run.experiment", f"corpus{i}{tag}",
                      "--run.version", first.run_dir.name, f"--data.test_manifest={test_manifest}",
                      "--model.decoding", decoding])  # fmt: skip
            row[decoding] = json.loads((first.run_dir / "metrics.json").read_text())["metrics"]
        row["wall_s"] = time.monotonic() - t0
        results.append(row)
        (out / f"corpus_ablation{tag}.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def score_human(run_dir: Path, folder: Path, out: Path) -> dict:
    """``test`` (greedy, joint) of a run on the alsa-utils phrases, and their transcripts."""
    from polyhead.speech.cli import main as cli_main
    from polyhead.speech.data.alsa import build_alsa_manifest
    from polyhead.speech.inference import transcribe_main

    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "alsa.jsonl"
    utts = build_alsa_manifest(folder, manifest)
    root, experiment = run_dir.parent.parent.parent, run_dir.parent.name
    res: dict = {"run_dir": str(run_dir), "manifest": str(manifest), "utterances": len(utts)}
    for decoding in ("greedy", "joint"):
        cli_main(["test", "--run.root", str(root), "--run.experiment", experiment, "--run.version",
                  run_dir.name, "--run.wandb", "disabled", f"--data.test_manifest={manifest}",
                  "--model.decoding", decoding])  # fmt: skip
        res[decoding] = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        hyp = out / f"alsa.{decoding}.jsonl"
        transcribe_main(
            [str(run_dir), *(u.audio_filepath for u in utts), "--decoding", decoding, "--out", str(hyp)]
        )
        res[f"{decoding}_transcripts"] = [
            {"ref": u.text, "hyp": json.loads(line)["text"]}
            for u, line in zip(utts, hyp.read_text().splitlines())
        ]
    (out / "human.json").write_text(json.dumps(res, indent=1) + "\n")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "shared" / "speech" / "test.jsonl")
    ap.add_argument("--train-manifest", type=Path, default=ROOT / "shared" / "speech" / "train.jsonl")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--utterances", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/speech.json"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--corpus-ablation", action="store_true", help="unseen-voice WER vs corpus breadth")
    ap.add_argument("--rows", default=None, help="comma-separated rows of the ablation to run (default: all)")
    ap.add_argument("--epochs", type=int, default=8, help="epochs of every ablation row")
    ap.add_argument("--decodings", default="greedy,joint", help="decodings the ablation tests with")
    ap.add_argument(
        "--seed", type=int, default=None, help="training seed of the ablation (default: the CLI's)"
    )
    ap.add_argument("--human", type=Path, default=None, metavar="RUN_DIR", help="score a run on alsa-utils")
    ap.add_argument("--human-folder", type=Path, default=Path("/usr/share/sounds/alsa"))
    ap.add_argument("--ablation-out", type=Path, default=Path("runs/bench/speech_corpus"))
    ns = ap.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    if ns.corpus_ablation:
        rows = [int(r) for r in ns.rows.split(",")] if ns.rows else None
        decodings = tuple(ns.decodings.split(","))
        res = corpus_ablation(ns.ablation_out, ns.epochs, rows, decodings, ns.seed)
        print(
            f"| training corpus | test utts | {' | '.join(f'{d} WER / CER' for d in decodings)} | fit + tests |"
        )
        print("|---|---|" + "---|" * len(decodings) + "---|")
        for r in res:
            scores = " | ".join(f"{r[d]['test/wer']:.3f} / {r[d]['test/cer']:.3f}" for d in decodings)
            n = int(r[decodings[0]].get("test/utterances_scored", 0))
            print(f"| {r['corpus']} | {n} | {scores} | {r['wall_s']:.0f} s |")
        return
    if ns.human is not None:
        res = score_human(ns.human, ns.human_folder, ns.ablation_out.parent / "speech_human")
        for d in ("greedy", "joint"):
            print(f"{d}: WER {res[d]['test/wer']:.3f} CER {res[d]['test/cer']:.3f}")
            for t in res[f"{d}_transcripts"]:
                print(f"  {t['ref']!r:>16} -> {t['hyp']!r}")
        return
    res = {"threads": torch.get_num_threads(), "training": bench_training(ns.train_manifest, ns.steps),
           "inference": bench_inference(ns.checkpoint, ns.manifest, ns.utterances), "checkpoint": ns.checkpoint}  # fmt: skip
    print(f"\ntraining (batch of 16 utterances, {res['training'][0]['batch_audio_s']:.0f} s of audio)")
    print(f"{'model':>28} {'params M':>9} {'audio s / s':>12}")
    for r in res["training"]:
        print(f"{r['model']:>28} {r['params_m']:>9.2f} {r['audio_s_per_s']:>12.1f}")
    print(
        f"\ninference real-time factor ({ns.utterances} utterances, {'checkpoint' if ns.checkpoint else 'untrained model'})"
    )
    print(f"{'decoding':>10} {'RTF':>8} {'x greedy':>9}")
    for r in res["inference"]:
        print(f"{r['decoding']:>10} {r['rtf']:>8.3f} {r['x_greedy']:>9.1f}")
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {ns.out}")


if __name__ == "__main__":
    main()
