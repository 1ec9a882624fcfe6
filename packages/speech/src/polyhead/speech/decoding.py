"""Decoders: greedy CTC, CTC beam search (torchaudio / flashlight-text), attention beam search with length
normalisation, and joint CTC/attention rescoring of the attention n-best list.

- :func:`greedy_ctc`: best path, repeats merged, blanks removed.
- :func:`ctc_beam_search`: ``torchaudio.models.decoder.ctc_decoder`` without lexicon or LM.
- :func:`attention_beam_search`: the decoder's beam search for one utterance (all beams in one batch per
  step), scores ``log P(y) / |y|^length_penalty``.
- :func:`joint_rescore`: ``ctc_weight * log P_ctc(y | x) + (1 - ctc_weight) * log P_att(y | x)`` over the
  n-best (Watanabe et al. 2017), each normalised by length, best first. :func:`joint_decode` rescores the
  union of the attention n-best and the CTC beam's best hypothesis (scored by the decoder with
  :func:`attention_logp`), so that a weak decoder cannot make joint decoding worse than CTC alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from polyhead.speech.data.tokenizer import BLANK, SOS_EOS, SPECIALS, Tokenizer


def greedy_ctc(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    best = log_probs.argmax(-1)  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != BLANK
    keep &= torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None]
    return [best[b][keep[b]].tolist() for b in range(best.shape[0])]


def ctc_beam_search(
    log_probs: Tensor, lengths: Tensor, tokenizer: Tokenizer, beam_size: int = 8
) -> list[list[int]]:
    """Lexicon-free CTC beam search with torchaudio's flashlight-text decoder."""
    from torchaudio.models.decoder import ctc_decoder

    tokens = [*SPECIALS, *tokenizer.pieces]
    sil = "|" if "|" in tokens else SPECIALS[SOS_EOS]
    dec = ctc_decoder(lexicon=None, tokens=tokens, lm=None, nbest=1, beam_size=beam_size,
                      blank_token=SPECIALS[BLANK], sil_token=sil, unk_word=SPECIALS[2])  # fmt: skip
    hyps = dec(log_probs.float().cpu().contiguous(), lengths.cpu().to(torch.int32))
    out = []
    for h in hyps:
        ids = h[0].tokens.tolist() if h else []
        out.append([i for i in ids if i != BLANK and not (sil == SPECIALS[SOS_EOS] and i == SOS_EOS)])
    # flashlight keeps the silence token at the edges; strip a leading/trailing word separator
    if sil == "|":
        bar = tokens.index("|")
        out = [h[1:] if h and h[0] == bar else h for h in out]
        out = [h[:-1] if h and h[-1] == bar else h for h in out]
    return out


@dataclass
class Hypothesis:
    tokens: list[int]
    att_logp: float
    score: float
    ctc_logp: float | None = None


@torch.no_grad()
def attention_beam_search(
    model,
    memory: Tensor,
    mem_mask: Tensor,
    *,
    beam_size: int = 8,
    max_len: int = 200,
    length_penalty: float = 1.0,
) -> list[Hypothesis]:
    """Beam search of the attention decoder for one utterance (``memory (1, T, d)``); n-best, best first.

    Models with ``supports_incremental()`` decode one position per step with a cache (the same scores as
    re-running the whole prefix, which is the fallback, at a fraction of the cost).
    """
    dev = memory.device
    incremental = bool(getattr(model, "supports_incremental", lambda: False)())
    cache = None
    beams = [([SOS_EOS], 0.0)]
    finished: list[Hypothesis] = []
    for _ in range(max_len):
        n = len(beams)
        mem, mm = memory.expand(n, -1, -1), mem_mask.expand(n, -1)
        if incremental:
            last = torch.tensor([b[0][-1] for b in beams], device=dev)  # (n,)
            logits, cache = model.decode_next(last, mem, mm, cache)  # (n, V)
        else:
            ys = torch.tensor([b[0] for b in beams], device=dev)  # (n, U)
            logits = model.decode_step(ys, torch.ones_like(ys, dtype=torch.bool), mem, mm)[0][:, -1]
        logp = logits.float().log_softmax(-1)  # (n, V)
        logp[:, BLANK] = float("-inf")
        total = torch.tensor([b[1] for b in beams], device=dev)[:, None] + logp
        top = total.flatten().topk(min(beam_size, total.numel()))
        new, src = [], []
        for s, idx in zip(top.values.tolist(), top.indices.tolist()):
            b, tok = divmod(idx, logp.shape[1])
            seq = beams[b][0]
            if tok == SOS_EOS:
                L = len(seq)  # tokens + eos
                finished.append(Hypothesis(seq[1:], s, s / L**length_penalty))
            else:
                new.append((seq + [tok], s))
                src.append(b)
        beams = new
        if incremental and beams and cache is not None:
            keep = torch.tensor(src, device=dev)
            cache = [c.index_select(0, keep) for c in cache]
        if not beams or (
            len(finished) >= beam_size
            and max(h.score for h in finished) > max(b[1] / (len(b[0])) ** length_penalty for b in beams)
        ):
            break
    if not finished:
        finished = [Hypothesis(b[0][1:], b[1], b[1] / max(len(b[0]), 1) ** length_penalty) for b in beams]
    return sorted(finished, key=lambda h: h.score, reverse=True)[:beam_size]


