"""Graph convolutions over dependency graphs: the plain GCN layer (Kipf & Welling 2017, arXiv:1609.02907,
as C-GCN uses it) on a dense adjacency or a PyG ``edge_index``, and AGGCN's densely connected GCN.

Both follow the reference implementations' normalisation: ``h' = ReLU((W (A h) + W h) / (deg + 1))``, i.e.
a self loop and division by the degree plus one (Zhang et al. 2018, arXiv:1809.10185; Guo et al. 2019,
arXiv:1906.07510), which also works for soft (attention) adjacencies whose "degree" is a row sum.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def propagate(
    x: Tensor, *, adj: Tensor | None = None, edge_index: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(A x, deg)`` from a dense ``(B, L, L)`` adjacency or a ``(2, E)`` edge_index over ``B * L`` nodes."""
    if adj is not None:
        return adj.bmm(x), adj.sum(-1, keepdim=True)
    if edge_index is None:
        raise ValueError("propagate needs adj (B, L, L) or edge_index (2, E)")
    from torch_geometric.utils import scatter

    b, n, d = x.shape
    flat = x.reshape(b * n, d)
    src, dst = edge_index
    ax = scatter(flat[src], dst, dim=0, dim_size=b * n, reduce="sum")
    deg = scatter(torch.ones_like(dst, dtype=x.dtype), dst, dim=0, dim_size=b * n, reduce="sum")
    return ax.view(b, n, d), deg.view(b, n, 1)


class GraphConv(nn.Module):
    """One GCN layer, ``ReLU((W (A h) + W h) / (deg + 1))`` (one weight for neighbours and self)."""

    def __init__(self, *, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor, *, adj: Tensor | None = None, edge_index: Tensor | None = None) -> Tensor:
        ax, deg = propagate(x, adj=adj, edge_index=edge_index)
        return torch.relu((self.linear(ax) + self.linear(x)) / (deg + 1))


class DenselyConnectedGCN(nn.Module):
    """A densely connected GCN block (Guo et al. 2019, after DCGCN): sublayer ``l`` sees the block input and
    the outputs of all earlier sublayers; each sublayer has ``dim / sublayers`` channels; the concatenated
    sublayer outputs plus the input pass through a final linear layer.

    ``adj`` is ``(B, L, L)``: the dependency tree (0/1) or one attention head's soft adjacency.
    """

    def __init__(self, *, dim: int, sublayers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if sublayers < 1 or dim % sublayers:
            raise ValueError(f"dim ({dim}) must be a positive multiple of sublayers ({sublayers})")
        self.head_dim = dim // sublayers
        self.layers = nn.ModuleList(
            nn.Linear(dim + self.head_dim * i, self.head_dim) for i in range(sublayers)
        )
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        denom = adj.sum(-1, keepdim=True) + 1  # (B, L, 1)
        cache, outs = [x], []
        h = x
        for layer in self.layers:
            g = torch.relu((layer(adj.bmm(h)) + layer(h)) / denom)  # (B, L, head_dim)
            cache.append(g)
            h = torch.cat(cache, dim=-1)
            outs.append(self.drop(g))
        return self.out(torch.cat(outs, dim=-1) + x)


class MultiHeadDCGCN(nn.Module):
    """``heads`` densely connected GCNs, one per soft adjacency, run as one batched computation.

    Equal to ``heads`` separate :class:`DenselyConnectedGCN` blocks (head ``i`` on ``adj[:, i]``; tested),
    with the heads' weights stacked so each sublayer is one ``baddbmm`` over all heads instead of ``heads``
    small matrix products: AGGCN's cost is dominated by these many small layers.
    """

    def __init__(self, *, dim: int, heads: int, sublayers: int, dropout: float = 0.0) -> None:
        super().__init__()
        if sublayers < 1 or dim % sublayers:
            raise ValueError(f"dim ({dim}) must be a positive multiple of sublayers ({sublayers})")
        self.heads, self.head_dim = heads, dim // sublayers
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(sublayers):
            fan_in = dim + self.head_dim * i
            bound = fan_in**-0.5  # nn.Linear's default initialisation
            self.weights.append(
                nn.Parameter(torch.empty(heads, fan_in, self.head_dim).uniform_(-bound, bound))
            )
            self.biases.append(nn.Parameter(torch.empty(heads, 1, self.head_dim).uniform_(-bound, bound)))
        bound = dim**-0.5
        self.out_weight = nn.Parameter(torch.empty(heads, dim, dim).uniform_(-bound, bound))
        self.out_bias = nn.Parameter(torch.empty(heads, 1, dim).uniform_(-bound, bound))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        """``x (B, L, D)``, ``adj (B, heads, L, L)`` -> ``(B, L, heads, D)``."""
        b, n, d = x.shape
        h = self.heads
        a = adj.transpose(0, 1).reshape(h * b, n, n)  # (H*B, L, L)
        denom = a.sum(-1, keepdim=True) + 1
        inp = x.unsqueeze(0).expand(h, b, n, d).reshape(h * b, n, d)
        cache, outs = [inp], []
        for w, bias in zip(self.weights, self.biases):
            cur = torch.cat(cache, dim=-1) if len(cache) > 1 else inp  # (H*B, L, in)
            z = a.bmm(cur) + cur  # A h + h: the neighbours and the self loop share the weight
            # W (A h) + b + W h + b = W (A h + h) + 2 b, per head: (H, B*L, in) @ (H, in, head_dim)
            g = torch.baddbmm(2 * bias, z.reshape(h, b * n, -1), w).reshape(h * b, n, -1)
            g = torch.relu(g / denom)
            cache.append(g)
            outs.append(self.drop(g))
        res = (torch.cat(outs, dim=-1) + inp).reshape(h, b * n, d)
        out = torch.baddbmm(self.out_bias, res, self.out_weight)  # (H, B*L, D)
        return out.reshape(h, b, n, d).permute(1, 2, 0, 3)
