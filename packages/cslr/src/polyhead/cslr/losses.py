"""CTC loss computed in float32, with inputs shorter than their label sequence found and reported."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor


class TooShortInputError(ValueError):
    """Some sequences have fewer encoder frames than CTC needs for their labels."""


def ctc_min_frames(targets: Sequence[Sequence[int]]) -> list[int]:
    """Frames CTC needs per label sequence: its length plus one blank between each repeated label."""
    return [len(t) + sum(1 for a, b in itertools.pairwise(t) if a == b) for t in targets]


def ctc_loss(
    log_probs: Tensor,
    input_lengths: Tensor,
    targets: Sequence[Sequence[int]],
    *,
    ids: Sequence[str] | None = None,
    skip_short: bool = False,
) -> tuple[Tensor, list[int]]:
    """Mean CTC loss over the batch in float32 (blank 0).

    Args:
        log_probs: ``(B, T, V)`` log-probabilities.
        input_lengths: ``(B,)`` valid frames per sequence.
        targets: label id sequences.
        ids: sample ids for the error message.
        skip_short: drop too-short sequences from the loss (and return their positions) instead of raising.

    Returns:
        ``(loss, skipped batch positions)``.
    """
    need = torch.tensor(ctc_min_frames(targets), device=input_lengths.device)
    short = (input_lengths < need).nonzero().flatten().tolist()
    if short and not skip_short:
        names = [ids[i] if ids is not None else str(i) for i in short]
        detail = ", ".join(
            f"{n} ({int(input_lengths[i])} frames < {int(need[i])} needed)" for n, i in zip(names, short)
        )
        raise TooShortInputError(f"CTC input shorter than its labels for: {detail}")
    keep = [i for i in range(len(targets)) if i not in set(short)]
    if not keep:
        return log_probs.sum() * 0.0, short
    lp = log_probs[keep].float().transpose(0, 1)  # (T, B', V)
    flat = torch.tensor([c for i in keep for c in targets[i]], dtype=torch.long, device=log_probs.device)
    tl = torch.tensor([len(targets[i]) for i in keep], dtype=torch.long, device=log_probs.device)
    loss = torch.nn.functional.ctc_loss(
        lp, flat, input_lengths[keep], tl, blank=0, reduction="mean", zero_infinity=False
    )
    return loss, short
