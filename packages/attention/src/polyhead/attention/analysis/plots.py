"""Plot helpers returning matplotlib figures (Agg backend; nothing is shown), for reports and W&B.

matplotlib is imported by the first plot, not with :mod:`polyhead.attention.analysis` (about a second of
start-up that capture, head importance and the metrics do not need).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_attention_heads(
    weights: Tensor,
    *,
    title: str | None = None,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    max_cols: int = 4,
) -> Figure:
    """A grid of per-head heatmaps for one sample's attention ``(heads, L, S)`` (or ``(L, S)``)."""
    w = weights.detach().float().cpu()
    if w.dim() == 2:
        w = w[None]
    if w.dim() != 3:
        raise ValueError(f"weights must be (heads, L, S) or (L, S), got {tuple(weights.shape)}")
    heads = w.shape[0]
    cols = min(max_cols, heads)
    rows = (heads + cols - 1) // cols
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= heads:
            ax.axis("off")
            continue
        im = ax.imshow(w[h].numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        if key_labels is not None and len(key_labels) == w.shape[2]:
            ax.set_xticks(range(len(key_labels)), key_labels, rotation=90, fontsize=6)
        if query_labels is not None and len(query_labels) == w.shape[1]:
            ax.set_yticks(range(len(query_labels)), query_labels, fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_head_importance(importance: Mapping[str, Tensor], *, title: str = "head importance") -> Figure:
    """Bars of head importance per layer (one group per module)."""
    names = list(importance)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * sum(len(v) for v in importance.values())), 3.2))
    x = 0
    ticks, labels = [], []
    for n in names:
        vals = torch.as_tensor(importance[n]).float().cpu()
        xs = list(range(x, x + len(vals)))
        ax.bar(xs, vals.numpy(), label=n)
        ticks += xs
        labels += [f"h{h}" for h in range(len(vals))]
        x += len(vals) + 1
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_ylabel("importance")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_pruning_sweep(rows: Sequence[Mapping[str, float]], *, metric: str = "metric") -> Figure:
    """Metric vs fraction of heads removed, by importance and at random (rows of :func:`pruning_sweep`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    fr = [r["fraction"] for r in rows]
    ax.plot(fr, [r["by_importance"] for r in rows], marker="o", label="least important first")
    ax.plot(fr, [r["random"] for r in rows], marker="s", label="random order")
    ax.set_xlabel("fraction of heads removed")
    ax.set_ylabel(metric)
    ax.legend()
    fig.tight_layout()
    return fig
