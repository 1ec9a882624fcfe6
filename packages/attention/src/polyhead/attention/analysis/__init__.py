"""Head analysis for polyhead attention modules.

- :func:`capture_attention`: per-module, per-head attention maps while active.
- :func:`mask_heads`, :func:`unmask_heads`, :func:`ablate_heads`: zero heads before the output projection.
- :func:`head_importance`, :func:`pruning_sweep`: Michel et al. importance and pruning curves.
- :func:`attention_entropy`, :func:`attention_distance`, :func:`retrieval_score`: per-head statistics.
- :func:`pearson`, :func:`spearman`, :func:`deletion_curve`, :func:`deletion_auc`: attention vs saliency.
- :func:`plot_attention_heads`, :func:`plot_head_importance`, :func:`plot_pruning_sweep`: figures.
"""

from polyhead.attention.analysis.capture import attention_modules, capture_attention
from polyhead.attention.analysis.heads import (
    ablate_heads,
    head_importance,
    mask_heads,
    pruning_sweep,
    unmask_heads,
)
from polyhead.attention.analysis.metrics import attention_distance, attention_entropy, retrieval_score
from polyhead.attention.analysis.plots import plot_attention_heads, plot_head_importance, plot_pruning_sweep
from polyhead.attention.analysis.saliency import deletion_auc, deletion_curve, pearson, rankdata, spearman

__all__ = [
    "ablate_heads",
    "attention_distance",
    "attention_entropy",
    "attention_modules",
    "capture_attention",
    "deletion_auc",
    "deletion_curve",
    "head_importance",
    "mask_heads",
    "pearson",
    "plot_attention_heads",
    "plot_head_importance",
    "plot_pruning_sweep",
    "pruning_sweep",
    "rankdata",
    "retrieval_score",
    "spearman",
    "unmask_heads",
]
