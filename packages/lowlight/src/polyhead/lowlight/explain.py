"""What FeatEnHancer does to a test batch, as figures and JSON in ``<run>/media/``.

- ``explain_scales.png``: per image, the dark input, each scale's curve-enhanced image (full, 1/4, 1/8) and
  the enhanced representation the detector receives (each panel stretched to its own range for display);
- ``explain_scale_weights.png`` and ``explain.json``: each fusion head's attention mass on each scale's
  tokens, per image and averaged (from the attention weights of the fusion module);
- ``explain_predictions.png``: the model's detections drawn on the dark image and on the enhanced one.

Written at the end of ``test`` for the first test images; for the baselines only the predictions figure
(Zero-DCE: on its enhanced image).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from polyhead.lowlight.models.featenhancer import FeatEnHancer
from polyhead.lowlight.predict_writer import PALETTE, draw_detections

SCALE_NAMES = ("full", "1/4", "1/8")


def _display(x: Tensor) -> np.ndarray:
    """``(3, H, W)`` -> uint8 image, stretched to its 1st-99th percentile."""
    a = x.detach().float().permute(1, 2, 0).cpu().numpy()
    lo, hi = np.percentile(a, 1), np.percentile(a, 99)
    return (np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


@torch.no_grad()
def explain(module, images: Tensor, metas: list[dict], out_dir: Path) -> dict:
    """Write the figures for ``images (N, 3, S, S)`` and return the JSON summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = module.net
    was_training = net.training
    net.eval()
    summary: dict = {"enhancer": module.hparams.enhancer, "images": [m["path"] for m in metas]}
    enh = net.enhancer
    if isinstance(enh, FeatEnHancer):
        rep, details = enh(images, return_details=True)
        cols = ["dark input", "enhanced full", "enhanced 1/4", "enhanced 1/8", "representation"]
        fig, axes = plt.subplots(
            len(images), len(cols), figsize=(2.2 * len(cols), 2.2 * len(images)), squeeze=False
        )
        for i in range(len(images)):
            panels = [images[i], details["enhanced_full"][i], details["enhanced_quarter"][i],
                      details["enhanced_eighth"][i], rep[i]]  # fmt: skip
            for j, p in enumerate(panels):
                axes[i, j].imshow(_display(p), interpolation="nearest")
                axes[i, j].set_axis_off()
                if i == 0:
                    axes[i, j].set_title(cols[j], fontsize=9)
        fig.tight_layout()
        fig.savefig(out_dir / "explain_scales.png", dpi=90)
        plt.close(fig)
        if "scale_weights" in details:
            w = details["scale_weights"].cpu().numpy()  # (N, heads, 3)
            summary["scale_weights_mean"] = {f"head{h}": dict(zip(SCALE_NAMES, map(float, w[:, h].mean(0))))
                                             for h in range(w.shape[1])}  # fmt: skip
            summary["scale_weights_per_image"] = w.round(4).tolist()
            fig, axes = plt.subplots(1, len(w) + 1, figsize=(2.6 * (len(w) + 1), 2.6), squeeze=False)
            for i, m in enumerate([*w, w.mean(0)]):
                ax = axes[0, i]
                ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
                ax.set_xticks(range(3), SCALE_NAMES)
                ax.set_yticks(range(m.shape[0]), [f"head {h}" for h in range(m.shape[0])])
                ax.set_title("mean" if i == len(w) else f"image {i}", fontsize=9)
                for (r, c), v in np.ndenumerate(m):
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
            fig.suptitle("fusion heads: attention mass per scale")
            fig.tight_layout()
            fig.savefig(out_dir / "explain_scale_weights.png", dpi=90)
            plt.close(fig)
    else:
        rep = net.enhance(images)
    dets = net(images)
    cats = module.hparams.categories
    thresh = module.hparams.draw_thresh
    fig, axes = plt.subplots(len(images), 2, figsize=(5, 2.5 * len(images)), squeeze=False)
    for i, d in enumerate(dets):
        keep = d["scores"] >= thresh
        labels = [f"{cats[int(c)]} {float(s):.2f}" for c, s in zip(d["labels"][keep], d["scores"][keep])]
        colors = [PALETTE[int(c) % len(PALETTE)] for c in d["labels"][keep]]
        for j, base in enumerate((images[i], rep[i])):
            axes[i, j].imshow(draw_detections(_display(base), d["boxes"][keep].cpu(), labels, colors))
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(
                    ("dark input" if j == 0 else "enhanced") + f" (score >= {thresh})", fontsize=9
                )
    fig.tight_layout()
    fig.savefig(out_dir / "explain_predictions.png", dpi=90)
    plt.close(fig)
    (out_dir / "explain.json").write_text(json.dumps(summary, indent=1) + "\n")
    net.train(was_training)
    return summary
