"""Benchmark of polyhead-face: training throughput per stage, restoration time, cross-attention memory.

    uv run python pipelines/bench/face.py                       # 64 px, the quick widths, CPU (+ GPU if present)
    uv run python pipelines/bench/face.py --resolution 128 --channels 32 --out runs/bench/face.json

Measures, on each available device:
- training images/s of stage 1 (dictionary), stage 2 (RestoreFormer++) and the U-Net baseline: full
  optimizer steps (forward, L1 + SSIM (+ codebook / latent) loss, backward, Adam) on rendered faces;
  the ratio of each to the U-Net in the same run;
- restoration time per face (batch 1 and batch 8, no grad);
- per full photo (CPU): ``polyhead-face restore``'s steps on ``shared/face/astronaut.jpg`` (detection,
  mesh, alignment, restoration, paste-back), median of the repeats;
- memory of the cross-attention at each fusion site: the site's score-matrix size (heads x L x S x 4
  bytes per face) and the peak memory of one forward + backward of the site (CUDA: ``max_memory_allocated``;
  CPU: the largest single allocation seen by the profiler).
Timings on a shared machine are indicative; the JSON records the load average at the start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from polyhead.face.data.render import render
from polyhead.face.losses import ssim_loss
from polyhead.face.models import RestoreFormerPP, UNetRestorer

REPO = Path(__file__).resolve().parents[2]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_throughput(
    kind: str, model: torch.nn.Module, hq: torch.Tensor, lq: torch.Tensor, steps: int
) -> float:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    device = hq.device

    def step() -> None:
        if kind == "stage1":
            rec, q, _ = model.reconstruct(hq * 2 - 1)
            out, extra = (rec + 1) / 2, q.loss
        elif kind == "stage2":
            res = model.restore(lq * 2 - 1)
            out, extra = (res.image + 1) / 2, F.mse_loss(res.latent, model.hq_codes(hq * 2 - 1))
        else:
            out, extra = (model(lq * 2 - 1) + 1) / 2, 0.0
        loss = F.l1_loss(out, hq) + 0.5 * ssim_loss(out.clamp(0, 1), hq) + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernels)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * hq.shape[0] / (time.perf_counter() - t0)


@torch.no_grad()
def restore_time(model: torch.nn.Module, lq: torch.Tensor, repeats: int) -> float:
    model(lq * 2 - 1)
    _sync(lq.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(lq * 2 - 1)
    _sync(lq.device)
    return (time.perf_counter() - t0) / repeats / lq.shape[0]


def site_memory(model: RestoreFormerPP, res: int, batch: int, device: torch.device) -> dict[str, float]:
    site = model.fusions[str(res)]
    dim = site.merge.out_channels
    deg_dim = site.q_proj.in_channels
    lat = model.vq.encoder.latent_resolution
    z_dim = site.ctx_proj[1].in_features
    h = torch.randn(batch, dim, res, res, device=device, requires_grad=True)
    deg = torch.randn(batch, deg_dim, res, res, device=device)
    codes = torch.randn(batch, z_dim, lat, lat, device=device)
    heads = site.attn.num_heads
    L, S = res * res, res * res + lat * lat
    out = {"L": L, "S": S, "heads": heads, "score_mb_per_face": heads * L * S * 4 / 2**20}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        site(h, deg, [h, codes]).sum().backward()
        out["peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            site(h, deg, [h, codes]).sum().backward()
        out["largest_alloc_mb"] = max(e.cpu_memory_usage for e in prof.key_averages()) / 2**20
    out["batch"] = batch
    return out


def photo_time(model_kwargs: dict, repeats: int) -> float | None:
    photo = REPO / "shared" / "face" / "astronaut.jpg"
    if not photo.is_file():
        return None
    from polyhead.face.data.images import load_image
    from polyhead.face.module import FaceModule
    from polyhead.face.restore import Restorer

    module = FaceModule(model="restoreformer", **model_kwargs)
    module.net.start_stage2()
    restorer = Restorer(module)
    img = load_image(photo)
    restorer.restore_photo(img)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        restorer.restore_photo(img)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--channel-mult", default="1,2,2,4")
    ap.add_argument("--num-codes", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="runs/bench/face.json")
    ns = ap.parse_args()
    mult = tuple(int(c) for c in ns.channel_mult.split(","))
    kw = {
        "resolution": ns.resolution,
        "channels": ns.channels,
        "channel_mult": mult,
        "num_codes": ns.num_codes,
    }
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    report: dict = {
        "config": vars(ns),
        "load_average": os.getloadavg(),
        "threads": torch.get_num_threads(),
        "devices": {},
    }
    hq, _ = render(0, range(ns.batch), ns.resolution)
    lq = F.interpolate(F.interpolate(hq, scale_factor=0.25, mode="area"), size=hq.shape[-2:], mode="bilinear")
    for device in devices:
        torch.manual_seed(0)
        h, low = hq.to(device), lq.to(device)
        rf = RestoreFormerPP(**kw).to(device)
        un = UNetRestorer(**{k: v for k, v in kw.items() if k != "num_codes"}).to(device)
        r: dict = {"train_images_per_s": {}}
        r["train_images_per_s"]["stage1"] = train_throughput("stage1", rf, h, low, ns.steps)
        rf.start_stage2()
        r["train_images_per_s"]["stage2"] = train_throughput("stage2", rf, h, low, ns.steps)
        r["train_images_per_s"]["unet"] = train_throughput("unet", un, h, low, ns.steps)
        base = r["train_images_per_s"]["unet"]
        r["train_ratio_vs_unet"] = {k: v / base for k, v in r["train_images_per_s"].items()}
        rf.eval()
        un.eval()
        r["restore_ms_per_face"] = {
            f"{name}_batch{b}": 1000 * restore_time(m, low[:b], ns.repeats)
            for name, m in (("restoreformer", rf), ("unet", un))
            for b in (1, min(8, ns.batch))
        }
        r["cross_attention"] = {str(res): site_memory(rf, res, 1, device) for res in rf.fusion_resolutions}
        report["devices"][device.type] = r
    report["photo_s_cpu"] = photo_time(kw, ns.repeats)
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average at start: {report['load_average']}")
    for dev, r in report["devices"].items():
        print(f"\n[{dev}] training images/s (ratio to U-Net)")
        for k, v in r["train_images_per_s"].items():
            print(f"  {k:8s} {v:8.1f}  ({r['train_ratio_vs_unet'][k]:.2f}x)")
        print("  restore ms/face: " + ", ".join(f"{k} {v:.1f}" for k, v in r["restore_ms_per_face"].items()))
        for res, m in r["cross_attention"].items():
            mem = m.get("peak_mb", m.get("largest_alloc_mb"))
            print(f"  cross-attention {res}x{res}: L={m['L']} S={m['S']} heads={m['heads']} "
                  f"scores {m['score_mb_per_face']:.2f} MB/face, measured {mem:.2f} MB")  # fmt: skip
    if report["photo_s_cpu"] is not None:
        print(f"\nfull photo (astronaut.jpg, 1 face) on CPU: {report['photo_s_cpu']:.3f} s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
