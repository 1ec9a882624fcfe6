"""Per-head statistics of attention maps: entropy, mean attention distance, retrieval-head score.

All functions take weights ``(B, H, L, S)`` (rows sum to 1 over visible keys; fully masked rows are all
zero and are ignored) and return per-head values ``(H,)`` averaged over batch and queries.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _valid_rows(weights: Tensor) -> Tensor:
    return weights.sum(-1) > 0  # (B, H, L)


def _mean_over_rows(values: Tensor, valid: Tensor) -> Tensor:
    v = values.masked_fill(~valid, 0.0)
    return v.sum(dim=(0, 2)) / valid.sum(dim=(0, 2)).clamp_min(1)


def attention_entropy(weights: Tensor) -> Tensor:
    """Mean Shannon entropy (nats) of each head's attention rows: ``(H,)``; uniform over S keys gives log S."""
    w = weights.double()
    ent = -(w * torch.log(w.clamp_min(1e-300))).sum(-1)  # (B, H, L)
    return _mean_over_rows(ent, _valid_rows(weights)).to(weights.dtype)


def attention_distance(
    weights: Tensor, shape: tuple[int, int] | None = None, *, offset: int | None = None
) -> Tensor:
    """Mean attention distance per head: ``sum_j w_ij * dist(i, j)`` averaged over queries: ``(H,)``.

    Args:
        weights: ``(B, H, L, S)``.
        shape: ``(rows, cols)`` of a 2-D token grid (self-attention, L == S == rows * cols); distances are
            then Euclidean in grid cells (as in ViT's "mean attention distance"). Otherwise ``|i - j|``.
        offset: position of query 0 among the keys for 1-D maps (default ``S - L``: queries aligned to the
            end of the keys, as in decoding with a cache).
    """
    B, H, L, S = weights.shape
    dev = weights.device
    if shape is not None:
        rows, cols = shape
        if rows * cols != L or L != S:
            raise ValueError(f"shape {shape} needs L == S == rows * cols, got L={L}, S={S}")
        yy, xx = torch.meshgrid(torch.arange(rows, device=dev), torch.arange(cols, device=dev), indexing="ij")
        pos = torch.stack([yy.flatten(), xx.flatten()], -1).double()  # (L, 2)
        dist = torch.cdist(pos, pos)  # (L, S)
    else:
        off = S - L if offset is None else offset
        qi = torch.arange(L, device=dev).double()[:, None] + off
        kj = torch.arange(S, device=dev).double()[None, :]
        dist = (qi - kj).abs()
    d = (weights.double() * dist).sum(-1)  # (B, H, L)
    return _mean_over_rows(d, _valid_rows(weights)).to(weights.dtype)


def retrieval_score(weights: Tensor, source_index: Tensor, copy_mask: Tensor | None = None) -> Tensor:
    """Retrieval-head score per head (Wu et al. 2024, "Retrieval Head Mechanistically Explains
    Long-Context Factuality", arXiv:2404.15574; used by DuoAttention to label retrieval heads).

    The fraction of copy steps at which the head's argmax attention points at the source token being
    copied. Heads scoring above about 0.1 are retrieval heads.

    Args:
        weights: ``(B, H, L, S)`` attention of the generating positions.
        source_index: ``(B, L)`` index in ``[0, S)`` of the token each position copies.
        copy_mask: ``(B, L)`` bool, True where the step is a copy step (default: all).
    """
    B, H, L, S = weights.shape
    if source_index.shape != (B, L):
        raise ValueError(f"source_index must be (B, L) = ({B}, {L}), got {tuple(source_index.shape)}")
    hit = weights.argmax(-1) == source_index[:, None, :]  # (B, H, L)
    valid = _valid_rows(weights)
    if copy_mask is not None:
        if copy_mask.shape != (B, L):
            raise ValueError(f"copy_mask must be (B, L) = ({B}, {L}), got {tuple(copy_mask.shape)}")
        valid = valid & copy_mask[:, None, :]
    return _mean_over_rows(hit.double(), valid).to(torch.float32)
