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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "shared" / "speech" / "test.jsonl")
    ap.add_argument("--train-manifest", type=Path, default=ROOT / "shared" / "speech" / "train.jsonl")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--utterances", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/speech.json"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ns = ap.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
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
