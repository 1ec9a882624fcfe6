"""Dependency trees as graphs: undirected edges, path-centric pruning, dense and PyG batches.

Path-centric pruning is Zhang, Qi and Manning, "Graph Convolution over Pruned Dependency Trees Improves
Relation Extraction" (EMNLP 2018, arXiv:1809.10185): keep the tokens on the shortest dependency path
between the subject and object spans plus every token within distance K of it (K = 1 was best there),
and only the tree edges among the kept tokens. K < 0 keeps the whole tree.

A batch carries the trees both ways so models and benchmarks can choose: a dense padded adjacency
``(B, L, L)`` (one ``bmm`` per layer; what the attention-guided layers need anyway) and a PyTorch Geometric
``edge_index`` over the batch's concatenated tokens (``torch_geometric.data.Batch``; message passing with
``scatter``), without the ``L^2`` padding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def tree_edges(heads: np.ndarray) -> np.ndarray:
    """``(2, n - roots)`` child -> head edges, 0-based, from 1-based heads (0 = root)."""
    child = np.nonzero(heads > 0)[0]
    return np.stack([child, heads[child] - 1]).astype(np.int64)


def prune_to_path(heads: np.ndarray, subj: tuple[int, int], obj: tuple[int, int], k: int = 1) -> np.ndarray:
    """Boolean keep-mask of the tokens within distance ``k`` of the subject-object dependency path."""
    n = len(heads)
    if k < 0:
        return np.ones(n, dtype=bool)
    parent = heads.astype(np.int64) - 1  # -1 for roots

    def ancestors(i: int) -> list[int]:
        out = [i]
        while parent[out[-1]] >= 0 and len(out) <= n:
            out.append(int(parent[out[-1]]))
        return out

    s_anc = [ancestors(i) for i in range(subj[0], subj[1] + 1)]
    o_anc = [ancestors(i) for i in range(obj[0], obj[1] + 1)]
    s_set = set().union(*map(set, s_anc))
    o_set = set().union(*map(set, o_anc))
    common = s_set & o_set
    keep = np.zeros(n, dtype=bool)
    if not common:  # two trees (e.g. a forest from a sentence window): keep both root paths
        keep[list(s_set | o_set)] = True
    else:
        # every chain walks up to its first common node: the union is the path through the LCA(s)
        for chain in s_anc + o_anc:
            for node in chain:
                keep[node] = True
                if node in common:
                    break
    if k > 0:
        e = tree_edges(heads)
        adj = np.zeros((n, n), dtype=bool)
        adj[e[0], e[1]] = adj[e[1], e[0]] = True
        for _ in range(k):
            keep = keep | adj[keep].any(axis=0)
    return keep


def pruned_edges(heads: np.ndarray, subj: tuple[int, int], obj: tuple[int, int], k: int) -> np.ndarray:
    """Tree edges (child -> head) whose two ends survive the pruning."""
    e = tree_edges(heads)
    keep = prune_to_path(heads, subj, obj, k)
    return e[:, keep[e[0]] & keep[e[1]]]


def dense_adjacency(edges: list[np.ndarray], lengths: list[int], max_len: int) -> Tensor:
    """Symmetric ``(B, L, L)`` 0/1 float adjacency from per-example edge lists (no self loops)."""
    b = len(edges)
    counts = [e.shape[1] for e in edges]
    batch = np.repeat(np.arange(b), counts)
    cat = np.concatenate(edges, axis=1) if b else np.zeros((2, 0), dtype=np.int64)
    adj = torch.zeros(b, max_len, max_len)
    bi, src, dst = torch.from_numpy(batch), torch.from_numpy(cat[0]), torch.from_numpy(cat[1])
    adj[bi, src, dst] = 1.0
    adj[bi, dst, src] = 1.0
    return adj


def batch_edge_index(edges: list[np.ndarray], max_len: int) -> Tensor:
    """``(2, 2E)`` undirected PyG ``edge_index`` over the padded batch flattened to ``B * L`` nodes.

    Node ``b * L + i`` is token ``i`` of example ``b`` (the padded layout the encoders produce), so the
    graph layer needs no gather between the dense and the graph view.
    """
    from torch_geometric.data import Batch, Data

    graphs = [Data(edge_index=torch.from_numpy(e), num_nodes=max_len) for e in edges]
    ei = Batch.from_data_list(graphs).edge_index  # PyG offsets each graph by its num_nodes
    return torch.cat([ei, ei.flip(0)], dim=1)
