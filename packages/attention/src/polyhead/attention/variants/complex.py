"""ComplexFormer-style head-specific complex rotation attention. EXPERIMENTAL.

"ComplexFormer: Disruptively Advancing Transformer Inference Ability via Head-Specific Complex Vector
Attention" (2025, arXiv:2505.10222). **The paper was withdrawn by its authors**; this variant is kept as
an experiment and has no reference numbers to match.

Pairs of query/key channels are complex numbers ``z = r e^{i theta}``. Each head h learns how much of the
semantic angle difference and of the relative position enters the score:
``score(n, m) = sum_d r_q r_k cos(a_h (theta_q - theta_k) + b_h w_d (n - m))`` with RoPE frequencies
``w_d``. With ``a_h = b_h = 1`` this is exactly rotary attention (RoPE); the score factorises into a
query-side and a key-side rotation, so any dot-product backend computes it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


@register_attention("complex")
class ComplexRotationAttention(AttentionBase):
    """Head-specific complex-rotation attention (experimental; the paper was withdrawn).

    Args:
        dim: token width.
        num_heads: heads (``dim / num_heads`` must be even: channel pairs are complex numbers).
        causal: mask future keys.
        rope_base: base of the rotary frequencies.
        backend: ``functional.attention`` backend.
    """

    backends = ("math", "sdpa", "flex")
    supports_causal = True
    freqs: Tensor  # registered buffer: rotary frequencies (head_dim / 2,)

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        causal: bool = False,
        rope_base: float = 10000.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if self.head_dim % 2:
            raise ValueError(f"complex attention needs an even head dim, got dim/num_heads = {self.head_dim}")
        self.causal = causal
        self.backend = backend
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.angle_scale = nn.Parameter(torch.ones(num_heads))  # a_h
        self.position_scale = nn.Parameter(torch.ones(num_heads))  # b_h
        half = self.head_dim // 2
        self.register_buffer(
            "freqs", rope_base ** (-torch.arange(half, dtype=torch.float64) / half), persistent=False
        )

    def rotate(self, t: Tensor, positions: Tensor) -> Tensor:
        """``r e^{i (a_h theta + b_h w pos)}`` as interleaved real/imag channels: ``(B, H, L, Dh)``."""
        re, im = t[..., 0::2], t[..., 1::2]
        r = torch.sqrt(re**2 + im**2 + 1e-12)
        theta = torch.atan2(im, re)
        a = self.angle_scale.to(t.dtype)[None, :, None, None]
        b = self.position_scale.to(t.dtype)[None, :, None, None]
        phase = a * theta + b * (positions.to(t.dtype)[:, None] * self.freqs.to(t.dtype)[None, :])[None, None]
        return torch.stack([r * torch.cos(phase), r * torch.sin(phase)], dim=-1).flatten(-2)

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        src = x if context is None else context
        S = src.shape[1]
        q = self.split_heads(self.q_proj(x))
        k, v = self.split_heads(self.kv_proj(src), 2)
        q = self.rotate(q, torch.arange(L, device=x.device) + (S - L))
        k = self.rotate(k, torch.arange(S, device=x.device))
        res = attention(
            q,
            k,
            v,
            mask=mask,
            causal=self.causal,
            scale=1 / math.sqrt(self.head_dim),
            backend=self.backend,
            need_weights=need_weights,
        )
        o, w = res if isinstance(res, tuple) else (res, None)
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w)
