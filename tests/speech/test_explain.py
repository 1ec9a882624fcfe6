"""Explanation code on constructed cases where the answer is known: saliency finds the region a token
depends on, correlations of identical / opposite maps, DTW and CTC word timestamps of a planted alignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from polyhead.speech.data.tokenizer import SOS_EOS, CharTokenizer
from polyhead.speech.explain import (
    compare,
    ctc_timestamps,
    dtw_path,
    dtw_timestamps,
    encoder_saliency,
    pool_to_encoder,
    spes_saliency,
    timestamp_disagreement,
)


class RegionModel(nn.Module):
    """Token 3's logit is 8 x the mean of input frames 20-35, mel bands 30-50; token 4's of frames 60-75."""

    vocab = 6

    def encode(self, feats: Tensor, lengths: Tensor):
        mask = torch.arange(feats.shape[1])[None, :] < lengths[:, None]
        return feats, lengths, mask

    def decode_step(self, ys, ys_mask, memory, mem_mask, need_weights=False):
        B, U = ys.shape
        logits = torch.zeros(B, U, self.vocab)
        a = memory[:, 20:36, 30:51].mean((1, 2))
        b = memory[:, 60:76, 30:51].mean((1, 2))
        logits[:, 0, 3] = 8 * a
        logits[:, 1, 4] = 8 * b
        logits[:, 2, SOS_EOS] = 4.0
        return logits, [None]


def test_spes_finds_the_region_each_token_depends_on() -> None:
    feats = torch.ones(1, 100, 80)
    sal = spes_saliency(RegionModel(), feats, [3, 4], n_masks=512, patch_t=4, patch_f=10, p=0.5, chunk=256)
    assert sal.shape == (3, 100, 80)
    for u, (t0, t1) in enumerate([(20, 36), (60, 76)]):
        inside = sal[u, t0:t1, 30:50].mean()
        outside = torch.cat([sal[u, :t0].flatten(), sal[u, t1 + 4 :].flatten()]).abs().mean()
        assert inside > 0.02 and inside > 8 * outside
    enc_sal = encoder_saliency(RegionModel(), feats, [3, 4], n_masks=256, p=0.3)
    assert enc_sal.shape == (3, 100)
    assert 20 <= int(enc_sal[0].argmax()) < 36 and 60 <= int(enc_sal[1].argmax()) < 76
    assert pool_to_encoder(sal, 25).shape == (3, 25)


def test_correlations_of_known_maps() -> None:
    g = torch.Generator().manual_seed(0)
    sal = torch.rand(5, 40, generator=g)  # 4 tokens + end
    att = torch.stack([torch.stack([sal, -sal, sal**3])] * 2)  # (layers 2, heads 3, U, T')
    r = compare(att, sal)
    assert abs(r["per_layer_head"][0][0]["pearson"] - 1) < 1e-9
    assert abs(r["per_layer_head"][1][1]["pearson"] + 1) < 1e-9
    assert abs(r["per_layer_head"][0][2]["spearman"] - 1) < 1e-9 and r["per_layer_head"][0][2]["pearson"] < 1
    assert len(r["per_layer"]) == 2 and "pearson" in r["aggregated"] and "subset" not in r
    # the mean of heads 0 and 2 (sal and sal**3) is rank-identical to sal; adding head 1 (-sal) is not
    sub = compare(att, sal, heads=[0, 2])["subset"]
    assert abs(sub["spearman"] - 1) < 1e-9 and sub["pearson"] > r["aggregated"]["pearson"]
    assert compare(att, sal, layers=[1], heads=[1])["subset"]["pearson"] < -1 + 1e-9


def test_dtw_and_ctc_timestamps_of_a_planted_alignment() -> None:
    tok = CharTokenizer(list("abc|"))
    text = "ab c"
    ids = tok.encode(text)  # a b | c
    # encoder frames 40 ms: token u occupies frames [5u, 5u + 5)
    T = 5 * len(ids)
    att = torch.full((len(ids) + 1, T), 0.01)
    for u in range(len(ids)):
        att[u, 5 * u : 5 * u + 5] = 1.0
    words = dtw_timestamps(att, ids, tok, filter_width=1)
    assert [w["word"] for w in words] == ["ab", "c"]
    assert abs(words[0]["start"] - 0.0) < 1e-9 and abs(words[0]["end"] - 0.4) < 1e-9
    assert abs(words[1]["start"] - 0.6) < 1e-9 and abs(words[1]["end"] - 0.8) < 1e-9

    lp = torch.full((T, len(tok)), -12.0)
    lp[:, 0] = 0.0  # blank everywhere ...
    for u, i in enumerate(ids):
        lp[5 * u + 1 : 5 * u + 3, i] = 2.0  # ... except two frames per token
        lp[5 * u + 1 : 5 * u + 3, 0] = -12.0
    lp = lp.log_softmax(-1)
    ctc_words = ctc_timestamps(lp, ids, tok)
    assert [w["word"] for w in ctc_words] == ["ab", "c"]
    assert abs(ctc_words[0]["start"] - 0.04) < 1e-9 and abs(ctc_words[0]["end"] - 0.32) < 1e-9
    d = timestamp_disagreement(words, ctc_words)
    assert d is not None and abs(d - 1000 * (0.04 + 0.08 + 0.04 + 0.08) / 4) < 1e-6


def test_ctc_timestamps_of_an_unalignable_hypothesis_are_empty() -> None:
    tok = CharTokenizer(list("ab|"))
    lp = torch.randn(6, len(tok), generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    fits = tok.encode("ab ab")  # 5 tokens, no repeats: 5 frames needed
    assert len(ctc_timestamps(lp, fits, tok)) == 2
    assert ctc_timestamps(lp, tok.encode("aab ba"), tok) == []  # 6 tokens + 1 repeat > 6 frames
    assert ctc_timestamps(lp, tok.encode("ab ab ab"), tok) == []  # 8 tokens > 6 frames
    assert ctc_timestamps(lp, [], tok) == []


def _dtw_reference(cost: np.ndarray) -> float:
    """The textbook cell-by-cell recursion: the minimal summed cost of a monotonic alignment."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return float(acc[n, m])


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 23), (17, 9)])
def test_dtw_path_is_a_minimal_monotonic_alignment(shape: tuple[int, int]) -> None:
    cost = np.random.default_rng().random(shape)
    path = dtw_path(cost)
    assert path[0] == (0, 0) and path[-1] == (shape[0] - 1, shape[1] - 1)
    steps = {(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(path)}
    assert steps <= {(1, 1), (1, 0), (0, 1)}
    assert sum(cost[i, j] for i, j in path) == pytest.approx(_dtw_reference(cost), abs=1e-12)
