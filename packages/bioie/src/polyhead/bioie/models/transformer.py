"""Transformer baseline without the tree: the same token features and relation head, with pre-norm
Transformer encoder blocks (Vaswani et al. 2017, arXiv:1706.03762) on ``polyhead.attention`` in place of the
BiLSTM and the graph layers; sinusoidal absolute positions are added to the projected features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from polyhead.attention.blocks import TransformerBlock, sinusoidal_positions
from polyhead.bioie.models.context import RelationHead, TokenEncoder


class RelationTransformer(nn.Module):
    """Token features -> Transformer blocks -> pooling -> classifier."""

    def __init__(self, *, vocab_sizes: dict[str, int], num_classes: int, hidden: int = 96, heads: int = 4,
                 layers: int = 2, attention: dict[str, Any] | None = None, dropout: float = 0.3,
                 **encoder: Any) -> None:  # fmt: skip
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.encoder = TokenEncoder(
            vocab_sizes=vocab_sizes, hidden=hidden, lstm=False, dropout=dropout, **encoder
        )
        self.blocks = nn.ModuleList(TransformerBlock(hidden, heads, dropout=dropout, attention=attention)
                                    for _ in range(layers))  # fmt: skip
        self.norm = nn.LayerNorm(hidden)
        self.head = RelationHead(dim=hidden, num_classes=num_classes)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        h = self.encoder(batch)
        h = h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype)
        for block in self.blocks:
            h = block(h, batch["mask"])
        return self.head(self.norm(h), batch)

    def aux_loss(self) -> Tensor | None:
        blocks = cast(Sequence[TransformerBlock], self.blocks)  # nn.ModuleList is not generic
        losses = [b.aux_loss for b in blocks if b.aux_loss is not None]
        return torch.stack(losses).sum() if losses else None
