"""Encoded CTR rows as model tensors, and the data a checkpoint was trained with.

Separate from ``polyhead.ctr.module`` so that importing the Lightning classes (``polyhead-ctr fit --help``)
does not import polars.
"""

from __future__ import annotations

from typing import Any

import polars
import torch
from torch import Tensor

from polyhead.ctr.data.encoder import FeatureEncoder
from polyhead.ctr.data.spec import DatasetSpec, FieldSpec


def frame_to_tensors(df: polars.DataFrame, encoder: FeatureEncoder) -> tuple[Tensor, Tensor]:
    """Encoded columns -> ``idx (N, F)`` int64 and ``val (N, F)`` float32 (1 for categorical fields)."""
    idx = torch.from_numpy(df.select([f"idx_{n}" for n in encoder.names]).to_numpy().astype("int64"))
    val = torch.ones(idx.shape, dtype=torch.float32)
    for j, f in enumerate(encoder.fields):
        if not f.is_categorical:
            val[:, j] = torch.from_numpy(df[f"val_{f.name}"].to_numpy())
    return idx, val


def data_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[FeatureEncoder, DatasetSpec] | None:
    """The feature encoder and data spec a checkpoint was trained with (None for one written without)."""
    if "ctr_encoder" not in checkpoint or "ctr_data_spec" not in checkpoint:
        return None
    spec = dict(checkpoint["ctr_data_spec"])
    spec["fields"] = [FieldSpec(**f) for f in spec["fields"]]
    return FeatureEncoder.from_dict(checkpoint["ctr_encoder"]), DatasetSpec(**spec)
