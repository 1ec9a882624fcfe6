"""Chunked fast paths of the windowed/strided variants (halo, multi_axis, lsda, s2, dma).

With a tiny chunk budget every fast path runs many chunks (each recomputed in backward); outputs and all
gradients must still equal the ``math`` oracle, and no tensor created in forward + backward may approach
``L x L`` elements.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from polyhead.attention import create_attention, windows

CASES = [
    ("halo", {"block_size": 2, "halo_size": 1}, (7, 6)),
    ("halo", {"block_size": 3, "halo_size": 2}, (8, 7)),
    ("halo", {"block_size": 2, "halo_size": 1}, (4, 6)),  # whole blocks: no padding
    ("multi_axis", {"mode": "block", "window_size": 2, "grid_size": 2}, (4, 6)),
    ("multi_axis", {"mode": "both", "window_size": 2, "grid_size": 3}, (7, 6)),
    ("multi_axis", {"mode": "grid", "window_size": 2, "grid_size": 2}, (6, 8)),
    ("lsda", {"distance": "short", "group_size": 3}, (7, 8)),
    ("lsda", {"distance": "long", "group_size": 2}, (9, 6)),
    ("s2", {"block_size": 3, "local_blocks": 2, "vert_stride": 3}, None),
    ("s2", {"block_size": 2, "local_blocks": 1, "vert_stride": 2, "causal": False}, None),
    ("s2", {"block_size": 4, "local_blocks": 1, "vert_stride": 3, "num_dense_heads": 1}, None),
    ("dma", {"window": 5, "chunk_size": 3}, None),
    ("dma", {"window": 4, "chunk_size": 5, "causal": False}, None),
    ("dma", {"window": 40, "chunk_size": 4}, None),  # window larger than the sequence
]


def _grads(m: torch.nn.Module, x: torch.Tensor, ctx, mask, shape) -> list[torch.Tensor]:
    m.zero_grad()
    x = x.detach().requires_grad_(True)
    out = m(x, ctx, mask=mask, shape=shape).output
    g = torch.randn_like(out, generator=torch.Generator().manual_seed(3))
    (out * g).sum().backward()
    return [
        out.detach(),
        x.grad,
        *(p.grad if p.grad is not None else torch.zeros_like(p) for p in m.parameters()),
    ]


def _perturbed(name: str, **kw) -> torch.nn.Module:
    """A float64 module whose parameters are moved off their initialisation (so every path matters)."""
    m = create_attention(name, dim=16, num_heads=4, **kw).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


def _assert_sdpa_matches_math(m: torch.nn.Module, x: torch.Tensor, ctx, mask, shape) -> None:
    """Outputs and every gradient of the chunked sdpa path equal the math oracle (float64, 1e-10)."""
    m.backend = "math"
    ref = _grads(m, x, ctx, mask, shape)
    m.backend = "sdpa"
    got = _grads(m, x, ctx, mask, shape)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize(("name", "kw", "grid"), CASES, ids=lambda c: str(c))
def test_many_chunks_match_oracle(name, kw, grid, masked, monkeypatch) -> None:
    monkeypatch.setattr(windows, "SCORE_BUDGET", 16)  # one group row / block per chunk
    torch.manual_seed(0)
    m = _perturbed(name, **kw)
    L = grid[0] * grid[1] if grid else 23
    x = torch.randn(2, L, 16, dtype=torch.float64)
    mask = (torch.rand(2, L) > 0.3) if masked else None
    _assert_sdpa_matches_math(m, x, None, mask, grid)


@pytest.mark.parametrize("name", ["s2", "dma"])
def test_cross_attention_longer_context_matches_oracle(name, monkeypatch) -> None:
    """Queries aligned with the end of a longer context (S - L a multiple of the S2 block)."""
    monkeypatch.setattr(windows, "SCORE_BUDGET", 16)
    torch.manual_seed(1)
    kw = (
        {"block_size": 3, "local_blocks": 2, "vert_stride": 2}
        if name == "s2"
        else {"window": 6, "chunk_size": 4}
    )
    m = _perturbed(name, **kw)
    L = 13 if name == "s2" else 10  # S2: S - L = 9 = 3 blocks
    x, ctx = torch.randn(2, L, 16, dtype=torch.float64), torch.randn(2, 22, 16, dtype=torch.float64)
    mask = torch.rand(2, 22) > 0.25
    _assert_sdpa_matches_math(m, x, ctx, mask, None)


class _Largest(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = (0, "")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):  # elements of the storage (views of a storage are not new memory)
                n = o.untyped_storage().nbytes() // o.element_size()
                if n > self.largest[0]:
                    self.largest = (n, f"{func} {tuple(o.shape)}")
        return out


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("halo", {"block_size": 4, "halo_size": 2}),
        ("multi_axis", {"window_size": 4, "grid_size": 4}),
        ("lsda", {"distance": "long", "group_size": 4}),
        ("s2", {"block_size": 32, "local_blocks": 2, "vert_stride": 4}),
        ("dma", {"window": 32, "chunk_size": 64}),
    ],
)
def test_no_tensor_grows_with_l_squared(name, kw, monkeypatch) -> None:
    """Forward + backward at L = 4096 on the fast path: every storage holds < L^2 / 32 elements."""
    monkeypatch.setattr(windows, "SCORE_BUDGET", 1 << 14)
    torch.manual_seed(0)
    m = create_attention(name, dim=16, num_heads=4, **kw)
    m.backend = "sdpa"
    L = 64 * 64
    shape = (64, 64) if name in ("halo", "multi_axis", "lsda") else None
    x = torch.randn(1, L, 16, requires_grad=True)
    mask = torch.rand(1, L) > 0.1
    with _Largest() as big:
        m(x, mask=mask, shape=shape).output.square().mean().backward()
    assert big.largest[0] < L * L // 32, big.largest
