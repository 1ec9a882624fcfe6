"""Graph layers against hand-computed references, attention adjacencies, dense vs PyG, pruning, overfitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyhead.bioie.data.encoding import Encoder, collate
from polyhead.bioie.data.generator import generate_split
from polyhead.bioie.data.graphs import prune_to_path
from polyhead.bioie.models import build_model
from polyhead.bioie.models.aggcn import AttentionGuidedLayer
from polyhead.bioie.models.gcn import DenselyConnectedGCN, GraphConv, MultiHeadDCGCN


def test_dcgcn_matches_hand_computation():
    # path graph 0 - 1 - 2 plus an isolated token 3; dim 2, two sublayers of width 1
    torch.manual_seed(0)
    adj = torch.tensor([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float)[None]
    x = torch.randn(1, 4, 2)
    m = DenselyConnectedGCN(dim=2, sublayers=2)
    w1, b1 = m.layers[0].weight.detach().numpy(), m.layers[0].bias.detach().numpy()
    w2, b2 = m.layers[1].weight.detach().numpy(), m.layers[1].bias.detach().numpy()
    wo, bo = m.out.weight.detach().numpy(), m.out.bias.detach().numpy()
    X, A = x[0].numpy(), adj[0].numpy()
    neighbours = {0: [1], 1: [0, 2], 2: [1], 3: []}
    # sublayer 1, node by node: relu((sum_j W1 x_j + b1 + W1 x_i + b1) / (deg_i + 1))
    g1 = np.zeros((4, 1))
    for i, nb in neighbours.items():
        s = sum(w1 @ X[j] + b1 for j in nb) if nb else 0.0
        g1[i] = np.maximum((s + w1 @ X[i] + b1) / (len(nb) + 1), 0)
    H = np.concatenate([X, g1], axis=1)
    g2 = np.zeros((4, 1))
    for i, nb in neighbours.items():
        s = sum(w2 @ H[j] + b2 for j in nb) if nb else 0.0
        g2[i] = np.maximum((s + w2 @ H[i] + b2) / (len(nb) + 1), 0)
    expected = (np.concatenate([g1, g2], axis=1) + X) @ wo.T + bo
    np.testing.assert_allclose(m(x, adj)[0].detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    del A


def test_attention_adjacency_shape_and_row_sums():
    torch.manual_seed(1)
    layer = AttentionGuidedLayer(dim=24, heads=3, sublayers=2, dropout=0.0, attention={"name": "mha"})
    x = torch.randn(2, 7, 24)
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    adj = layer.adjacency(x, mask)
    assert adj.shape == (2, 3, 7, 7)
    torch.testing.assert_close(adj.sum(-1), torch.ones(2, 3, 7))
    assert adj[1, :, :, 4:].abs().max() == 0  # no weight on padding keys
    out = layer(x, mask)
    assert out.shape == (2, 7, 24)


def test_graph_conv_dense_equals_pyg():
    torch.manual_seed(2)
    _, _, ex = generate_split("dev", 6, seed=0)
    enc = Encoder.build(ex, min_count=1)
    batch = collate([enc.encode(e) for e in ex[:9]], graph="both")
    conv = GraphConv(in_dim=8, out_dim=5)
    x = torch.randn(batch["words"].shape[0], batch["words"].shape[1], 8)
    dense = conv(x, adj=batch["pruned_adj"])
    sparse = conv(x, edge_index=batch["pruned_edge_index"])
    torch.testing.assert_close(dense, sparse, rtol=1e-5, atol=1e-6)


def test_path_centric_pruning():
    # tree: 2 is the root; 1 <- 2, 3 <- 2, 4 <- 3, 5 <- 4, 0 <- 1, 6 <- 5 (heads 1-based)
    heads = np.array([2, 3, 0, 3, 4, 5, 6])
    # subject token 0, object token 4: path 0-1-2-3-4; K=0 keeps the path, K=1 adds token 5 (child of 4)
    assert prune_to_path(heads, (0, 0), (4, 4), 0).tolist() == [True] * 5 + [False] * 2
    assert prune_to_path(heads, (0, 0), (4, 4), 1).tolist() == [True] * 6 + [False]
    assert prune_to_path(heads, (0, 0), (4, 4), -1).all()


@pytest.mark.parametrize("name", ["aggcn", "tree_gcn", "transformer"])
def test_overfits_a_handful_of_sentences(name):
    torch.manual_seed(0)
    _, _, ex = generate_split("train", 30, seed=5)
    ex = [e for e in ex if e.relation != "no_relation"][:6] + [e for e in ex if e.relation == "no_relation"][
        :6
    ]
    enc = Encoder.build(ex, min_count=1)
    batch = collate([enc.encode(e) for e in ex], graph="dense")
    sizes = {"words": len(enc.words), "pos": len(enc.pos), "ner": len(enc.ner), "positions": 129}
    extra = {"aggcn": {"heads": 3}, "transformer": {"heads": 4}}.get(name, {})
    model = build_model(
        name, vocab_sizes=sizes, num_classes=len(enc.relations), hidden=48, dropout=0.0, **extra
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = torch.nn.functional.cross_entropy(model(batch), batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert (model(batch).argmax(-1) == batch["labels"]).all()
    assert loss.item() < 0.1


def test_multihead_dcgcn_equals_separate_blocks():
    torch.manual_seed(3)
    heads, dim = 3, 12
    multi = MultiHeadDCGCN(dim=dim, heads=heads, sublayers=3)
    singles = [DenselyConnectedGCN(dim=dim, sublayers=3) for _ in range(heads)]
    with torch.no_grad():
        for i, single in enumerate(singles):
            for k, layer in enumerate(single.layers):
                layer.weight.copy_(multi.weights[k][i].T)
                layer.bias.copy_(multi.biases[k][i, 0])
            single.out.weight.copy_(multi.out_weight[i].T)
            single.out.bias.copy_(multi.out_bias[i, 0])
    x = torch.randn(2, 5, dim)
    adj = torch.rand(2, heads, 5, 5).softmax(-1)
    expected = torch.stack([s(x, adj[:, i]) for i, s in enumerate(singles)], dim=2)
    torch.testing.assert_close(multi(x, adj), expected, rtol=1e-5, atol=1e-5)
