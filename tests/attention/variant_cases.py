"""Small test configurations for every registered attention variant (kwargs + a grid for 2-D variants)."""

from __future__ import annotations

import torch

from polyhead.attention import create_attention, get_attention_class

DIM, HEADS = 16, 4

# Small windows so that tiny inputs exercise the patterns (several groups, padding, strides).
TEST_KWARGS: dict[str, dict] = {
    "multi_axis": {"window_size": 2, "grid_size": 2},
    "lsda": {"group_size": 2},
    "halo": {"block_size": 2, "halo_size": 1},
    "s2": {"block_size": 2, "local_blocks": 1, "vert_stride": 2},
    "duo": {"sink": 2, "recent": 3, "block_size": 2},
    "dma": {"window": 3, "chunk_size": 4},
}
TEST_SHAPE = (3, 4)  # 2-D variants: L = 12 (not a multiple of the windows: padding is exercised)
SEQ_LEN = 11


def build(name: str, dtype: torch.dtype = torch.float64, **extra) -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_attention(name, dim=DIM, num_heads=HEADS, **{**TEST_KWARGS.get(name, {}), **extra}).to(dtype)
    for p in m.parameters():  # non-trivial values everywhere (e.g. DMA's A and biases start at 0)
        with torch.no_grad():
            p.add_(0.1 * torch.randn_like(p))
    return m


def inputs(name: str, batch: int = 2, dtype: torch.dtype = torch.float64, seed: int = 0):
    """``(x, shape)`` for a variant."""
    cls = get_attention_class(name)
    g = torch.Generator().manual_seed(seed)
    if cls.needs_shape:
        shape = TEST_SHAPE
        L = shape[0] * shape[1]
    else:
        shape, L = None, SEQ_LEN
    return torch.randn(batch, L, DIM, generator=g, dtype=dtype), shape


def key_mask(batch: int, L: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(batch, L, generator=g) > 0.3
    m[:, 0] = True
    return m
