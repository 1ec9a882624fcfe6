"""Cross-attention explanations, perturbation saliency, word timestamps.

Following "Cross-Attention is Half Explanation in Speech-to-Text Models" (Papi et al. 2025,
arXiv:2509.18010):

- :func:`cross_attention`: the decoder's cross-attention for the generated tokens, ``(layers, heads, U, T')``
  over encoder frames (teacher-forced on the hypothesis), and :func:`aggregate` over heads/layers.
- :func:`spes_saliency`: SPES-like perturbation saliency on the input spectrogram. Random masks occlude
  time-frequency patches (``patch_t`` frames x ``patch_f`` mel bands, each occluded with probability
  ``p``); the probability of every generated token under each masked input (teacher-forced, all masks of a
  chunk in one batch) is compared with the clean probability, and a patch's relevance for a token is the
  mean probability drop over the masks that occluded it minus the mean drop over the masks that did not
  (a RISE-style estimator with its baseline removed). ``(U, T, F)``.
- :func:`encoder_saliency`: the same on encoder outputs: occlude encoder frames, ``(U, T')``.
- :func:`compare`: Pearson / Spearman per token between attention (per layer, head, and aggregated) and
  saliency summed over frequency and pooled to the encoder's frame rate; deletion AUC of the input frames
  ranked by attention, by saliency and at random (lower = more faithful).
- :func:`dtw_timestamps`: Whisper-style word timing from cross-attention (normalise per frame, median
  filter along time, DTW over tokens x frames); :func:`ctc_timestamps`: CTC forced alignment
  (``torchaudio.functional.forced_align``); :func:`timestamp_disagreement` in milliseconds.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from polyhead.speech.data.tokenizer import BLANK, SOS_EOS, Tokenizer
from polyhead.speech.models.asr import ASRModel

FRAME_MS = 10.0  # feature hop
SUBSAMPLING = 4


@torch.no_grad()
def token_probs(model: ASRModel, feats: Tensor, lengths: Tensor, tokens: list[int]) -> Tensor:
    """``P(y_u | y_<u, x)`` of ``tokens`` (+ end symbol) for each input in the batch: ``(B, U + 1)``."""
    enc, _, mask = model.encode(feats, lengths)
    return _probs_from_memory(model, enc, mask, tokens)


def _probs_from_memory(model: ASRModel, enc: Tensor, mask: Tensor, tokens: list[int]) -> Tensor:
    B = enc.shape[0]
    ys_in = torch.tensor([SOS_EOS, *tokens], device=enc.device).expand(B, -1)
    target = torch.tensor([*tokens, SOS_EOS], device=enc.device)
    logits, _ = model.decode_step(ys_in, torch.ones_like(ys_in, dtype=torch.bool), enc, mask)
    p = logits.float().softmax(-1)
    return p.gather(-1, target.expand(B, -1)[..., None])[..., 0]


@torch.no_grad()
def cross_attention(model: ASRModel, feats: Tensor, tokens: list[int]) -> Tensor:
    """``(layers, heads, U + 1, T')`` cross-attention of one utterance (``feats (1, T, F)``)."""
    lengths = torch.tensor([feats.shape[1]], device=feats.device)
    enc, _, mask = model.encode(feats, lengths)
    ys = torch.tensor([[SOS_EOS, *tokens]], device=feats.device)
    _, weights = model.decode_step(ys, torch.ones_like(ys, dtype=torch.bool), enc, mask, need_weights=True)
    return torch.stack([w[0] for w in weights if w is not None])  # each (1, H, U + 1, T')


def aggregate(att: Tensor, layers: list[int] | None = None, heads: list[int] | None = None) -> Tensor:
    """Mean over the chosen layers and heads: ``(U, T')``."""
    a = att if layers is None else att[layers]
    a = a if heads is None else a[:, heads]
    return a.mean((0, 1))


@torch.no_grad()
def spes_saliency(
    model: ASRModel,
    feats: Tensor,
    tokens: list[int],
    *,
    n_masks: int = 256,
    patch_t: int = 8,
    patch_f: int = 10,
    p: float = 0.3,
    chunk: int = 64,
    seed: int = 0,
) -> Tensor:
    """Input-spectrogram relevance of every generated token: ``(U + 1, T, F)`` (``feats (1, T, F)``)."""
    g = torch.Generator().manual_seed(seed)
    _, T, F = feats.shape
    nt, nf = -(-T // patch_t), -(-F // patch_f)
    lengths = torch.tensor([T], device=feats.device)
    clean = token_probs(model, feats, lengths, tokens)[0]  # (U + 1,)
    drop_occ = torch.zeros(clean.shape[0], nt, nf, dtype=torch.float64)
    drop_all = torch.zeros(clean.shape[0], dtype=torch.float64)
    occluded = torch.zeros(nt, nf, dtype=torch.float64)
    for start in range(0, n_masks, chunk):
        m = min(chunk, n_masks - start)
        occ = torch.rand(m, nt, nf, generator=g) < p  # True = patch occluded
        full = occ.repeat_interleave(patch_t, 1).repeat_interleave(patch_f, 2)[:, :T, :F].to(feats.device)
        x = feats.expand(m, -1, -1).masked_fill(full, 0.0)  # 0 = the CMVN mean
        probs = token_probs(model, x, lengths.expand(m), tokens)  # (m, U + 1)
        drop = (clean[None] - probs).double().cpu()  # (m, U + 1)
        drop_occ += torch.einsum("mu,mtf->utf", drop, occ.double())
        drop_all += drop.sum(0)
        occluded += occ.double().sum(0)
    rel = _contrast(drop_occ, drop_all, occluded, n_masks)
    return rel.repeat_interleave(patch_t, 1).repeat_interleave(patch_f, 2)[:, :T, :F].float()


@torch.no_grad()
def encoder_saliency(
    model: ASRModel,
    feats: Tensor,
    tokens: list[int],
    *,
    n_masks: int = 256,
    p: float = 0.3,
    chunk: int = 64,
    seed: int = 0,
) -> Tensor:
    """Encoder-output relevance of every generated token: ``(U + 1, T')``, occluding encoder frames."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([feats.shape[1]], device=feats.device)
    enc, _, mask = model.encode(feats, lengths)
    Tp = enc.shape[1]
    clean = _probs_from_memory(model, enc, mask, tokens)[0]
    drop_occ = torch.zeros(clean.shape[0], Tp, dtype=torch.float64)
    drop_all = torch.zeros(clean.shape[0], dtype=torch.float64)
    occluded = torch.zeros(Tp, dtype=torch.float64)
    for start in range(0, n_masks, chunk):
        m = min(chunk, n_masks - start)
        occ = torch.rand(m, Tp, generator=g) < p
        x = enc.expand(m, -1, -1).masked_fill(occ[..., None].to(enc.device), 0.0)
        drop = (clean[None] - _probs_from_memory(model, x, mask.expand(m, -1), tokens)).double().cpu()
        drop_occ += torch.einsum("mu,mt->ut", drop, occ.double())
        drop_all += drop.sum(0)
        occluded += occ.double().sum(0)
    return _contrast(drop_occ, drop_all, occluded, n_masks).float()


def _contrast(drop_occ: Tensor, drop_all: Tensor, occluded: Tensor, n: int) -> Tensor:
    """Mean drop when a unit is occluded minus mean drop when it is not: ``(U, *units)``."""
    extra = (1,) * occluded.dim()
    kept = (n - occluded).clamp(min=1)
    mean_occ = drop_occ / occluded.clamp(min=1)[None]
    mean_kept = (drop_all.view(-1, *extra) - drop_occ) / kept[None]
    return mean_occ - mean_kept


def pool_to_encoder(sal: Tensor, enc_frames: int) -> Tensor:
    """``(U, T, F)`` input relevance -> ``(U, T')``: sum over frequency, mean over each encoder frame's 4 inputs."""
    per_frame = sal.sum(-1)  # (U, T)
    U, T = per_frame.shape
    need = enc_frames * SUBSAMPLING
    per_frame = torch.nn.functional.pad(per_frame, (0, max(0, need - T)))[:, :need]
    return per_frame.view(U, enc_frames, SUBSAMPLING).mean(-1)


def compare(
    att: Tensor, sal: Tensor, *, layers: list[int] | None = None, heads: list[int] | None = None
) -> dict:
    """Correlations of attention ``(layers, heads, U, T')`` with saliency ``(U, T')`` (per token, then mean).

    Returns ``{"per_layer_head": [[{pearson, spearman}]], "per_layer": [...], "aggregated": {...}}`` and,
    when ``layers`` or ``heads`` is given, ``"subset"``: the mean over those layers and heads only. The
    end-of-sentence row is excluded.
    """
    # imported here: polyhead.attention.analysis loads matplotlib, which `transcribe` (timestamps only) skips
    from polyhead.attention.analysis.saliency import pearson, spearman

    att, sal = att[:, :, :-1].double(), sal[:-1].double()

    def stats(a: Tensor) -> dict:
        pr, sr = pearson(a, sal), spearman(a, sal)
        return {"pearson": float(pr.nanmean()), "spearman": float(sr.nanmean())}

    L, H = att.shape[:2]
    out = {
        "per_layer_head": [[stats(att[i, h]) for h in range(H)] for i in range(L)],
        "per_layer": [stats(att[i].mean(0)) for i in range(L)],
        "aggregated": stats(att.mean((0, 1))),
    }
    if layers is not None or heads is not None:
        out["subset"] = stats(aggregate(att, layers, heads))
    return out


@torch.no_grad()
def deletion_aucs(
    model: ASRModel,
    feats: Tensor,
    tokens: list[int],
    rankings: dict[str, Tensor],
    *,
    steps: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """Deletion AUC of input frames ranked by each relevance ``(T,)``; the score is the mean token probability."""
    from polyhead.attention.analysis.saliency import deletion_auc, deletion_curve

    T = feats.shape[1]
    lengths = torch.tensor([T], device=feats.device)

    def score(keep: Tensor) -> Tensor:
        x = feats.expand(keep.shape[0], -1, -1) * keep[..., None].to(feats.dtype).to(feats.device)
        return token_probs(model, x, lengths.expand(keep.shape[0]), tokens).mean(-1).cpu()

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, rel in {**rankings, "random": torch.rand(T, generator=g)}.items():
        fr, sc = deletion_curve(rel[None].float().cpu(), score, steps=steps)
        out[name] = float(deletion_auc(fr, sc)[0])
    return out


# ---- timestamps -------------------------------------------------------------------------------------------


def _median_filter(x: Tensor, width: int) -> Tensor:
    if width <= 1:
        return x
    pad = width // 2
    xp = torch.nn.functional.pad(x[None], (pad, pad), mode="reflect")[0]
    return xp.unfold(-1, width, 1).median(-1).values


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """Monotonic alignment of rows (tokens) to columns (frames) minimising the summed cost.

    The accumulated cost is filled one anti-diagonal at a time (cell ``(i, j)`` depends only on the two
    previous diagonals), so the work is vectorised over each diagonal: ``n + m`` NumPy steps instead of
    ``n * m`` Python iterations. Ties prefer the diagonal move, then the token (row) move.
    """
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0
    for d in range(2, n + m + 1):  # i + j = d over the padded grid, 1 <= i <= n, 1 <= j <= m
        ii = np.arange(max(1, d - m), min(n, d - 1) + 1)
        jj = d - ii
        best = np.minimum(np.minimum(acc[ii - 1, jj - 1], acc[ii - 1, jj]), acc[ii, jj - 1])
        acc[ii, jj] = cost[ii - 1, jj - 1] + best
    path, i, j = [], n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]]))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def _words(tokenizer: Tokenizer, tokens: list[int], start: list[float], end: list[float]) -> list[dict]:
    """Group token times into words (a char tokenizer's ``|`` or a BPE piece starting with ``▁``)."""
    words, cur, t0, t1 = [], "", 0.0, 0.0
    for tok, s, e in zip(tokens, start, end):
        piece = tokenizer.pieces[tok - 3] if tok >= 3 else ""
        boundary = piece == "|" or piece.startswith("\u2581")
        if boundary and cur:
            words.append({"word": cur, "start": round(t0, 3), "end": round(t1, 3)})
            cur = ""
        text = piece.lstrip("\u2581") if piece != "|" else ""
        if text:
            t0 = s if not cur else t0  # the word starts at its first piece with text
            cur += text
            t1 = e
    if cur:
        words.append({"word": cur, "start": round(t0, 3), "end": round(t1, 3)})
    return words


def dtw_timestamps(
    att: Tensor, tokens: list[int], tokenizer: Tokenizer, *, filter_width: int = 7
) -> list[dict]:
    """Word times (seconds) from cross-attention ``(U + 1, T')`` (end row dropped) by DTW over -attention."""
    a = att[:-1].double()
    a = (a - a.mean(0, keepdim=True)) / (a.std(0, keepdim=True) + 1e-8)  # normalise each frame over tokens
    a = _median_filter(a, filter_width)
    path = dtw_path((-a).numpy())
    frame_s = FRAME_MS * SUBSAMPLING / 1000
    start = [float("inf")] * len(tokens)
    end = [0.0] * len(tokens)
    for u, t in path:
        start[u] = min(start[u], t * frame_s)
        end[u] = max(end[u], (t + 1) * frame_s)
    return _words(tokenizer, tokens, start, end)


def ctc_timestamps(log_probs: Tensor, tokens: list[int], tokenizer: Tokenizer) -> list[dict]:
    """Word times (seconds) from CTC forced alignment of ``tokens`` to ``log_probs (T', V)``.

    Returns ``[]`` when there is nothing to align or when CTC cannot emit ``tokens`` in ``T'`` frames
    (each token takes a frame, each repeated neighbour one blank more): an attention hypothesis can be
    that long (e.g. a decoder that loops), and it should not stop the transcription.
    """
    import torchaudio.functional as AF

    repeats = sum(a == b for a, b in itertools.pairwise(tokens))
    if not tokens or len(tokens) + repeats > log_probs.shape[0]:
        return []
    ali, scores = AF.forced_align(
        log_probs[None].float().cpu(), torch.tensor([tokens], dtype=torch.int32), blank=BLANK
    )
    spans = AF.merge_tokens(ali[0], scores[0].exp(), blank=BLANK)  # one span per target token
    frame_s = FRAME_MS * SUBSAMPLING / 1000
    return _words(tokenizer, tokens, [sp.start * frame_s for sp in spans], [sp.end * frame_s for sp in spans])


def timestamp_disagreement(a: list[dict], b: list[dict]) -> float | None:
    """Mean absolute difference (ms) of word start and end times when both give the same words."""
    if len(a) != len(b) or not a:
        return None
    diffs = [abs(x["start"] - y["start"]) + abs(x["end"] - y["end"]) for x, y in zip(a, b)]
    return 1000 * float(np.mean(diffs)) / 2
