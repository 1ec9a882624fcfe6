"""Explanations of face restoration: side-by-side grids and what each cross-attention head looks at.

- :func:`side_by_side`: degraded | restored | ground truth rows (every validation epoch and at test).
- :func:`attention_explanation` / :func:`plot_explanation`: for one face and each RestoreFormer++
  fusion site and head, (a) which dictionary entries the head reads: the attention mass on the
  dictionary-code keys summed per code id (the codes the degraded face was looked up to), top entries
  as bars; (b) which image regions: the attention mass each key position receives, as a map over the
  face, for the prior-feature keys and for the code keys.
  Weights come from :func:`polyhead.attention.analysis.capture_attention`, so any variant works
  (``multiscale_cross`` returns each scale's attention times its fusion weight).
- ``polyhead-face explain``: these figures for a few held-out degraded faces (or given aligned face
  images) with a trained checkpoint, into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F


def _img(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def side_by_side(lq: Tensor, out: Tensor, hq: Tensor, *, title: str = "") -> Any:
    """A figure with one column per face and rows degraded / restored / ground truth."""
    plt = _plt()
    n = lq.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n, 5), squeeze=False)
    for j in range(n):
        for i, (name, t) in enumerate((("degraded", lq), ("restored", out), ("ground truth", hq))):
            ax = axes[i, j]
            ax.imshow(_img(t[j]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@torch.no_grad()
def attention_explanation(net: Any, lq: Tensor) -> dict[str, dict[str, Any]]:
    """Per fusion site of a stage-2 :class:`RestoreFormerPP`, for the first face of ``lq`` in [0, 1]:

    ``weights (heads, L, S)``, ``res`` (the site's grid side, L = res^2 and the first res^2 keys are the
    prior features), ``code_ids`` (the dictionary code held by each of the last keys) and ``code_res``.
    """
    from polyhead.attention.analysis import capture_attention

    if getattr(net, "stage", 1) != 2:
        raise ValueError(
            "attention explanations need a stage-2 RestoreFormer++ (the dictionary alone has no attention)"
        )
    x = lq[:1] * 2 - 1
    with capture_attention(net.fusions) as store:
        z, _ = net.lq_encoder(x)
        code_ids = net.vq.quantizer.lookup_map(z)[0].flatten()
        net.restore(x)
    out = {}
    for name, ws in store.items():
        if not ws:
            continue
        site = name.split(".")[0]
        w = ws[0][0].float().cpu()  # (heads, L, S)
        res = round(w.shape[1] ** 0.5)
        out[site] = {"weights": w, "res": res, "code_ids": code_ids.cpu(), "code_res": int(z.shape[-1])}
    return out


def code_mass(weights: Tensor, code_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Attention mass per dictionary code and head: ``(heads, num distinct codes)``, with the ids.

    ``weights (heads, L, S)``: the last ``len(code_ids)`` keys are the code keys.
    """
    n = code_ids.numel()
    received = weights[:, :, -n:].sum(1) / weights.shape[1]  # (heads, n): mean over queries
    ids, inv = code_ids.unique(return_inverse=True)
    mass = torch.zeros(weights.shape[0], len(ids)).index_add_(1, inv, received)
    return mass, ids


def plot_explanation(
    face: Tensor, restored: Tensor, expl: dict[str, Any], *, title: str = "", top_k: int = 6
) -> Any:
    """Rows = heads; columns: region map (prior keys), region map (code keys), top dictionary entries."""
    plt = _plt()
    w, res, ids, cres = expl["weights"], expl["res"], expl["code_ids"], expl["code_res"]
    heads = w.shape[0]
    R = face.shape[-1]
    fig, axes = plt.subplots(heads, 4, figsize=(11, 2.4 * heads), squeeze=False)
    prior = w[:, :, : res * res].sum(1).view(heads, 1, res, res)
    codes = w[:, :, -ids.numel() :].sum(1).view(heads, 1, cres, cres)
    maps = [F.interpolate(m, size=(R, R), mode="bilinear", align_corners=False)[:, 0] for m in (prior, codes)]
    mass, uniq = code_mass(w, ids)
    for h in range(heads):
        axes[h, 0].imshow(_img(face))
        axes[h, 0].set_title("degraded" if h == 0 else "")
        axes[h, 0].set_ylabel(f"head {h}")
        for c, (m, name) in enumerate(zip(maps, ("prior-feature keys", "dictionary-code keys"), strict=True)):
            ax = axes[h, 1 + c]
            ax.imshow(_img(restored))
            ax.imshow(m[h].numpy(), cmap="inferno", alpha=0.6)
            if h == 0:
                ax.set_title(f"attention received: {name}", fontsize=8)
        top = mass[h].argsort(descending=True)[:top_k]
        ax = axes[h, 3]
        ax.bar(range(len(top)), mass[h, top].numpy())
        ax.set_xticks(range(len(top)), [str(int(uniq[i])) for i in top], fontsize=7)
        if h == 0:
            ax.set_title("top dictionary entries (mass)", fontsize=8)
        for a in axes[h, :3]:
            a.set_xticks([])
            a.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``polyhead-face explain``: attention explanation figures for held-out faces or given aligned faces."""
    p = argparse.ArgumentParser(prog="polyhead-face explain", description=main.__doc__)
    p.add_argument(
        "images", nargs="*", help="aligned face images (default: held-out rendered faces, degraded)"
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--run-root", default="runs")
    p.add_argument("--experiment", default="default")
    p.add_argument("--num", type=int, default=4, help="rendered faces to explain when no image is given")
    a = p.parse_args(argv)
    from polyhead.face.restore import Restorer, find_checkpoint

    ckpt = a.ckpt or find_checkpoint(a.run_root, a.experiment)
    if ckpt is None:
        print(
            f"polyhead-face explain: error: no trained model under {a.run_root}/face/{a.experiment}",
            file=sys.stderr,
        )
        return 2
    module = Restorer.from_checkpoint(ckpt, use_mesh=False).module
    net = getattr(module, "net", None)
    if getattr(net, "stage", None) != 2:
        print(
            f"polyhead-face explain: error: {ckpt} is not a stage-2 RestoreFormer++ checkpoint",
            file=sys.stderr,
        )
        return 2
    assert net is not None  # its stage is 2
    R = module.resolution
    if a.images:
        import cv2

        from polyhead.face.data.images import ImageError, load_image

        faces = []
        for f in a.images:
            try:
                faces.append(cv2.resize(load_image(f).rgb, (R, R), interpolation=cv2.INTER_AREA))
            except ImageError as err:
                print(f"polyhead-face explain: skipped {err}", file=sys.stderr)
        if not faces:
            return 2
        lq = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255
    else:
        from polyhead.face.data.degrade import ExtendedDegradation
        from polyhead.face.data.render import render

        hq, _ = render(2_000_003, range(a.num), R)
        deg = ExtendedDegradation(seed=2_000_004)
        lq = torch.stack(
            [
                torch.from_numpy(deg(h.permute(1, 2, 0).numpy(), i)[0]).permute(2, 0, 1)
                for i, h in enumerate(hq)
            ]
        )
    a.out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    with torch.no_grad():
        restored = module.restore(lq)
    for i in range(lq.shape[0]):
        for site, expl in attention_explanation(net, lq[i : i + 1]).items():
            fig = plot_explanation(lq[i], restored[i], expl, title=f"face {i}, fusion site {site}x{site}")
            fig.savefig(a.out / f"face{i}_site{site}.png", dpi=80)
            plt.close(fig)
    print(f"polyhead-face explain: wrote {lq.shape[0]} face(s) x {len(net.fusions)} site(s) to {a.out}")
    return 0
