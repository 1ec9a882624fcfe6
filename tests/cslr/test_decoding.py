"""CTC decoding on hand-made and random log-probabilities against brute force."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from polyhead.cslr.decoding import beam_decode, greedy_decode, greedy_decode_scored, prefix_beam_search


def _collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    prev = None
    for c in path:
        if c != prev and c != 0:
            out.append(c)
        prev = c
    return tuple(out)


def _brute_force(log_probs: torch.Tensor) -> tuple[tuple[int, ...], float]:
    """Most probable label sequence, summing over all alignments (tiny T and V only)."""
    T, V = log_probs.shape
    scores: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        lp = sum(float(log_probs[t, c]) for t, c in enumerate(path))
        key = _collapse(path)
        scores[key] = math.log(math.exp(scores.get(key, -math.inf)) + math.exp(lp))
    return max(scores.items(), key=lambda kv: kv[1])


def test_greedy_on_hand_made_logits() -> None:
    # frames a a _ a b b _ _: repeats merge unless a blank separates them -> [a, a, b].
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0]])
    lp = torch.log_softmax(torch.nn.functional.one_hot(ids, 3).float() * 10, -1)
    assert greedy_decode(lp) == [[1, 1, 2]]
    assert greedy_decode(lp, torch.tensor([4])) == [[1, 1]]


def test_beam_beats_greedy_where_alignments_add_up() -> None:
    # Greedy picks blank at both frames (p = 0.6 each -> ""), but "1" has probability
    # 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64 > 0.36.
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4]], dtype=torch.float64).log()
    assert greedy_decode(p[None]) == [[]]
    labels, logp = prefix_beam_search(p, beam_size=4)
    assert labels == [1] and math.isclose(math.exp(logp), 0.64, rel_tol=1e-9)


def test_beam_matches_brute_force_on_random_inputs() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        lp = torch.log_softmax(torch.randn(5, 3, generator=g) * 2, -1)
        labels, logp = prefix_beam_search(lp, beam_size=50, token_prune=None)
        ref, ref_lp = _brute_force(lp)
        assert tuple(labels) == ref and math.isclose(logp, ref_lp, rel_tol=1e-9)
    batch = torch.log_softmax(torch.randn(2, 6, 4, generator=g), -1)
    assert beam_decode(batch, torch.tensor([6, 3]), beam_size=8)[1] == prefix_beam_search(batch[1, :3], 8)[0]


def test_greedy_scores_against_a_per_frame_reference() -> None:
    torch.manual_seed(3)
    lp = torch.log_softmax(torch.randn(3, 12, 6) * 3, -1)
    lengths = torch.tensor([12, 7, 0])
    out = greedy_decode_scored(lp, lengths)
    assert [o[0] for o in out] == greedy_decode(lp, lengths)
    for b in range(3):
        n = int(lengths[b])
        labels, seq, per_gloss = out[b]
        if n == 0:
            assert (labels, seq, per_gloss) == ([], 0.0, [])
            continue
        best = lp[b, :n].max(-1)
        assert seq == pytest.approx(float(best.values.mean().exp()), rel=1e-5)
        # reference: walk the frames, one score per emitted gloss = the highest probability of its run
        ref, prev = [], None
        for t in range(n):
            c, p = int(best.indices[t]), float(best.values[t].exp())
            if c != prev and c != 0:
                ref.append(p)
            elif c == prev and c != 0:
                ref[-1] = max(ref[-1], p)
            prev = c
        assert per_gloss == pytest.approx(ref, rel=1e-5) and len(per_gloss) == len(labels)
