"""polyhead.attention.analysis: capture, ablation, importance, statistics, saliency agreement, plots."""

from __future__ import annotations

import math

import matplotlib.figure
import pytest
import torch
from torch import nn

from polyhead.attention import create_attention
from polyhead.attention.analysis import (
    ablate_heads,
    attention_distance,
    attention_entropy,
    capture_attention,
    deletion_auc,
    deletion_curve,
    head_importance,
    mask_heads,
    pearson,
    plot_attention_heads,
    plot_head_importance,
    plot_pruning_sweep,
    pruning_sweep,
    rankdata,
    retrieval_score,
    spearman,
    unmask_heads,
)


class TinyTransformer(nn.Module):
    """2-layer pre-norm transformer encoder over token sequences, built from polyhead attention."""

    def __init__(self, vocab: int, length: int, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.5)
        self.attn = nn.ModuleList(create_attention("mha", dim=dim, num_heads=heads) for _ in range(layers))
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for _ in range(layers)
        )
        self.out = nn.Linear(dim, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x) + self.pos
        for attn, n1, n2, mlp in zip(self.attn, self.norm1, self.norm2, self.mlp):
            h = h + attn(n1(h)).output
            h = h + mlp(n2(h))
        return self.out(h)


def _reverse_batch(g: torch.Generator, n: int, length: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, vocab, (n, length), generator=g)
    return x, x.flip(1)


