"""CTC decoding: greedy (batched, vectorised) and prefix beam search (pure Python over frames).

Both take log-probabilities ``(B, T, V)`` with the blank at index 0 and per-sequence lengths. The beam
search is the standard CTC prefix beam search (Hannun et al. 2014, arXiv:1408.2873, without a language
model): it sums the probability of all alignments of a prefix, which greedy decoding does not.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BLANK = 0


def greedy_decode(log_probs: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks."""
    B, T, _ = log_probs.shape
    best = log_probs.argmax(-1)  # (B, T)
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.to("cpu")
    valid = torch.arange(T)[None, :] < lengths[:, None]
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = (new & (best != BLANK) & valid.to(best.device)).cpu()
    best = best.cpu()
    return [best[b][keep[b]].tolist() for b in range(B)]


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def _add(beams: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], pb: float, pnb: float) -> None:
    cur = beams.setdefault(prefix, [-math.inf, -math.inf])
    cur[0] = _logsumexp(cur[0], pb)
    cur[1] = _logsumexp(cur[1], pnb)


def prefix_beam_search(
    log_probs: Tensor, beam_size: int = 8, token_prune: int | None = 16
) -> tuple[list[int], float]:
    """CTC prefix beam search on one sequence ``(T, V)``; returns ``(labels, log probability)``."""
    lp = log_probs.detach().double().cpu()
    T, V = lp.shape
    # prefix -> (log p ending in blank, log p ending in non-blank)
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    for t in range(T):
        row = lp[t]
        cand = range(V) if token_prune is None or token_prune >= V else row.topk(token_prune).indices.tolist()
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = _logsumexp(pb, pnb)
            for c in cand:
                p = float(row[c])
                if c == BLANK:
                    _add(nxt, prefix, total + p, -math.inf)
                    continue
                last = prefix[-1] if prefix else None
                if c == last:
                    _add(nxt, prefix, -math.inf, pnb + p)  # repeat without a blank in between: same prefix
                    _add(nxt, prefix + (c,), -math.inf, pb + p)  # blank separated the repeat: extend
                else:
                    _add(nxt, prefix + (c,), -math.inf, total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in ranked}
    best, (pb, pnb) = max(beams.items(), key=lambda kv: _logsumexp(*kv[1]))
    return list(best), _logsumexp(pb, pnb)


def beam_decode(log_probs: Tensor, lengths: Tensor | None = None, beam_size: int = 8) -> list[list[int]]:
    B, T, _ = log_probs.shape
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.cpu()
    return [prefix_beam_search(log_probs[b, : int(lengths[b])], beam_size)[0] for b in range(B)]


def greedy_decode_scored(
    log_probs: Tensor, lengths: Tensor | None = None
) -> list[tuple[list[int], float, list[float]]]:
    """Greedy decoding with confidences: ``[(labels, sequence score, per-gloss scores), ...]``.

    The sequence score is the geometric mean over valid frames of the best path's per-frame probability
    (``exp(mean_t max_v log p_t(v))``), so it does not shrink with length; a gloss's score is the highest
    probability it reaches over the frames of its run on the best path (CTC emits a gloss on a few peaky
    frames). An input with no valid frame scores 0.
    """
    B, T, _ = log_probs.shape
    lengths = torch.full((B,), T, dtype=torch.long) if lengths is None else lengths.to("cpu")
    best_lp, best = log_probs.detach().float().max(-1)  # (B, T)
    best_lp, best = best_lp.cpu(), best.cpu()
    valid = torch.arange(T)[None, :] < lengths[:, None]
    n = valid.sum(1).clamp(min=1)
    seq = torch.where(lengths > 0, ((best_lp * valid).sum(1) / n).exp(), torch.zeros(B))
    new = torch.ones_like(best, dtype=torch.bool)
    new[:, 1:] = best[:, 1:] != best[:, :-1]
    run_id = new.long().cumsum(1) - 1  # (B, T) index of the run each frame belongs to
    probs = best_lp.exp()
    out: list[tuple[list[int], float, list[float]]] = []
    for b in range(B):
        L = int(lengths[b])
        if L == 0:
            out.append(([], 0.0, []))
            continue
        runs = run_id[b, :L]
        peak = torch.zeros(int(runs[-1]) + 1).scatter_reduce(0, runs, probs[b, :L], "amax")  # (runs,)
        starts = new[b, :L].nonzero().flatten()
        labels = best[b, starts]
        keep = labels != BLANK
        out.append((labels[keep].tolist(), float(seq[b]), peak[keep].tolist()))
    return out
