"""Baselines from AutoInt's comparison: logistic regression, factorisation machine, plain DNN.

- LR: a weight per (field, value) plus a bias.
- FM (Rendle, ICDM 2010): LR + pairwise interactions ``sum_{i<j} <v_i, v_j>`` computed in O(F d) as
  ``0.5 * ((sum v)^2 - sum v^2)``.
- DNN: an MLP on the concatenated field embeddings.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyhead.ctr.models.embedding import FieldEmbedding


class MLP(nn.Sequential):
    """Linear -> ReLU -> Dropout blocks ending in one logit."""

    def __init__(self, in_dim: int, hidden: list[int], dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(in_dim, h), nn.ReLU(), nn.Dropout(dropout)]
            in_dim = h
        layers.append(nn.Linear(in_dim, 1))
        super().__init__(*layers)


class LogisticRegression(nn.Module):
    def __init__(self, cardinalities: list[int]) -> None:
        super().__init__()
        self.weights = FieldEmbedding(cardinalities, 1)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, idx: Tensor, val: Tensor) -> tuple[Tensor, None]:
        return self.weights(idx, val).sum(dim=(1, 2)) + self.bias, None


class FactorizationMachine(nn.Module):
    def __init__(self, cardinalities: list[int], embed_dim: int = 16) -> None:
        super().__init__()
        self.linear = LogisticRegression(cardinalities)
        self.embedding = FieldEmbedding(cardinalities, embed_dim)

    def forward(self, idx: Tensor, val: Tensor) -> tuple[Tensor, None]:
        v = self.embedding(idx, val)  # (B, F, d)
        pair = 0.5 * (v.sum(1).square() - v.square().sum(1)).sum(-1)
        return self.linear(idx, val)[0] + pair, None


class DNN(nn.Module):
    def __init__(
        self,
        cardinalities: list[int],
        embed_dim: int = 16,
        hidden: list[int] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = FieldEmbedding(cardinalities, embed_dim)
        self.mlp = MLP(len(cardinalities) * embed_dim, hidden or [400, 400], dropout)

    def forward(self, idx: Tensor, val: Tensor) -> tuple[Tensor, None]:
        return self.mlp(self.embedding(idx, val).flatten(1)).squeeze(-1), None
