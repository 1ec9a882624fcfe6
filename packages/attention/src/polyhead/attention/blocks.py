"""Encoder blocks built on polyhead attention, shared by the domain models (CSLR, speech).

- :class:`ConformerBlock`: Gulati et al., "Conformer: Convolution-augmented Transformer for Speech
  Recognition" (2020, arXiv:2005.08100): half-step FFN, multi-head self-attention, convolution module
  (pointwise + GLU, depthwise conv, BatchNorm, Swish, pointwise), half-step FFN, final LayerNorm.
- :class:`TransformerBlock`: a pre-norm Transformer encoder layer.
- :func:`build_attention`: an attention config ``{"name": ..., **kwargs}`` -> module;
  :func:`aux_loss`: the sum of the auxiliary losses (e.g. MoH load balance) that every polyhead attention
  module of a model (encoder blocks, decoder self- and cross-attention, anything built on
  :class:`~polyhead.attention.base.AttentionBase`) returned in the last forward pass.
- :func:`sinusoidal_positions`: absolute sinusoidal position encodings.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.registry import create_attention


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv[: dim // 2])
    return pe.to(dtype)


def build_attention(cfg: dict[str, Any] | None, dim: int, heads: int) -> nn.Module:
    cfg = dict(cfg or {"name": "mha"})
    name = cfg.pop("name", "mha")
    return track_aux_loss(create_attention(name, dim=dim, num_heads=heads, **cfg))


def _record_aux_loss(module: AttentionBase, args: Any, output: Any) -> None:
    module.last_aux_loss = output.aux_loss if isinstance(output, AttentionOutput) else None


def track_aux_loss(module: nn.Module) -> nn.Module:
    """Make every :class:`AttentionBase` in ``module`` keep its last forward's ``aux_loss`` (idempotent).

    :func:`build_attention` does it for the modules it builds; call it on a model whose attention was
    made with ``create_attention`` directly before its first forward pass (:func:`aux_loss` also calls
    it, so such modules are counted from their second forward on).
    """
    for m in module.modules():
        if isinstance(m, AttentionBase) and not getattr(m, "_tracks_aux_loss", False):
            m.register_forward_hook(_record_aux_loss)
            m._tracks_aux_loss = True
            m.last_aux_loss = None
    return module


def aux_loss(net: nn.Module) -> Tensor | None:
    """Sum of the auxiliary losses (e.g. MoH load balance) every attention module of ``net`` returned in the
    last forward pass; ``None`` when none has one (plain attention).

    Consumes them: a module that does not run in the next forward pass (a decoder skipped in a step) is
    not counted twice, and a loss whose graph was freed by ``backward`` is never reused.
    """
    track_aux_loss(net)
    losses: list[Tensor] = []
    for m in net.modules():
        if isinstance(m, AttentionBase) and m.last_aux_loss is not None:
            losses.append(m.last_aux_loss)
            m.last_aux_loss = None
    return torch.stack(losses).sum() if losses else None


class ConformerBlock(nn.Module):
    """Gulati et al. 2020: FFN/2 -> MHSA -> conv module (GLU, depthwise conv, BN, Swish) -> FFN/2 -> LayerNorm."""

    def __init__(
        self, dim: int, heads: int, *, kernel: int = 15, dropout: float = 0.1, attention: dict | None = None
    ) -> None:
        super().__init__()

        def ffn() -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim),
                nn.Linear(dim, 4 * dim),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Linear(4 * dim, dim),
                nn.Dropout(dropout),
            )

        self.ff1, self.ff2 = ffn(), ffn()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = build_attention(attention, dim, heads)
        self.attn_drop = nn.Dropout(dropout)
        self.conv_norm = nn.LayerNorm(dim)
        self.pointwise1 = nn.Conv1d(dim, 2 * dim, 1)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.pointwise2 = nn.Conv1d(dim, dim, 1)
        self.conv_drop = nn.Dropout(dropout)
        self.out_norm = nn.LayerNorm(dim)
        self.aux_loss: Tensor | None = None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        out = self.attn(self.attn_norm(x), mask=mask)
        self.aux_loss = out.aux_loss
        x = x + self.attn_drop(out.output)
        c = self.conv_norm(x).masked_fill(~mask[..., None], 0.0).transpose(1, 2)  # (B, C, T)
        c = nn.functional.glu(self.pointwise1(c), dim=1)
        c = self.pointwise2(nn.functional.silu(self.bn(self.depthwise(c))))
        x = x + self.conv_drop(c.transpose(1, 2))
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder layer on polyhead attention."""

    def __init__(self, dim: int, heads: int, *, dropout: float = 0.1, attention: dict | None = None) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = build_attention(attention, dim, heads)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)
        self.aux_loss: Tensor | None = None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.attn(self.norm1(x), mask=mask)
        self.aux_loss = out.aux_loss
        x = x + self.drop(out.output)
        return x + self.drop(self.ff(self.norm2(x)))
