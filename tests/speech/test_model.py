"""The joint CTC/attention loss, and every decoder on a tiny model overfitted to a few sample utterances."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyhead.speech.data.audio import load_audio
from polyhead.speech.data.features import Fbank
from polyhead.speech.data.manifest import read_manifest
from polyhead.speech.data.tokenizer import CharTokenizer
from polyhead.speech.decoding import (
    attention_beam_search,
    attention_logp,
    ctc_beam_search,
    ctc_sequence_logp,
    greedy_ctc,
    joint_decode,
    joint_rescore,
)
from polyhead.speech.models import ASRModel, joint_loss

SAMPLE = Path(__file__).parents[2] / "shared" / "speech"


def _batch(n: int):
    utts = sorted(read_manifest(SAMPLE / "train.jsonl"), key=lambda u: u.duration)[:n]
    tok = CharTokenizer.train(u.text for u in utts)
    fb = Fbank()
    feats = [fb(load_audio(u.audio_filepath)) for u in utts]
    lengths = torch.tensor([f.shape[0] for f in feats])
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    return x, lengths, [tok.encode(u.text) for u in utts], [u.text for u in utts], tok


def test_joint_loss_is_the_weighted_sum() -> None:
    torch.manual_seed(0)
    x, lengths, targets, _, tok = _batch(2)
    model = ASRModel(len(tok), d_model=32, encoder_layers=1, decoder_layers=1, heads=4, dropout=0.0)
    out = model(x, lengths, targets)
    loss, parts = joint_loss(out, targets, ctc_weight=0.3, label_smoothing=0.0)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, 0.3 * parts["ctc"] + 0.7 * parts["att"])
    # CE part equals the plain per-token cross entropy of the teacher-forced decoder
    logits, ys = out["logits"], out["ys_out"]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), ys.reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(parts["att"], ce.detach())
    # CTC part: per utterance, normalised by target length
    lp = out["ctc_log_probs"]
    manual = torch.stack([
        torch.nn.functional.ctc_loss(lp[b, : out["enc_lengths"][b], None].transpose(0, 1).transpose(0, 1),
                                     torch.tensor([targets[b]]), out["enc_lengths"][b : b + 1],
                                     torch.tensor([len(targets[b])]), reduction="sum") / len(targets[b])
        for b in range(2)
    ]).mean()  # fmt: skip
    torch.testing.assert_close(parts["ctc"], manual.detach(), rtol=1e-4, atol=1e-4)


def _decode_all(model, x, lengths, tok) -> dict[str, list[str]]:
    model.eval()
    with torch.no_grad():
        enc, enc_len, mask = model.encode(x, lengths)
        lp = model.ctc_log_probs(enc)
        out = {
            "greedy": [tok.decode(h) for h in greedy_ctc(lp, enc_len)],
            "ctc_beam": [tok.decode(h) for h in ctc_beam_search(lp, enc_len, tok, beam_size=4)],
            "attention": [],
            "joint": [],
            "joint_union": [],
        }
        for b in range(x.shape[0]):
            n = int(enc_len[b])
            hyps = attention_beam_search(
                model, enc[b : b + 1, :n], mask[b : b + 1, :n], beam_size=4, max_len=60
            )
            out["attention"].append(tok.decode(hyps[0].tokens))
            out["joint"].append(tok.decode(joint_rescore(hyps, lp[b], n, ctc_weight=0.3)[0].tokens))
            best = joint_decode(model, enc[b : b + 1, :n], mask[b : b + 1, :n], lp[b], n, tok, beam_size=4)[0]
            out["joint_union"].append(tok.decode(best.tokens))
    model.train()
    return out


@pytest.mark.slow
def test_decoders_recover_overfitted_transcripts() -> None:
    torch.manual_seed(0)
    x, lengths, targets, texts, tok = _batch(2)
    model = ASRModel(len(tok), d_model=96, encoder_layers=2, decoder_layers=1, heads=4, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(1000):
        loss, _ = joint_loss(model(x, lengths, targets), targets, ctc_weight=0.5, label_smoothing=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (
            step % 25 == 24
            and loss.item() < 0.1
            and all(v == texts for v in _decode_all(model, x, lengths, tok).values())
        ):
            break
    decoded = _decode_all(model, x, lengths, tok)
    assert decoded == {k: texts for k in decoded}, f"after {step + 1} steps"
    with torch.no_grad():
        enc, enc_len, mask = model.eval().encode(x, lengths)
        lp = model.ctc_log_probs(enc)
        n = int(enc_len[0])
        hyps = attention_beam_search(model, enc[:1, :n], mask[:1, :n], beam_size=4, max_len=60)
        best = joint_rescore(hyps, lp[0], n, ctc_weight=0.3)[0]
    assert best.ctc_logp == pytest.approx(ctc_sequence_logp(lp[0], n, [targets[0]])[0], rel=1e-5)
    # the decoder's teacher-forced score of a hypothesis equals the beam search's accumulated score
    assert attention_logp(model, enc[:1, :n], mask[:1, :n], [hyps[0].tokens])[0] == pytest.approx(
        hyps[0].att_logp, abs=1e-4
    )


def test_incremental_decoding_equals_the_full_prefix_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(1)
    model = ASRModel(12, d_model=32, encoder_layers=1, decoder_layers=2, heads=4, dropout=0.0).double().eval()
    for p in model.parameters():  # sharper than the default init, so that beams differ
        p.data.normal_(0, 0.3, generator=g)
    memory = torch.randn(3, 17, 32, generator=g, dtype=torch.float64)
    mem_mask = torch.arange(17)[None, :] < torch.tensor([[17], [11], [5]])
    ys = torch.randint(2, 12, (3, 9), generator=g)
    with torch.no_grad():
        full, _ = model.decode_step(ys, torch.ones_like(ys, dtype=torch.bool), memory, mem_mask)  # (3, 9, V)
        cache, steps = None, []
        for t in range(ys.shape[1]):
            logits, cache = model.decode_next(ys[:, t], memory, mem_mask, cache)
            steps.append(logits)
    assert model.supports_incremental() and cache[0].shape == (3, 9, 32)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-10)

    args = (model, memory[1:2], mem_mask[1:2])
    fast = attention_beam_search(*args, beam_size=4, max_len=12)
    monkeypatch.setattr(ASRModel, "supports_incremental", lambda self: False)
    slow = attention_beam_search(*args, beam_size=4, max_len=12)
    assert [h.tokens for h in fast] == [h.tokens for h in slow] and len({tuple(h.tokens) for h in fast}) > 1
    assert [h.att_logp for h in fast] == pytest.approx([h.att_logp for h in slow], abs=1e-9)
