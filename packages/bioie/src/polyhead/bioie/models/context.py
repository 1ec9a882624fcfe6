"""Token features and context shared by every relation model: word + POS + NER + entity-relative position
embeddings, then (optionally) a BiLSTM, as in C-GCN (Zhang et al. 2018, arXiv:1809.10185) and AGGCN
(Guo et al. 2019, arXiv:1906.07510). The relation head pools the sentence and the two entity spans.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TokenEncoder(nn.Module):
    """Embeddings (word, POS, NER, position relative to subject and to object) -> optional BiLSTM.

    Args:
        vocab_sizes: ``{"words", "pos", "ner", "positions"}`` table sizes.
        word_dim, tag_dim, position_dim: embedding sizes (a size of 0 drops that feature).
        hidden: output size (BiLSTM: hidden / 2 per direction; without LSTM: a linear projection).
        lstm: use the BiLSTM context layer.
        dropout: input dropout.
        word_dropout: training-time probability of replacing a word id by ``<unk>`` (AGGCN: 0.04).
    """

    def __init__(self, *, vocab_sizes: dict[str, int], word_dim: int = 64, tag_dim: int = 16,
                 position_dim: int = 16, hidden: int = 96, lstm: bool = True, dropout: float = 0.3,
                 word_dropout: float = 0.04) -> None:  # fmt: skip
        super().__init__()
        if lstm and hidden % 2:
            raise ValueError(f"hidden must be even for a BiLSTM, got {hidden}")
        self.word = nn.Embedding(vocab_sizes["words"], word_dim, padding_idx=0)
        self.pos = nn.Embedding(vocab_sizes["pos"], tag_dim, padding_idx=0) if tag_dim else None
        self.ner = nn.Embedding(vocab_sizes["ner"], tag_dim, padding_idx=0) if tag_dim else None
        self.position = nn.Embedding(vocab_sizes["positions"], position_dim) if position_dim else None
        in_dim = word_dim + 2 * tag_dim + 2 * position_dim
        self.lstm = nn.LSTM(in_dim, hidden // 2, batch_first=True, bidirectional=True) if lstm else None
        self.proj = None if lstm else nn.Linear(in_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.word_dropout = word_dropout
        self.hidden = hidden

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        words = batch["words"]
        if self.training and self.word_dropout > 0:
            drop = (torch.rand_like(words, dtype=torch.float) < self.word_dropout) & (words > 1)
            words = words.masked_fill(drop, 1)
        feats = [self.word(words)]
        if self.pos is not None:
            assert self.ner is not None  # both tag tables exist exactly when tag_dim > 0
            feats += [self.pos(batch["pos"]), self.ner(batch["ner"])]
        if self.position is not None:
            feats += [self.position(batch["subj_pos"]), self.position(batch["obj_pos"])]
        x = self.drop(torch.cat(feats, dim=-1))  # (B, L, in_dim)
        if self.lstm is None:
            assert self.proj is not None  # the projection is built exactly when there is no LSTM
            return self.proj(x)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, batch["lengths"].cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.drop(out)  # (B, L, hidden)


def masked_max(h: Tensor, mask: Tensor) -> Tensor:
    """Max over the positions where ``mask`` is True: ``(B, L, D), (B, L) -> (B, D)``."""
    return h.masked_fill(~mask[..., None], torch.finfo(h.dtype).min).amax(dim=1)


class RelationHead(nn.Module):
    """Sentence, subject and object max-pooling -> feed-forward layers -> relation logits (AGGCN/C-GCN)."""

    def __init__(self, *, dim: int, num_classes: int, mlp_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(3 * dim, dim), nn.ReLU()]
        for _ in range(mlp_layers - 1):
            layers += [nn.Linear(dim, dim), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, h: Tensor, batch: dict[str, Tensor], sentence_mask: Tensor | None = None) -> Tensor:
        sent = masked_max(h, batch["mask"] if sentence_mask is None else sentence_mask)
        pooled = torch.cat(
            [sent, masked_max(h, batch["subj_mask"]), masked_max(h, batch["obj_mask"])], dim=-1
        )
        return self.classifier(self.mlp(pooled))
