"""Calibration of predicted click probabilities: reliability bins, expected calibration error, the plot.

A CTR model's probabilities are used as probabilities (bids, expected clicks), so the test report says how
far they are from the observed click rates: the test rows are put into ``bins`` equal-width probability
bins; per bin the mean predicted probability against the observed click rate; the expected calibration error
(ECE, Naeini et al., AAAI 2015) is the row-weighted mean of their absolute gaps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def reliability_bins(probs: Tensor, labels: Tensor, *, bins: int = 15) -> dict[str, Any]:
    """Per equal-width bin: rows, mean predicted probability, observed click rate; plus the ECE."""
    if probs.shape != labels.shape or probs.ndim != 1:
        raise ValueError(
            f"probs and labels must be 1-D of one length, got {tuple(probs.shape)}, {tuple(labels.shape)}"
        )
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    p, y = probs.double(), labels.double()
    which = (p * bins).long().clamp(0, bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    sum_p = torch.bincount(which, weights=p, minlength=bins)
    sum_y = torch.bincount(which, weights=y, minlength=bins)
    nz = count > 0
    mean_p = torch.where(nz, sum_p / count.clamp(min=1), torch.nan)
    rate = torch.where(nz, sum_y / count.clamp(min=1), torch.nan)
    ece = float(((sum_p - sum_y).abs().sum() / count.sum()).item()) if count.sum() > 0 else float("nan")
    return {
        "bins": bins,
        "ece": ece,
        "count": count.long().tolist(),
        "mean_predicted": [None if v != v else float(v) for v in mean_p.tolist()],
        "observed_rate": [None if v != v else float(v) for v in rate.tolist()],
    }


def plot_reliability(table: dict[str, Any]) -> Any:
    """Reliability diagram (observed click rate against mean predicted probability, per bin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(m, r, c) for m, r, c in zip(table["mean_predicted"], table["observed_rate"], table["count"]) if c]
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
    if pts:
        m, r, c = zip(*pts)
        ax.plot(m, r, marker="o", lw=1.2, label=f"model (ECE {table['ece']:.4f})")
    ax.set_xlabel("mean predicted click probability")
    ax.set_ylabel("observed click rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
