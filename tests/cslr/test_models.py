"""CSLR models: shapes and lengths, CTC too-short detection, overfitting a handful of sequences."""

from __future__ import annotations

import pytest
import torch

from polyhead.cslr.decoding import greedy_decode
from polyhead.cslr.losses import TooShortInputError, ctc_loss, ctc_min_frames
from polyhead.cslr.models import MultiScaleFusionTransformer, SignerInvariantConformer, TransformerCTC

IN_DIM, VOCAB = 86 * 2, 7


@pytest.mark.parametrize(
    ("make", "factor"),
    [
        (lambda: SignerInvariantConformer(IN_DIM, VOCAB, d_model=32, layers=2, heads=4), 8),
        (lambda: MultiScaleFusionTransformer(IN_DIM, VOCAB, d_model=32, layers=2, heads=4), 2),
        (lambda: TransformerCTC(IN_DIM, VOCAB, d_model=32, layers=2, heads=4, attention={"name": "moh"}), 1),
    ],
)
def test_shapes_and_lengths(make, factor: int) -> None:
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 64, IN_DIM)
    lengths = torch.tensor([64, 40])
    lp, out_len = model(x, lengths)
    assert lp.shape == (2, -(-64 // factor), VOCAB) and lp.dtype == torch.float32
    assert out_len.tolist() == [-(-64 // factor), -(-40 // factor)]
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(lp.shape[:2]))
    # Padding does not change the valid outputs of the shorter sequence.
    x2 = x.clone()
    x2[1, 40:] = torch.randn(24, IN_DIM) * 5
    if factor == 1:
        torch.testing.assert_close(model(x2, lengths)[0][1, :40], lp[1, :40], atol=1e-5, rtol=0)


def test_ctc_too_short_is_reported_not_nan() -> None:
    assert ctc_min_frames([[1, 1, 2], [1, 2, 3]]) == [4, 3]
    lp = torch.log_softmax(torch.randn(2, 5, VOCAB), -1)
    with pytest.raises(TooShortInputError, match=r"clip_b \(3 frames < 4 needed\)"):
        ctc_loss(lp, torch.tensor([5, 3]), [[1, 2], [1, 1, 2]], ids=["clip_a", "clip_b"])
    loss, skipped = ctc_loss(lp, torch.tensor([5, 3]), [[1, 2], [1, 1, 2]], skip_short=True)
    assert skipped == [1] and torch.isfinite(loss)


def test_overfit_a_handful_of_sequences() -> None:
    torch.manual_seed(0)
    targets = [[1, 2, 3], [4, 5], [2, 2, 6], [3, 1]]
    x = torch.randn(4, 24, IN_DIM)
    lengths = torch.full((4,), 24)
    model = TransformerCTC(IN_DIM, VOCAB, d_model=32, layers=2, heads=4, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        lp, out_len = model(x, lengths)
        loss, _ = ctc_loss(lp, out_len, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    lp, out_len = model(x, lengths)
    assert greedy_decode(lp, out_len) == targets


def test_moh_aux_loss_reaches_the_training_loss() -> None:
    from polyhead.cslr.models.blocks import aux_loss

    torch.manual_seed(0)
    x, lengths = torch.randn(2, 32, IN_DIM), torch.tensor([32, 20])
    plain = SignerInvariantConformer(IN_DIM, VOCAB, d_model=32, layers=2, heads=4)
    plain(x, lengths)
    assert aux_loss(plain) is None
    moh = SignerInvariantConformer(IN_DIM, VOCAB, d_model=32, layers=2, heads=4, attention={"name": "moh"})
    moh(x, lengths)
    aux = aux_loss(moh)
    assert aux is not None and aux.ndim == 0 and aux.requires_grad
    torch.testing.assert_close(aux, moh.blocks[0].aux_loss + moh.blocks[1].aux_loss)
    aux.backward()
    router = [p for n, p in moh.named_parameters() if "blocks.0.attn" in n and p.grad is not None]
    assert router and any(p.grad.abs().sum() > 0 for p in router)
