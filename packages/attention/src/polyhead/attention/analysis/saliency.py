"""Attention-vs-saliency agreement: Pearson and Spearman correlation, deletion AUC.

Used to test how much of an input-relevance (saliency) map an attention map explains, as in
"Cross-Attention is Half Explanation in Speech-to-Text Models" (Papi et al., 2025, arXiv:2509.18010).
All functions are batched over leading dimensions: maps ``(..., N)`` are compared along the last axis.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation along the last axis: ``(...)``. Constant inputs give NaN (undefined)."""
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    denom = a.norm(dim=-1) * b.norm(dim=-1)
    return (a * b).sum(-1) / denom.where(denom > 0, torch.full_like(denom, float("nan")))


def rankdata(x: Tensor) -> Tensor:
    """Ranks (1-based) along the last axis with ties given their average rank (as scipy's rankdata)."""
    x = x.double()
    order = x.argsort(dim=-1, stable=True)
    sorted_x = x.gather(-1, order)
    n = x.shape[-1]
    idx = torch.arange(1, n + 1, dtype=torch.float64, device=x.device).expand_as(x)
    # Average the ranks within each run of equal values: run starts where the value changes.
    new_run = torch.ones_like(sorted_x, dtype=torch.bool)
    new_run[..., 1:] = sorted_x[..., 1:] != sorted_x[..., :-1]
    run_id = new_run.long().cumsum(-1) - 1  # (..., n)
    run_sum = torch.zeros_like(sorted_x).scatter_add_(-1, run_id, idx)
    run_len = torch.zeros_like(sorted_x).scatter_add_(-1, run_id, torch.ones_like(idx))
    avg = (run_sum / run_len.clamp_min(1)).gather(-1, run_id)
    return torch.empty_like(avg).scatter_(-1, order, avg)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation along the last axis (tie-aware): ``(...)``."""
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return pearson(rankdata(a), rankdata(b))


def deletion_curve(
    relevance: Tensor,
    score_fn: Callable[[Tensor], Tensor],
    *,
    steps: int = 10,
) -> tuple[Tensor, Tensor]:
    """Deletion curve: remove the most relevant inputs first and record the model's score.

    Args:
        relevance: ``(B, N)`` relevance of N input units per sample.
        score_fn: takes a keep-mask ``(B * (steps + 1), N)`` (True = unit kept; the samples repeated for
            every deletion level, level-major) and returns scores ``(B * (steps + 1),)``, e.g. the
            probability of the predicted token with the deleted units occluded. One batched call.
        steps: number of deletion levels after the full input (fractions 0, 1/steps, ..., 1).

    Returns:
        ``(fractions (steps + 1,), scores (B, steps + 1))``.
    """
    B, N = relevance.shape
    fractions = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    ranks = relevance.argsort(dim=-1, descending=True).argsort(dim=-1)  # rank 0 = most relevant
    k = (fractions * N).round().long()  # units removed per level
    keep = ranks[None, :, :] >= k[:, None, None].to(relevance.device)  # (steps + 1, B, N)
    scores = score_fn(keep.reshape(-1, N)).reshape(steps + 1, B).T
    return fractions, scores


def deletion_auc(fractions: Tensor, scores: Tensor) -> Tensor:
    """Area under a deletion curve (trapezoid rule over the deleted fraction): ``(B,)``. Lower = more faithful."""
    return torch.trapezoid(scores.double(), fractions.double().to(scores.device), dim=-1)
