"""Field embeddings: every field (categorical, bucketed or scaled numeric) becomes a d-dim vector."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FieldEmbedding(nn.Module):
    """One table for all fields, indexed with per-field offsets; scaled numerics multiply their vector.

    Args:
        cardinalities: local index count per field (missing + OOV + vocabulary).
        dim: embedding width.
    """

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.num_fields = len(cardinalities)
        offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0)
        self.offsets: Tensor
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(int(sum(cardinalities)), dim)
        nn.init.normal_(self.table.weight, std=1e-2 if dim > 1 else 1e-4)

    def forward(self, idx: Tensor, val: Tensor) -> Tensor:
        """``idx (B, F)`` local indices, ``val (B, F)`` multipliers -> ``(B, F, dim)``."""
        return self.table(idx + self.offsets) * val.unsqueeze(-1)