def ctc_sequence_logp(log_probs: Tensor, length: int, hyps: list[list[int]]) -> list[float]:
    """``log P_ctc(y | x)`` of each hypothesis for one utterance (``log_probs (T, V)``), via the CTC loss."""
    if not hyps:
        return []
    n = len(hyps)
    lp = log_probs[:length, None, :].expand(length, n, -1).float()
    tgt = torch.cat([torch.tensor(h if h else [BLANK], dtype=torch.long) for h in hyps]).to(lp.device)
    tl = torch.tensor([max(len(h), 1) for h in hyps], device=lp.device)
    nll = torch.nn.functional.ctc_loss(lp, tgt, torch.full((n,), length, device=lp.device), tl,
                                       blank=BLANK, reduction="none", zero_infinity=False)  # fmt: skip
    return (-nll).tolist()


def joint_rescore(
    hyps: list[Hypothesis], log_probs: Tensor, length: int, *, ctc_weight: float = 0.3
) -> list[Hypothesis]:
    """Re-rank an attention n-best by the length-normalised joint CTC/attention score."""
    ctc = ctc_sequence_logp(log_probs, length, [h.tokens for h in hyps])
    for h, c in zip(hyps, ctc):
        h.ctc_logp = c
        n = len(h.tokens) + 1
        h.score = (ctc_weight * c + (1 - ctc_weight) * h.att_logp) / n
    return sorted(hyps, key=lambda h: h.score, reverse=True)


@torch.no_grad()
def attention_logp(model, memory: Tensor, mem_mask: Tensor, hyps: list[list[int]]) -> list[float]:
    """``log P_att(y <eos> | x)`` of each hypothesis, teacher-forced in one batch (``memory (1, T, d)``)."""
    if not hyps:
        return []
    dev = memory.device
    n, U = len(hyps), max(len(h) for h in hyps) + 1
    ys_in = torch.full((n, U), SOS_EOS, dtype=torch.long, device=dev)
    ys_out = torch.full((n, U), -1, dtype=torch.long, device=dev)
    for i, h in enumerate(hyps):
        ys_in[i, 1 : len(h) + 1] = torch.tensor(h, dtype=torch.long)
        ys_out[i, : len(h) + 1] = torch.tensor([*h, SOS_EOS], dtype=torch.long)
    logits, _ = model.decode_step(ys_in, ys_out >= 0, memory.expand(n, -1, -1), mem_mask.expand(n, -1))
    lp = logits.float().log_softmax(-1).gather(-1, ys_out.clamp(min=0)[..., None])[..., 0]
    return (lp * (ys_out >= 0)).sum(-1).tolist()


def joint_decode(
    model, memory: Tensor, mem_mask: Tensor, log_probs: Tensor, length: int, tokenizer: Tokenizer, *,
    beam_size: int = 8, ctc_weight: float = 0.3, length_penalty: float = 1.0,
) -> list[Hypothesis]:  # fmt: skip
    """Joint CTC/attention rescoring of the attention n-best plus the CTC beam's best hypothesis."""
    hyps = attention_beam_search(model, memory, mem_mask, beam_size=beam_size, max_len=max(8, length),
                                 length_penalty=length_penalty)  # fmt: skip
    ctc_best = ctc_beam_search(log_probs[None, :length], torch.tensor([length]), tokenizer, beam_size)[0]
    if all(h.tokens != ctc_best for h in hyps):
        att = attention_logp(model, memory, mem_mask, [ctc_best])[0]
        hyps.append(Hypothesis(ctc_best, att, att / (len(ctc_best) + 1) ** length_penalty))
    return joint_rescore(hyps, log_probs, length, ctc_weight=ctc_weight)
