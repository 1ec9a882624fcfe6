"""The MoH load-balance loss reaches speech training from every attention module (encoder self-attention,
decoder self- and cross-attention) through the one shared helper, polyhead.attention.blocks.aux_loss."""

from __future__ import annotations

import torch

from polyhead.attention.base import AttentionBase
from polyhead.attention.blocks import aux_loss
from polyhead.speech.data.dataset import Batch
from polyhead.speech.data.features import Fbank
from polyhead.speech.data.tokenizer import CharTokenizer
from polyhead.speech.models import ASRModel, joint_loss
from polyhead.speech.module import SpeechModule
from polyhead.speech.run_settings import SpeechSettings


def _batch(tok: CharTokenizer, g: torch.Generator) -> Batch:
    feats = torch.randn(3, 120, 80, generator=g)
    targets = [tok.encode(t) for t in ("one two", "three", "nine eight seven")]
    return Batch(feats, torch.tensor([120, 100, 90]), targets, [0, 1, 2])


def test_helper_collects_every_attention_module_once() -> None:
    torch.manual_seed(0)
    moh = {"name": "moh", "aux_loss_weight": 0.5}
    net = ASRModel(
        30, d_model=32, encoder_layers=2, decoder_layers=2, heads=4, attention=moh, decoder_attention=moh
    )
    seen: list[torch.Tensor] = []
    for m in net.modules():
        if isinstance(m, AttentionBase):
            m.register_forward_hook(lambda mod, args, out: seen.append(out.aux_loss))
    net(torch.randn(2, 100, 80), torch.tensor([100, 80]), [[3, 4, 5], [6, 7]])
    assert len(seen) == 2 + 2 * 2 and all(
        a is not None and a > 0 for a in seen
    )  # 2 encoder + 2 x (self, cross)
    torch.testing.assert_close(aux_loss(net), torch.stack(seen).sum())
    assert aux_loss(net) is None  # consumed: a module that does not run again is not counted twice
    plain = ASRModel(30, d_model=32, encoder_layers=1, decoder_layers=1, heads=4)
    plain(torch.randn(1, 60, 80), torch.tensor([60]), [[3]])
    assert aux_loss(plain) is None


def test_training_step_adds_the_aux_loss() -> None:
    g = torch.Generator().manual_seed(0)
    tok = CharTokenizer.train(["one two three"])
    settings = SpeechSettings(tok, Fbank().config())
    losses = {}
    for name in ("mha", "moh"):
        torch.manual_seed(0)
        cfg = {"name": name} if name == "mha" else {"name": "moh", "aux_loss_weight": 1.0}
        module = SpeechModule(d_model=32, encoder_layers=1, decoder_layers=1, heads=4, dropout=0.0,
                              attention=cfg if name == "moh" else None, decoder_attention=cfg, spec_augment=False)  # fmt: skip
        module.build(settings)
        batch = _batch(tok, g)
        loss = module.training_step(batch, 0)
        # the same forward again by hand (train mode: BatchNorm on batch statistics, as in the step)
        torch.manual_seed(0)
        out = module.net(batch.feats, batch.lengths, batch.targets)
        base, _ = joint_loss(out, batch.targets, ctc_weight=module.hparams.ctc_weight,
                             label_smoothing=module.hparams.label_smoothing)  # fmt: skip
        extra = aux_loss(module.net)
        losses[name] = (float(loss), float(base), None if extra is None else float(extra))
    assert losses["mha"][2] is None and abs(losses["mha"][0] - losses["mha"][1]) < 1e-5
    loss, base, extra = losses["moh"]
    assert extra > 0.05 and abs(loss - (base + extra)) < 1e-4  # 3 MoH modules, weight 1