@pytest.fixture(scope="module")
def trained_reverser() -> tuple[TinyTransformer, tuple[torch.Tensor, torch.Tensor]]:
    """A 2-layer transformer trained to reverse sequences (each output copies one mirrored input)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    vocab, length = 12, 8
    model = TinyTransformer(vocab, length)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        x, y = _reverse_batch(g, 64, length, vocab)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.zero_grad(set_to_none=True)
    return model, _reverse_batch(g, 512, length, vocab)


def _accuracy(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = data
    with torch.no_grad():
        return (model(x).argmax(-1) == y).double().mean().item()


def _loss(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    x, y = data
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()


def test_most_important_head_matters_more_than_others(trained_reverser) -> None:
    model, data = trained_reverser
    base = _accuracy(model, data)
    assert base > 0.9, f"the copy task did not train (accuracy {base:.3f})"
    x, y = data
    batches = [(x[i : i + 128], y[i : i + 128]) for i in range(0, 512, 128)]

    def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.cross_entropy(m(batch[0]).flatten(0, 1), batch[1].flatten())

    imp = head_importance(model, batches, loss_fn)
    assert set(imp) == {"attn.0", "attn.1"} and all(v.shape == (4,) for v in imp.values())
    assert all(p.grad is None for p in model.parameters())  # parameters untouched
    flat = [(float(s), n, h) for n, v in imp.items() for h, s in enumerate(v)]
    _, top_name, top_head = max(flat)
    # The metric is the test loss (accuracy saturates: single heads are partly redundant here).
    with ablate_heads(model, {top_name: [top_head]}):
        loss_top = _loss(model, data)
    others = []
    for _, n, h in flat:
        if (n, h) != (top_name, top_head):
            with ablate_heads(model, {n: [h]}):
                others.append(_loss(model, data))
    median_other = sorted(others)[len(others) // 2]
    print(
        f"loss: base {_loss(model, data):.5f}, top head ablated {loss_top:.5f}, median other head {median_other:.5f}"
    )
    assert loss_top > median_other > _loss(model, data), (loss_top, median_other)
    assert _accuracy(model, data) == base  # the context manager restored every head

    rows = pruning_sweep(model, imp, lambda m: _accuracy(m, data), fractions=(0.0, 0.25, 0.5))
    assert rows[0]["by_importance"] == rows[0]["random"] == base
    assert [r["heads_removed"] for r in rows] == [0, 2, 4]
    assert isinstance(plot_pruning_sweep(rows, metric="accuracy"), matplotlib.figure.Figure)
    assert isinstance(plot_head_importance(imp), matplotlib.figure.Figure)


def test_capture_shapes_names_and_restore(trained_reverser) -> None:
    model, (x, _) = trained_reverser
    with capture_attention(model) as maps:
        model(x[:5])
        model(x[:3])
    assert set(maps) == {"attn.0", "attn.1"}
    assert [tuple(w.shape) for w in maps["attn.1"]] == [(5, 4, 8, 8), (3, 4, 8, 8)]
    torch.testing.assert_close(maps["attn.0"][0].sum(-1), torch.ones(5, 4, 8))
    assert all(m._capture_sink is None for m in model.attn)
    with capture_attention(model, ["attn.1"]) as maps:
        model(x[:2])
    assert list(maps) == ["attn.1"]
    with (
        pytest.raises(ValueError, match="no polyhead attention module named"),
        capture_attention(model, ["nope"]),
    ):
        pass
    with pytest.raises(RuntimeError), capture_attention(model):
        raise RuntimeError("body failed")
    assert all(m._capture_sink is None for m in model.attn)  # restored on exceptions too
    fig = plot_attention_heads(maps["attn.1"][0][0], title="t")
    assert len([a for a in fig.axes if a.get_title().startswith("head")]) == 4


def test_mask_heads_zeroes_head_output() -> None:
    torch.manual_seed(1)
    attn = create_attention("mha", dim=16, num_heads=4).double()
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    mask_heads(attn, {"": [1, 3]})
    out = attn(x).output
    # Reference: per-head outputs with heads 1 and 3 zeroed, then the output projection.
    q = attn.q_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    k = attn.k_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    v = attn.v_proj(x).view(2, 6, 4, 4).transpose(1, 2)
    o = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v
    o[:, [1, 3]] = 0
    torch.testing.assert_close(out, attn.out_proj(o.transpose(1, 2).reshape(2, 6, 16)))
    unmask_heads(attn)
    assert attn.head_gate is None
    with pytest.raises(ValueError, match="out of range"):
        mask_heads(attn, {"": [4]})


def test_entropy_and_distance_known_cases() -> None:
    B, H, L = 2, 3, 7
    uniform = torch.full((B, H, L, L), 1.0 / L)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((H,), math.log(L)))
    eye = torch.eye(L).expand(B, H, L, L)
    torch.testing.assert_close(attention_entropy(eye), torch.zeros(H))
    torch.testing.assert_close(attention_distance(eye), torch.zeros(H))
    prev = torch.zeros(B, H, L, L)
    prev[..., torch.arange(1, L), torch.arange(L - 1)] = 1.0  # each query looks one back (row 0 empty)
    torch.testing.assert_close(attention_distance(prev), torch.ones(H))
    # On a 3 x 3 grid every query attending to the centre: corners are sqrt(2) away, edges 1, centre 0.
    centre = torch.zeros(1, 1, 9, 9)
    centre[..., 4] = 1.0
    torch.testing.assert_close(attention_distance(centre, (3, 3)), torch.tensor([(4 * math.sqrt(2) + 4) / 9]))


def test_retrieval_score() -> None:
    B, H, L, S = 2, 3, 5, 10
    src = torch.randint(0, S, (B, L), generator=torch.Generator().manual_seed(0))
    w = torch.rand(B, H, L, S)
    w = w / w.sum(-1, keepdim=True)
    w[:, 0] = nn.functional.one_hot(src, S).float()  # head 0 always looks at the copied source
    w[:, 1] = nn.functional.one_hot((src + 1) % S, S).float()  # head 1 never does
    score = retrieval_score(w, src)
    assert score[0] == 1.0 and score[1] == 0.0
    copy = torch.zeros(B, L, dtype=torch.bool)
    copy[:, :2] = True
    assert retrieval_score(w, src, copy)[0] == 1.0


def test_pearson_spearman_against_scipy_definitions() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(4, 50, generator=g)
    b = a + 0.5 * torch.randn(4, 50, generator=g)
    r = pearson(a, b)
    ref = torch.stack([torch.corrcoef(torch.stack([a[i], b[i]]).double())[0, 1] for i in range(4)])
    torch.testing.assert_close(r, ref)
    # Spearman is invariant to monotone transforms and equals 1 for any increasing map.
    torch.testing.assert_close(spearman(a, torch.exp(3 * a)), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(spearman(a, b), spearman(torch.exp(a), b**3))
    # Ties get average ranks.
    torch.testing.assert_close(
        rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])), torch.tensor([3.5, 1.0, 3.5, 2.0], dtype=torch.float64)
    )
    assert torch.isnan(pearson(torch.ones(5), torch.arange(5.0)))


def test_deletion_auc_perfect_vs_reversed_ranking() -> None:
    g = torch.Generator().manual_seed(5)
    contrib = torch.rand(3, 20, generator=g)  # each unit's true contribution to the score

    def score_fn(keep: torch.Tensor) -> torch.Tensor:
        return (keep.double() * contrib.repeat(keep.shape[0] // 3, 1).double()).sum(-1)

    fr, good = deletion_curve(contrib, score_fn, steps=20)
    _, bad = deletion_curve(-contrib, score_fn, steps=20)
    assert good.shape == (3, 21) and fr[0] == 0 and fr[-1] == 1
    torch.testing.assert_close(good[:, 0], contrib.double().sum(-1))
    assert torch.all(good[:, -1] == 0)
    assert torch.all(deletion_auc(fr, good) < deletion_auc(fr, bad))
