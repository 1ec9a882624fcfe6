"""Benchmark: training throughput and inference latency of each detector alone and behind the enhancers.

    uv run python pipelines/bench/lowlight.py [--image-size 128] [--batch 8] [--steps 4] [--detectors fcos ...]

For FCOS, RetinaNet and Faster R-CNN (tiny from-scratch backbone, FPN 64) on rendered dark scenes:

- training: images per second of forward + detection loss + backward + AdamW step (median of ``--steps``
  steps after two warm-up steps);
- inference: milliseconds per image of the eval forward (detections included, no grad; median of
  ``--steps`` batches after one warm-up);

each for the detector alone, behind the Zero-DCE-style enhancer and behind FeatEnHancer (``--enhancer-
channels``), with the enhancer's overhead as a ratio against the detector alone measured in the same run.
Wall time and process CPU time are both reported (on a machine shared with other jobs the CPU time is the
steadier measure of the work). Runs on CPU, and on CUDA too when a GPU is present. Prints a table and
writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def _batch(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    from polyhead.lowlight.data import LowLightSynthesizer, render_scene

    rng = np.random.default_rng(0)
    synth = LowLightSynthesizer(seed=0)
    images, targets = [], []
    for i in range(n):
        img, boxes, labels = render_scene(rng, size)
        dark, _ = synth(img, i)
        images.append(torch.from_numpy(dark).permute(2, 0, 1).float() / 255)
        targets.append(
            {"boxes": torch.from_numpy(boxes).to(device), "labels": torch.from_numpy(labels).to(device)}
        )
    return torch.stack(images).to(device), targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(
    detector: str, enhancer: str, *, size: int, batch: int, steps: int, channels: int, device: torch.device
) -> dict:
    from polyhead.lowlight.models import LowLightDetector, build_enhancer

    torch.manual_seed(0)
    x, targets = _batch(batch, size, device)
    model = LowLightDetector(enhancer=build_enhancer(enhancer, channels=channels), detector=detector, num_classes=6,
                             image_size=size).to(device)  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    times, cpu = [], []
    for i in range(steps + 2):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = sum(model(x, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    model.eval()
    inf, inf_cpu = [], []
    with torch.no_grad():
        for i in range(steps + 1):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            model(x)
            _sync(device)
            if i >= 1:
                inf.append(time.perf_counter() - t0)
                inf_cpu.append(time.process_time() - c0)
    return {
        "device": device.type, "detector": detector, "enhancer": enhancer,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_images_per_s": batch / statistics.median(times),
        "infer_ms_per_image": 1e3 * statistics.median(inf) / batch,
        # Process CPU time: on a machine shared with other jobs it tracks the work done better than wall time.
        "train_images_per_cpu_s": batch / statistics.median(cpu),
        "infer_cpu_ms_per_image": 1e3 * statistics.median(inf_cpu) / batch,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detectors", nargs="+", default=["fcos", "retinanet", "faster_rcnn"])
    ap.add_argument("--enhancers", nargs="+", default=["none", "zero_dce", "featenhancer"])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--enhancer-channels", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", default="runs/bench/lowlight.json")
    ns = ap.parse_args()
    if ns.threads:
        torch.set_num_threads(ns.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for det in ns.detectors:
            base = None
            for enh in ns.enhancers:
                r = bench(det, enh, size=ns.image_size, batch=ns.batch, steps=ns.steps, channels=ns.enhancer_channels,
                          device=device)  # fmt: skip
                if enh == "none":
                    base = r
                if base is not None:
                    r["train_overhead"] = base["train_images_per_s"] / r["train_images_per_s"]
                    r["infer_overhead"] = r["infer_ms_per_image"] / base["infer_ms_per_image"]
                    r["train_overhead_cpu"] = base["train_images_per_cpu_s"] / r["train_images_per_cpu_s"]
                    r["infer_overhead_cpu"] = r["infer_cpu_ms_per_image"] / base["infer_cpu_ms_per_image"]
                rows.append(r)
                print(
                    f"{r['device']:4s} {det:11s} {enh:12s} params {r['params_m']:.2f}M"
                    f"  train {r['train_images_per_s']:7.1f} img/s ({r['train_images_per_cpu_s']:7.1f} img/cpu-s)"
                    f"  infer {r['infer_ms_per_image']:7.2f} ms/img ({r['infer_cpu_ms_per_image']:6.2f} cpu-ms)"
                    f"  overhead train x{r.get('train_overhead', float('nan')):.2f}"
                    f" (cpu x{r.get('train_overhead_cpu', float('nan')):.2f})"
                    f" infer x{r.get('infer_overhead', float('nan')):.2f}"
                    f" (cpu x{r.get('infer_overhead_cpu', float('nan')):.2f})",
                    flush=True,
                )
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"args": vars(ns), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_avg": os.getloadavg(), "torch": torch.__version__}  # fmt: skip
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
