"""AutoInt and AutoInt+ (Song et al., "AutoInt: Automatic Feature Interaction Learning via
Self-Attentive Neural Networks", CIKM 2019, arXiv:1810.11921).

Field embeddings (d = 16) pass through stacked *interacting layers*: multi-head self-attention over the
fields with a residual connection, ``ReLU(attention(e) + W_res e)``. Each head has attention size
``d' = 32``; the heads' outputs are concatenated, so every layer works at width ``heads * d'`` (64 with the
paper's 2 heads). polyhead's attention modules keep the token width, so the first layer projects the
16-dim embeddings to that width before the attention (the paper's per-head W_query/W_key/W_value
projections from 16 to 32 are then the attention module's own projections). The attention module's output
projection W_o is kept by default; the paper's layer has none (the heads' outputs are concatenated as they
are), which ``out_proj=False`` gives. The output concatenates all fields and a linear layer gives the
logit. AutoInt+ adds a parallel DNN on the raw embeddings and sums the two logits; ``wide`` adds a
first-order (logistic-regression) logit. The attention variant is configurable (``attention``), ``mha`` by
default.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from polyhead.attention import create_attention
from polyhead.ctr.models.baselines import MLP, LogisticRegression
from polyhead.ctr.models.embedding import FieldEmbedding


class InteractingLayer(nn.Module):
    """``ReLU(MHSA(e) + W_res e)`` over field embeddings ``(B, F, in_dim) -> (B, F, width)``."""

    def __init__(
        self, in_dim: int, width: int, heads: int, attention: dict[str, Any], out_proj: bool = True
    ) -> None:
        super().__init__()
        self.inp = nn.Identity() if in_dim == width else nn.Linear(in_dim, width, bias=False)
        kw = {k: v for k, v in attention.items() if k != "name"}
        self.attn = create_attention(attention.get("name", "mha"), dim=width, num_heads=heads, **kw)
        if not out_proj and isinstance(getattr(self.attn, "out_proj", None), nn.Linear):
            # AutoInt concatenates the heads without W_o; every variant's output projection is its last step.
            self.attn.out_proj = nn.Identity()
        self.res = nn.Linear(in_dim, width, bias=False)

    def forward(self, e: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.attn(self.inp(e))
        return torch.relu(out.output + self.res(e)), out.aux_loss


class AutoInt(nn.Module):
    """AutoInt / AutoInt+ logits from encoded fields.

    Args:
        cardinalities: per-field index counts.
        embed_dim: d (paper: 16).
        num_layers: interacting layers (paper: 3).
        num_heads: heads per layer (paper: 2).
        attn_size: d' per head (paper: 32).
        attention: attention variant config, e.g. ``{"name": "mha"}``.
        dnn_hidden: hidden sizes of the parallel DNN (AutoInt+); empty for plain AutoInt.
        dropout: DNN dropout.
        wide: add a logistic-regression (first-order) logit, as DeepCTR-Torch's AutoInt always does and
            FuxiCTR's ``use_wide`` option; the paper's AutoInt has none.
        init_std: draw the interacting layers' projection weights (the attention module's and the residual
            W_res) from N(0, init_std) with zero biases, as DeepCTR-Torch's InteractingLayer does (0.05);
            None keeps PyTorch's default Linear init (Kaiming-uniform, std 1/sqrt(3 fan_in)). The README
            (Models) gives the measured effect of each choice.
        out_proj: keep the attention module's output projection W_o (default); the paper's layer,
            DeepCTR-Torch's and FuxiCTR's have none (README, Models: measured with and without).
    """

    def __init__(
        self,
        cardinalities: list[int],
        *,
        embed_dim: int = 16,
        num_layers: int = 3,
        num_heads: int = 2,
        attn_size: int = 32,
        attention: dict[str, Any] | None = None,
        dnn_hidden: list[int] | None = None,
        dropout: float = 0.0,
        wide: bool = False,
        out_proj: bool = True,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        attention = attention or {"name": "mha"}
        F = len(cardinalities)
        width = num_heads * attn_size
        self.embedding = FieldEmbedding(cardinalities, embed_dim)
        self.layers = nn.ModuleList(
            InteractingLayer(embed_dim if i == 0 else width, width, num_heads, attention, out_proj)
            for i in range(num_layers)
        )
        if init_std is not None:
            for layer in self.layers:
                for m in layer.modules():
                    if isinstance(m, nn.Linear):
                        nn.init.normal_(m.weight, std=init_std)
                        if m.bias is not None:
                            nn.init.zeros_(m.bias)
        self.out = nn.Linear(F * (width if num_layers else embed_dim), 1)
        self.dnn = MLP(F * embed_dim, dnn_hidden, dropout) if dnn_hidden else None
        self.wide = LogisticRegression(cardinalities) if wide else None

    def forward(self, idx: Tensor, val: Tensor) -> tuple[Tensor, Tensor | None]:
        e = self.embedding(idx, val)  # (B, F, d)
        h = e
        aux = None
        for layer in self.layers:
            h, a = layer(h)
            if a is not None:
                aux = a if aux is None else aux + a
        logit = self.out(h.flatten(1)).squeeze(-1)
        if self.dnn is not None:
            logit = logit + self.dnn(e.flatten(1)).squeeze(-1)
        if self.wide is not None:
            logit = logit + self.wide(idx, val)[0]
        return logit, aux
