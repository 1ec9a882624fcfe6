"""Explanations for AutoInt: which field pairs the interacting layers attend to.

Per layer and head, the field-to-field attention maps are averaged over a dataset; a pair's score is the
symmetrised mean attention ``(a_ij + a_ji) / 2`` over layers and heads (self-attention on the diagonal is
excluded). The top pairs are the feature combinations the model relies on (AutoInt, section 5.4).

On generated data the true effects are known, so ``effect_recovery`` measures how much of each planted
effect a model (any model, not only AutoInt) has learnt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # matplotlib is imported by the plot only (CLI start-up)
    from matplotlib.figure import Figure


def pair_scores(mean_maps: Tensor) -> Tensor:
    """``(layers, heads, F, F)`` mean attention -> symmetric ``(F, F)`` pair scores with a zero diagonal."""
    a = mean_maps.double().mean(dim=(0, 1))
    s = 0.5 * (a + a.T)
    return s.fill_diagonal_(0.0)


def rank_pairs(scores: Tensor, names: Sequence[str]) -> list[tuple[str, str, float]]:
    """All field pairs, highest score first."""
    F = scores.shape[0]
    i, j = torch.triu_indices(F, F, offset=1)
    vals = scores[i, j]
    order = vals.argsort(descending=True)
    return [(names[int(i[k])], names[int(j[k])], float(vals[k])) for k in order]


def pair_ranks(ranking: list[tuple[str, str, float]], pairs: Sequence[tuple[str, str]]) -> dict[str, int]:
    """1-based rank of each requested pair in ``ranking`` (order within a pair ignored)."""
    pos = {frozenset((a, b)): r + 1 for r, (a, b, _) in enumerate(ranking)}
    return {f"{a}x{b}": pos[frozenset((a, b))] for a, b in pairs}


def effect_recovery(logit: np.ndarray, effects: Mapping[str, np.ndarray]) -> dict[str, float]:
    """How much of each known effect a model's logit carries: the least-squares fit
    ``logit ~ c + sum_k g_k * effect_k`` over the same rows.

    The generator's effects are independent by construction (different fields, zero-mean random factors),
    so each gain ``g_k`` reads on its own: 1 means the model reproduces that effect at full strength, 0
    that it has not learnt it (a shrunk, well-calibrated model gives values below 1 for every effect).
    Also returns ``r2``, the fraction of the logit's variance the effects explain.
    """
    names = list(effects)
    y = np.asarray(logit, dtype=np.float64)
    x = np.column_stack([np.ones_like(y), *(np.asarray(effects[k], dtype=np.float64) for k in names)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    out = {k: float(c) for k, c in zip(names, coef[1:])}
    out["r2"] = float(1.0 - resid.var() / y.var()) if y.var() > 0 else 0.0
    return out


def plot_field_attention(
    mean_maps: Tensor, names: Sequence[str], *, title: str = "AutoInt field attention"
) -> Figure:
    """Heatmaps: one per head of the first layer, plus the symmetric pair score over all layers/heads."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    L, H, F, _ = mean_maps.shape
    fig, axes = plt.subplots(1, H + 1, figsize=(4.2 * (H + 1), 4.2), squeeze=False)
    panels = [(mean_maps[0, h], f"layer 0 head {h}") for h in range(H)] + [
        (pair_scores(mean_maps), "pair score (all)")
    ]
    for ax, (m, t) in zip(axes[0], panels):
        im = ax.imshow(m.float().numpy(), cmap="viridis")
        ax.set_title(t, fontsize=9)
        ax.set_xticks(range(F), names, rotation=90, fontsize=5)
        ax.set_yticks(range(F), names, fontsize=5)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
