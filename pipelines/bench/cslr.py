"""Benchmark: CSLR keypoint extraction, training throughput and decoding time on CPU.

    uv run python pipelines/bench/cslr.py [--video a.avi --video b.mp4] [--width reference|quick]

- Extraction: ``polyhead-cslr extract`` (MediaPipe Holistic, model_complexity 1) over the given videos, or
  over a 120-frame clip made from the committed photo ``shared/cslr/messi5.jpg`` (a slow pan) when none is
  given; frames per second of wall time with 1 and 2 worker processes (start-up included), the 1-worker run
  being the baseline of the ratio.
- Training: sequences per second of forward + CTC loss + backward + AdamW step on generated signing
  (batch 16, the generator's sentence lengths), for the starter-kit baseline, the Signer-Invariant Conformer
  and the Multi-Scale Fusion Transformer, at the reference widths (``--width reference``) or the quick
  pipeline's (``--width quick``); ratios against the baseline model.
- Decoding: per-sequence time of the encoder forward (eval, no grad), greedy CTC and prefix beam search
  (beam 8) on the same batch.

Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def _clip(path: Path, frames: int) -> None:
    import cv2

    img = cv2.imread(str(ROOT / "shared" / "cslr" / "messi5.jpg"))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, img.shape[1::-1])
    for t in range(frames):
        out.write(np.roll(img, t, axis=1))
    out.release()


def bench_extract(videos: list[Path]) -> list[dict]:
    from polyhead.cslr.extract import run_extract

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if not videos:
            videos = [Path(tmp) / f"messi_pan_{i}.avi" for i in range(4)]
            for v in videos:
                _clip(v, 60)
        for workers in (1, 2):
            out = Path(tmp) / f"out{workers}"
            t0 = time.perf_counter()
            s = run_extract(videos, out, workers=workers, progress=False)
            wall = time.perf_counter() - t0
            rows.append({"workers": workers, "files": len(videos), "frames": s["frames"], "wall_s": wall,
                         "fps": s["frames"] / wall, "problems": len(s["problems"])})  # fmt: skip
    for r in rows:
        r["ratio"] = r["fps"] / rows[0]["fps"]
    return rows


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    from polyhead.cslr.data.synthetic import generate_corpus
    from polyhead.cslr.data.transforms import preprocess
    from polyhead.cslr.data.vocab import GlossVocabulary

    samples = generate_corpus(num_glosses=20, num_sentences=24, samples_per_sentence=2, seed=seed)[
        "signer_independent"
    ]["train"][:n]
    vocab = GlossVocabulary.build(s.glosses for s in samples)
    xs = []
    for s in samples:  # coordinates and the observed mask per point, as CSLRModule(observed="channel") feeds
        xy, observed = preprocess(s.keypoints, max_frames=256)
        xs.append(torch.from_numpy(np.concatenate([xy, observed[..., None]], -1).reshape(len(xy), -1)))
    lengths = torch.tensor([len(x) for x in xs])
    x = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True).float()
    return x, lengths, [vocab.encode(s.glosses) for s in samples]


def bench_models(width: str, steps: int, batch: int) -> list[dict]:
    from polyhead.cslr.decoding import beam_decode, greedy_decode
    from polyhead.cslr.losses import ctc_loss
    from polyhead.cslr.models import MultiScaleFusionTransformer, SignerInvariantConformer, TransformerCTC

    x, lengths, targets = _batch(batch, 0)
    vocab = 2 + max(max(t) for t in targets)
    small = {"d_model": 128, "layers": 2, "heads": 4}
    models = {
        "baseline": lambda: TransformerCTC(x.shape[-1], vocab, **(small if width == "quick" else {})),
        "conformer": lambda: SignerInvariantConformer(
            x.shape[-1], vocab, **(small if width == "quick" else {})
        ),
        "msft": lambda: MultiScaleFusionTransformer(
            x.shape[-1], vocab, **(small if width == "quick" else {})
        ),
    }
    rows = []
    for name, make in models.items():
        torch.manual_seed(0)
        model = make()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        times = []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            lp, out_len = model(x, lengths)
            loss, _ = ctc_loss(lp, out_len, targets, skip_short=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - t0)
        model.eval()
        with torch.no_grad():
            fwd = []
            for _ in range(5):
                t0 = time.perf_counter()
                lp, out_len = model(x, lengths)
                fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        greedy_decode(lp, out_len)
        greedy = time.perf_counter() - t0
        t0 = time.perf_counter()
        beam_decode(lp, out_len, 8)
        beam = time.perf_counter() - t0
        rows.append({
            "model": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "train_seq_per_s": batch / statistics.median(times),
            "forward_ms_per_seq": 1e3 * statistics.median(fwd) / batch,
            "greedy_ms_per_seq": 1e3 * greedy / batch, "beam8_ms_per_seq": 1e3 * beam / batch,
            "frames_per_seq": float(lengths.float().mean()), "output_steps": int(out_len.max()),
        })  # fmt: skip
    for r in rows:
        r["train_ratio_vs_baseline"] = r["train_seq_per_s"] / rows[0]["train_seq_per_s"]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", action="append", type=Path, default=[])
    ap.add_argument("--width", choices=("reference", "quick"), default="reference")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--skip-extract", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/cslr.json"))
    ns = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result: dict = {"torch_threads": torch.get_num_threads(), "width": ns.width}
    if not ns.skip_extract:
        result["extract"] = bench_extract(ns.video)
        print("\nextraction (MediaPipe Holistic, complexity 1)")
        print(f"{'workers':>8} {'files':>6} {'frames':>7} {'wall s':>8} {'frames/s':>9} {'ratio':>6}")
        for r in result["extract"]:
            print(
                f"{r['workers']:>8} {r['files']:>6} {r['frames']:>7} {r['wall_s']:>8.1f} {r['fps']:>9.1f} {r['ratio']:>6.2f}"
            )
    result["models"] = bench_models(ns.width, ns.steps, ns.batch)
    print(
        f"\nmodels ({ns.width} width, batch {ns.batch}, {result['models'][0]['frames_per_seq']:.0f} frames/seq)"
    )
    print(
        f"{'model':>10} {'params M':>9} {'train seq/s':>12} {'x baseline':>11} {'fwd ms/seq':>11} {'greedy ms':>10} {'beam8 ms':>9}"
    )
    for r in result["models"]:
        print(
            f"{r['model']:>10} {r['params_m']:>9.2f} {r['train_seq_per_s']:>12.1f} {r['train_ratio_vs_baseline']:>11.2f} "
            f"{r['forward_ms_per_seq']:>11.2f} {r['greedy_ms_per_seq']:>10.3f} {r['beam8_ms_per_seq']:>9.2f}"
        )
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {ns.out}")


if __name__ == "__main__":
    main()
