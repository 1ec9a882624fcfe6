"""Common base of all attention variants: the single call shape, input validation, head gates, capture.

Every variant is called as ``module(x, context=None, *, mask=None, shape=None, need_weights=False)`` and
returns an :class:`AttentionOutput`. Subclasses implement :meth:`AttentionBase._attend`; the base class
validates the inputs once (clear ``ValueError`` naming the argument and the expected shape), applies the
per-head gate used by head masking / importance (:mod:`polyhead.attention.analysis`) and hands the
weights to an active :func:`polyhead.attention.analysis.capture_attention`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, overload

import torch
from torch import Tensor, nn


@dataclass
class AttentionOutput:
    """What every attention variant returns.

    Attributes:
        output: ``(B, L, dim)`` tokens.
        weights: ``(B, heads, L, S)`` attention probabilities when requested, else ``None``.
        aux_loss: scalar auxiliary loss (e.g. MoH load balance), else ``None``.
    """

    output: Tensor
    weights: Tensor | None = None
    aux_loss: Tensor | None = None


class AttentionBase(nn.Module):
    """Base class for registered attention variants.

    Class attributes a variant may override:
        backends: the ``functional.attention`` backends its ``backend=`` option accepts.
        supports_cross: whether ``context`` (cross-attention) is accepted.
        supports_causal: whether the variant takes a ``causal=`` option.
        supports_bidirectional: whether it can attend to later keys (False: causal only, e.g. DuoAttention).
        cross_is_prefix: ``context`` holds earlier keys of the queries' own sequence (a key cache, queries
            aligned to its end), not a second sequence of any length: no encoder-decoder cross-attention.
        needs_shape: whether a 2-D ``shape=(H, W)`` grid is required.
        example_shape: a grid the default options accept (2-D variants), used by generic tests/benchmarks.
    """

    variant_name: str = "?"
    backends: tuple[str, ...] = ("math", "sdpa")
    supports_cross: bool = True
    supports_causal: bool = False
    supports_bidirectional: bool = True
    cross_is_prefix: bool = False
    needs_shape: bool = False
    example_shape: tuple[int, int] | None = None
    # Set on instances by polyhead.attention.blocks.track_aux_loss (declared only: absent until then).
    last_aux_loss: Tensor | None
    _tracks_aux_loss: bool

    def __init__(self, *, dim: int, num_heads: int, head_dim: int | None = None) -> None:
        super().__init__()
        if not isinstance(dim, int) or dim <= 0:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
        if head_dim is None and dim % num_heads != 0:
            raise ValueError(
                f"num_heads ({num_heads}) must divide dim ({dim}); got dim % num_heads = {dim % num_heads}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = head_dim if head_dim is not None else dim // num_heads
        # Per-head multiplicative gate applied before the output projection: None (all heads on),
        # or a (num_heads,) tensor set by polyhead.attention.analysis (ablation, importance).
        self.head_gate: Tensor | None = None
        self._capture_sink: Callable[[AttentionBase, Tensor | None], None] | None = None

    # ---- the one call shape -------------------------------------------------------------------
    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        mask: Tensor | None = None,
        shape: tuple[int, int] | None = None,
        need_weights: bool = False,
    ) -> AttentionOutput:
        self.validate_inputs(x, context, mask, shape)
        sink = self._capture_sink
        capture = sink is not None
        out = self._attend(x, context, mask=mask, shape=shape, need_weights=need_weights or capture)
        if sink is not None:
            sink(self, out.weights)
            if not need_weights:
                out = replace(out, weights=None)
        return out

    def _attend(
        self,
        x: Tensor,
        context: Tensor | None,
        *,
        mask: Tensor | None,
        shape: tuple[int, int] | None,
        need_weights: bool,
    ) -> AttentionOutput:
        raise NotImplementedError

    # ---- shared helpers -----------------------------------------------------------------------
    def validate_inputs(
        self,
        x: Tensor,
        context: Tensor | None,
        mask: Tensor | None,
        shape: tuple[int, int] | None,
    ) -> None:
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name}: x must have shape (B, L, {self.dim}), got {got}")
        B, L, _ = x.shape
        S = L
        if context is not None:
            if not self.supports_cross:
                raise ValueError(f"{name}: context (cross-attention) is not supported by this variant")
            if context.dim() != 3 or context.shape[0] != B or context.shape[-1] != self.dim:
                raise ValueError(
                    f"{name}: context must have shape ({B}, S, {self.dim}), got {tuple(context.shape)}"
                )
            S = context.shape[1]
        if mask is not None:
            if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
                got_mask = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
                raise ValueError(
                    f"{name}: mask must be a bool tensor (True = keep) of shape ({B}, {S}), got {got_mask}"
                )
            if tuple(mask.shape) != (B, S):
                raise ValueError(
                    f"{name}: mask must have shape ({B}, {S}) (batch, keys), got {tuple(mask.shape)}"
                )
        if self.needs_shape:
            if shape is None:
                raise ValueError(f"{name}: shape=(H, W) is required for this 2-D variant (L = {L})")
            if len(shape) != 2 or int(shape[0]) * int(shape[1]) != L:
                raise ValueError(f"{name}: shape {tuple(shape)} does not match L = {L}; expected H * W == L")
        elif shape is not None and (len(shape) != 2 or int(shape[0]) * int(shape[1]) != L):
            raise ValueError(f"{name}: shape {tuple(shape)} does not match L = {L}; expected H * W == L")

    @overload
    def split_heads(self, t: Tensor, parts: Literal[1] = 1) -> Tensor: ...

    @overload
    def split_heads(self, t: Tensor, parts: int) -> Tensor | tuple[Tensor, ...]: ...

    def split_heads(self, t: Tensor, parts: int = 1) -> Tensor | tuple[Tensor, ...]:
        """``(B, L, parts * heads * head_dim)`` projections -> ``parts`` tensors ``(B, heads, L, head_dim)``."""
        B, L, _ = t.shape
        if parts == 1:  # a plain view: selecting from the 5-D permute below costs two copies in the backward
            return t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        t = t.view(B, L, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return tuple(t)

    def merge_heads(self, o: Tensor) -> Tensor:
        """Gate the heads of ``o (B, heads, L, head_dim)`` and concatenate them: ``(B, L, heads * head_dim)``."""
        B, H, L, Dh = o.shape
        return self.gate_heads(o).transpose(1, 2).reshape(B, L, H * Dh)

    def gate_heads(self, o: Tensor) -> Tensor:
        """Apply the per-head gate to per-head outputs ``o`` of shape ``(B, H, L, Dh)``.

        The gate is ``(H,)`` (one value per head) or ``(B, H)`` (per example: head importance uses it to
        get per-example gradients in one backward pass).
        """
        g = self.head_gate
        if g is None:
            return o
        g = g.to(dtype=o.dtype, device=o.device)
        return o * (g.view(1, -1, 1, 1) if g.dim() == 1 else g.view(g.shape[0], -1, 1, 1))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"
