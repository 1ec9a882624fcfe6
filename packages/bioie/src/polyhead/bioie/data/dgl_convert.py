"""Optional DGL conversion of our dependency graphs (``to_dgl`` / ``from_dgl``).

PyTorch Geometric is polyhead-bioie's graph library: DGL's newest build for Python 3.11 on x86-64 in the
package index (2.1.0) fails to import with torch 2.11 (its GraphBolt library exists only for torch up to
2.2), so DGL is not a dependency. Where ``dgl`` imports in a user's environment these two functions move a
sentence graph between the two libraries; nothing else in the package uses DGL.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def to_dgl(edges: Tensor, num_nodes: int, features: Tensor | None = None) -> Any:
    """A ``(2, E)`` child -> head edge list (0-based) -> an undirected ``dgl.DGLGraph`` (``ndata['h']``)."""
    import dgl

    src, dst = edges[0].long(), edges[1].long()
    g = dgl.graph((torch.cat([src, dst]), torch.cat([dst, src])), num_nodes=num_nodes)
    if features is not None:
        g.ndata["h"] = features
    return g


def from_dgl(graph: Any) -> tuple[Tensor, int, Tensor | None]:
    """A DGL graph from :func:`to_dgl` -> ``(edges (2, E) child -> head, num_nodes, features or None)``."""
    src, dst = graph.edges()
    half = src.shape[0] // 2  # to_dgl stored each tree edge in both directions, first all child -> head
    return torch.stack([src[:half], dst[:half]]), graph.num_nodes(), graph.ndata.get("h")
