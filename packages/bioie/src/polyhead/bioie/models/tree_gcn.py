"""Contextualised GCN over pruned dependency trees (C-GCN): Zhang, Qi and Manning, "Graph Convolution over
Pruned Dependency Trees Improves Relation Extraction" (EMNLP 2018, arXiv:1809.10185); the tree GCN without
attention guidance that AGGCN is compared against.

embeddings -> BiLSTM -> L GCN layers on the path-centric pruned tree (K = 1 by default, set in the data
encoder) -> sentence / subject / object max-pooling -> feed-forward -> classifier. The graph layers run on a
dense padded adjacency (``graph="dense"``) or on a PyTorch Geometric edge_index (``graph="pyg"``); both
compute the same function (tested), the benchmark compares their speed.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor, nn

from polyhead.bioie.models.context import RelationHead, TokenEncoder
from polyhead.bioie.models.gcn import GraphConv


class TreeGCN(nn.Module):
    """C-GCN relation classifier (no attention)."""

    def __init__(self, *, vocab_sizes: dict[str, int], num_classes: int, hidden: int = 96, layers: int = 2,
                 graph: Literal["dense", "pyg"] = "dense", dropout: float = 0.3, gcn_dropout: float = 0.3,
                 lstm: bool = True, **encoder: Any) -> None:  # fmt: skip
        super().__init__()
        if graph not in ("dense", "pyg"):
            raise ValueError(f"graph must be 'dense' or 'pyg', got {graph!r}")
        self.graph = graph
        self.encoder = TokenEncoder(
            vocab_sizes=vocab_sizes, hidden=hidden, lstm=lstm, dropout=dropout, **encoder
        )
        self.layers = nn.ModuleList(GraphConv(in_dim=hidden, out_dim=hidden) for _ in range(layers))
        self.drop = nn.Dropout(gcn_dropout)
        self.head = RelationHead(dim=hidden, num_classes=num_classes)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        h = self.encoder(batch)
        kw = (
            {"adj": batch["pruned_adj"]}
            if self.graph == "dense"
            else {"edge_index": batch["pruned_edge_index"]}
        )
        for i, layer in enumerate(self.layers):
            h = layer(h, **kw)
            if i < len(self.layers) - 1:
                h = self.drop(h)
        return self.head(h, batch)
