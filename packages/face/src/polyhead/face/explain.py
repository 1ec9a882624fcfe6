"""Explanations of face restoration: side-by-side grids and what each cross-attention head looks at.

- :func:`side_by_side`: degraded | restored | ground truth rows (every validation epoch and at test).
- :func:`explain_attention`: for one face, per fusion site and head, (a) which dictionary entries the
  head attends to (the attention mass on each context token mapped back to the dictionary code that
  token holds, top codes shown with their code image decoded by the stage-1 decoder is left out: the
  code ids and masses are listed) and (b) which image regions: the attention mass received by each key
  position, and the entropy of each query's attention, as maps over the face.
Weights come from :func:`polyhead.attention.analysis.capture_attention`, so any variant works.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor


def _img(t: Tensor) -> np.ndarray:
    return t.detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()


def side_by_side(lq: Tensor, out: Tensor, hq: Tensor, *, title: str = "") -> Any:
    """A figure with one column per face and rows degraded / restored / ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
