"""Attention Guided Graph Convolutional Network (AGGCN): Guo, Zhang and Lu, "Attention Guided Graph
Convolutional Networks for Relation Extraction" (ACL 2019, arXiv:1906.07510), the model BioIE (2021) builds
its biomedical relation extraction on.

embeddings -> BiLSTM -> a densely connected GCN block on the dependency tree -> attention-guided blocks:
multi-head self-attention over the current token states turns into N soft, fully connected adjacency
matrices (one per head), each drives its own densely connected GCN, and a linear layer combines the N
outputs -> a linear combination of all blocks' outputs -> sentence / subject / object max-pooling ->
classifier.

Differences from the reference code: the attention is any ``polyhead.attention`` variant (``mha`` by
default, called with ``need_weights=True``, so its weights are the adjacencies; the reference has its own
scaled dot product); entity-relative position embeddings are added to the input (BioIE; the reference has
none); each attention-guided block uses one attention for both of its DCGCN sub-blocks, as the reference's
layer pairs do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from polyhead.attention.blocks import build_attention
from polyhead.bioie.models.context import RelationHead, TokenEncoder
from polyhead.bioie.models.gcn import DenselyConnectedGCN, MultiHeadDCGCN


class AttentionGuidedLayer(nn.Module):
    """Multi-head attention -> N soft adjacencies -> N densely connected GCNs -> linear combination."""

    def __init__(
        self, *, dim: int, heads: int, sublayers: int, dropout: float, attention: dict | None
    ) -> None:
        super().__init__()
        self.attn = build_attention(attention, dim, heads)
        self.gcns = MultiHeadDCGCN(dim=dim, heads=heads, sublayers=sublayers, dropout=dropout)
        self.combine = nn.Linear(heads * dim, dim)
        self.aux_loss: Tensor | None = None

    def adjacency(self, x: Tensor, mask: Tensor) -> Tensor:
        """The soft adjacencies ``(B, heads, L, L)``: attention weights, rows sum to 1 over real tokens."""
        out = self.attn(x, mask=mask, need_weights=True)
        self.aux_loss = out.aux_loss
        if out.weights is None:
            raise ValueError(
                f"attention {type(self.attn).__name__} returned no weights with need_weights=True"
            )
        return out.weights

    def forward(self, x: Tensor, mask: Tensor, adj: Tensor | None = None) -> Tensor:
        adj = self.adjacency(x, mask) if adj is None else adj
        outs = self.gcns(x, adj)  # (B, L, heads, D)
        return self.combine(outs.flatten(2))


class AGGCN(nn.Module):
    """The attention-guided GCN relation classifier.

    Args:
        vocab_sizes: embedding table sizes (see :class:`TokenEncoder`).
        num_classes: relation labels including ``no_relation``.
        hidden: GCN width (divisible by both sublayer counts).
        heads: attention heads = soft adjacency matrices per attention-guided block.
        blocks: attention-guided blocks after the tree block.
        sublayers: (first, second) DCGCN sublayer counts of each block pair (reference: 2 and 4).
        attention: ``polyhead.attention`` config, e.g. ``{"name": "mha"}``.
        dropout, gcn_dropout: input / GCN dropout.
    """

    def __init__(self, *, vocab_sizes: dict[str, int], num_classes: int, hidden: int = 96, heads: int = 3,
                 blocks: int = 1, sublayers: tuple[int, int] = (2, 4), attention: dict[str, Any] | None = None,
                 dropout: float = 0.3, gcn_dropout: float = 0.3, lstm: bool = True, **encoder: Any) -> None:  # fmt: skip
        super().__init__()
        self.encoder = TokenEncoder(
            vocab_sizes=vocab_sizes, hidden=hidden, lstm=lstm, dropout=dropout, **encoder
        )
        self.tree_block = nn.ModuleList(DenselyConnectedGCN(dim=hidden, sublayers=s, dropout=gcn_dropout)
                                        for s in sublayers)  # fmt: skip
        self.ag_blocks = nn.ModuleList(
            nn.ModuleList(
                AttentionGuidedLayer(
                    dim=hidden, heads=heads, sublayers=s, dropout=gcn_dropout, attention=attention
                )
                for s in sublayers
            )
            for _ in range(blocks)
        )
        n_outputs = len(sublayers) * (1 + blocks)
        self.aggregate = nn.Linear(n_outputs * hidden, hidden)
        self.head = RelationHead(dim=hidden, num_classes=num_classes)

    def forward(
        self, batch: dict[str, Tensor], *, return_adjacency: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        x = self.encoder(batch)
        mask = batch["mask"]
        outputs, adjs = [], []
        for gcn in self.tree_block:
            x = gcn(x, batch["tree_adj"])
            outputs.append(x)
        for pair in self._ag_pairs():
            adj = pair[0].adjacency(x, mask)  # one attention per block pair, as the reference
            adjs.append(adj)
            for layer in pair:
                x = layer(x, mask, adj)
                outputs.append(x)
        h = self.aggregate(torch.cat(outputs, dim=-1))
        logits = self.head(h, batch)
        return (logits, adjs) if return_adjacency else logits

    def _ag_pairs(self) -> list[Sequence[AttentionGuidedLayer]]:
        """``ag_blocks`` typed: each an ``nn.ModuleList`` of :class:`AttentionGuidedLayer` (``nn.ModuleList``
        is not generic, so iterating it yields plain Modules)."""
        return [cast(Sequence[AttentionGuidedLayer], pair) for pair in self.ag_blocks]

    def aux_loss(self) -> Tensor | None:
        losses = [pair[0].aux_loss for pair in self._ag_pairs() if pair[0].aux_loss is not None]
        return torch.stack(losses).sum() if losses else None
