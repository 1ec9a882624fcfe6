"""CSLR encoders with CTC heads (SignEval 2025 solutions and the challenge starter kit).

- :class:`SignerInvariantConformer` (signer-independent task): 1-D conv front end with 8x temporal
  downsampling, linear to ``d_model`` (512), sinusoidal positions, 6 Conformer blocks (8 heads,
  dropout 0.3), CTC head.
- :class:`MultiScaleFusionTransformer` (unseen-sentences task): a dual-path temporal encoder, a
  fine-grained path at 2x downsampling and a coarse path at 4x, the coarse features upsampled and fused
  with the fine ones, then a 7-layer Transformer encoder and a CTC head.
- :class:`TransformerCTC` (starter-kit baseline): linear embedding, positions, Transformer encoder, CTC head.

All take ``x (B, T, 86 * C)`` with lengths and return log-probabilities ``(B, T', V)`` with ``T'`` lengths.
The attention variant is configurable (``attention: {name: ...}``). ``vocab_size=None`` builds the encoder
without its CTC head (:meth:`CTCEncoder.set_vocab_size` adds it once the vocabulary is known), so the
attention modules exist from construction on (the attention-map logger looks for them before the data is
read).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polyhead.cslr.models.blocks import (
    ConformerBlock,
    TemporalDownsample,
    TransformerBlock,
    sinusoidal_positions,
)


class CTCEncoder(nn.Module):
    """An encoder with a linear CTC head over ``vocab_size`` outputs (blank at 0)."""

    d_model: int
    head: nn.Linear | None

    def set_vocab_size(self, vocab_size: int) -> None:
        """(Re)build the CTC head for ``vocab_size`` outputs."""
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (blank + one gloss), got {vocab_size}")
        self.head = nn.Linear(self.d_model, vocab_size)

    def _logits(self, h: Tensor) -> Tensor:
        if self.head is None:
            raise RuntimeError(f"{type(self).__name__} has no CTC head yet: call set_vocab_size first")
        return torch.log_softmax(self.head(h).float(), -1)


def _encode(h: Tensor, lengths: Tensor, blocks: nn.ModuleList, drop: nn.Module) -> Tensor:
    """Add sinusoidal positions, then run the blocks with the key-padding mask of ``lengths``."""
    h = drop(h + sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype))
    mask = torch.arange(h.shape[1], device=lengths.device)[None, :] < lengths[:, None]
    for blk in blocks:
        h = blk(h, mask)
    return h


class SignerInvariantConformer(CTCEncoder):
    def __init__(
        self, in_dim: int, vocab_size: int | None = None, *, d_model: int = 512, layers: int = 6, heads: int = 8,
        dropout: float = 0.3, downsample_stages: int = 3, attention: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.front = TemporalDownsample(in_dim, d_model, downsample_stages)
        self.proj = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, heads, dropout=dropout, attention=attention) for _ in range(layers)
        )
        self.d_model, self.head = d_model, None
        if vocab_size is not None:
            self.set_vocab_size(vocab_size)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h = self.proj(self.front(x))
        lengths = self.front.output_lengths(lengths)
        h = _encode(h, lengths, self.blocks, self.drop)
        return self._logits(h), lengths


class MultiScaleFusionTransformer(CTCEncoder):
    def __init__(
        self, in_dim: int, vocab_size: int | None = None, *, d_model: int = 256, layers: int = 7, heads: int = 8,
        dropout: float = 0.1, attention: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.fine = TemporalDownsample(in_dim, d_model, 1)  # posture detail, T/2
        self.coarse = TemporalDownsample(in_dim, d_model, 2)  # motion context, T/4
        self.fuse = nn.Linear(2 * d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, dropout=dropout, attention=attention) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.d_model, self.head = d_model, None
        if vocab_size is not None:
            self.set_vocab_size(vocab_size)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        f = self.fine(x)  # (B, T/2, C)
        c = self.coarse(x)  # (B, T/4, C)
        c_up = nn.functional.interpolate(
            c.transpose(1, 2), size=f.shape[1], mode="linear", align_corners=False
        )
        h = self.fuse(torch.cat([f, c_up.transpose(1, 2)], -1))
        lengths = self.fine.output_lengths(lengths)
        h = _encode(h, lengths, self.blocks, self.drop)
        return self._logits(self.norm(h)), lengths


class TransformerCTC(CTCEncoder):
    def __init__(
        self, in_dim: int, vocab_size: int | None = None, *, d_model: int = 256, layers: int = 4, heads: int = 4,
        dropout: float = 0.1, attention: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.embed = nn.Linear(in_dim, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, heads, dropout=dropout, attention=attention) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.d_model, self.head = d_model, None
        if vocab_size is not None:
            self.set_vocab_size(vocab_size)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        h = self.embed(x)
        h = _encode(h, lengths, self.blocks, self.drop)
        return self._logits(self.norm(h)), lengths
