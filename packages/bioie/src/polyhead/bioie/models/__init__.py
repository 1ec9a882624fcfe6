"""Relation models: AGGCN (the paper's), the C-GCN tree baseline and a Transformer baseline."""

from __future__ import annotations

from typing import Any

from torch import nn

from polyhead.bioie.models.aggcn import AGGCN
from polyhead.bioie.models.transformer import RelationTransformer
from polyhead.bioie.models.tree_gcn import TreeGCN

MODELS = {"aggcn": AGGCN, "tree_gcn": TreeGCN, "transformer": RelationTransformer}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)


__all__ = ["AGGCN", "MODELS", "RelationTransformer", "TreeGCN", "build_model"]
