"""CSLR-specific encoder pieces: the temporal convolution front end (the shared blocks live in
:mod:`polyhead.attention.blocks`)."""

from __future__ import annotations

from torch import Tensor, nn

from polyhead.attention.blocks import (  # re-exported for the CSLR encoders
    ConformerBlock,
    TransformerBlock,
    aux_loss,
    build_attention,
    sinusoidal_positions,
)

__all__ = [
    "ConformerBlock",
    "TemporalDownsample",
    "TransformerBlock",
    "aux_loss",
    "build_attention",
    "sinusoidal_positions",
]


class TemporalDownsample(nn.Module):
    """``n`` stride-2 1-D convolutions (kernel 3) over time: ``(B, T, C_in) -> (B, ceil(T / 2^n), C_out)``."""

    def __init__(self, in_dim: int, out_dim: int, num_stages: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(num_stages):
            layers += [nn.Conv1d(d, out_dim, 3, stride=2, padding=1), nn.BatchNorm1d(out_dim), nn.GELU()]
            d = out_dim
        self.net = nn.Sequential(*layers) if layers else nn.Conv1d(in_dim, out_dim, 1)
        self.num_stages = num_stages

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for _ in range(self.num_stages):
            lengths = (lengths - 1) // 2 + 1
        return lengths

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.transpose(1, 2)).transpose(1, 2)
