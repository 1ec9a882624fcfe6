"""Mixture-of-Head attention (MoH).

Jin et al., "MoH: Multi-Head Attention as Mixture-of-Head Attention" (2024, arXiv:2410.11842).
Heads are experts: ``num_shared`` shared heads are always active, and each token activates the top-k of
the routed heads. The per-head outputs are combined by a token-dependent weighted sum instead of a plain
concatenation: shared heads get ``a_s * softmax(W_s x)``, routed heads ``a_r * softmax(W_r x)`` (zero when
not in the token's top-k), with ``[a_s, a_r] = softmax(W_h x)`` balancing the two groups. A load-balance
loss over the routed heads, ``L_b = h_r * sum_i f_i P_i`` (``f_i`` the fraction of tokens routed to head
``i`` among the k picks, ``P_i`` its mean routing probability), is returned as ``aux_loss`` already
multiplied by ``aux_loss_weight`` (paper: beta = 0.01); add it to the task loss.

All heads are computed densely here (the routing weights are applied before the output projection); the
saving the paper reports comes from skipping inactive heads in a sparse kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from polyhead.attention.base import AttentionBase, AttentionOutput
from polyhead.attention.functional import attention
from polyhead.attention.registry import register_attention


@register_attention("moh")
class MixtureOfHeadAttention(AttentionBase):
    """MoH attention.

    Args:
        dim: token width.
        num_heads: total heads (shared + routed).
        num_shared: always-active heads (default: a quarter of the heads, at least 1).
        top_k: routed heads activated per token (default: half of the routed heads, at least 1).
        causal: mask future keys.
        aux_loss_weight: weight beta of the load-balance loss in ``aux_loss``.
        backend: ``functional.attention`` backend.
    """

    backends = ("math", "sdpa", "flex")
    supports_causal = True

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        num_shared: int | None = None,
        top_k: int | None = None,
        causal: bool = False,
        aux_loss_weight: float = 0.01,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim=dim, num_heads=num_heads)
        if num_heads < 2:
            raise ValueError(f"moh needs at least 2 heads (shared + routed), got num_heads={num_heads}")
        num_shared = max(1, num_heads // 4) if num_shared is None else num_shared
        if not 0 < num_shared < num_heads:
            raise ValueError(
                f"num_shared must be in [1, num_heads - 1] = [1, {num_heads - 1}], got {num_shared}"
            )
        routed = num_heads - num_shared
        top_k = max(1, math.ceil(routed / 2)) if top_k is None else top_k
        if not 0 < top_k <= routed:
            raise ValueError(f"top_k must be in [1, {routed}] (the number of routed heads), got {top_k}")
        self.num_shared, self.num_routed, self.top_k = num_shared, routed, top_k
        self.causal = causal
        self.aux_loss_weight = aux_loss_weight
        self.backend = backend
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.shared_router = nn.Linear(dim, num_shared, bias=False)
        self.routed_router = nn.Linear(dim, routed, bias=False)
        self.group_router = nn.Linear(dim, 2, bias=False)

    def routing(self, x: Tensor, token_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Per-token head weights ``(B, L, H)`` and the (unweighted) load-balance loss."""
        shared = torch.softmax(self.shared_router(x), dim=-1)  # (B, L, hs)
        probs = torch.softmax(self.routed_router(x), dim=-1)  # (B, L, hr)
        top = probs.topk(self.top_k, dim=-1).indices
        chosen = torch.zeros_like(probs).scatter_(-1, top, 1.0)  # (B, L, hr) one-hot of the k picks
        group = torch.softmax(self.group_router(x), dim=-1)  # (B, L, 2)
        weights = torch.cat([group[..., :1] * shared, group[..., 1:] * probs * chosen], dim=-1)
        if token_mask is None:
            f = chosen.mean(dim=(0, 1)) / self.top_k
            p = probs.mean(dim=(0, 1))
        else:
            tm = token_mask[..., None].to(probs.dtype)
            n = tm.sum().clamp_min(1)
            f = (chosen * tm).sum(dim=(0, 1)) / (n * self.top_k)
            p = (probs * tm).sum(dim=(0, 1)) / n
        balance = self.num_routed * (f * p).sum()
        return weights, balance

    def _attend(self, x, context, *, mask, shape, need_weights) -> AttentionOutput:
        B, L, _ = x.shape
        src = x if context is None else context
        q = self.split_heads(self.q_proj(x))
        k, v = self.split_heads(self.kv_proj(src), 2)
        res = attention(
            q, k, v, mask=mask, causal=self.causal, backend=self.backend, need_weights=need_weights
        )
        o, w = res if isinstance(res, tuple) else (res, None)  # o: (B, H, L, Dh)
        token_mask = mask if context is None else None  # padded queries do not count for load balance
        head_w, balance = self.routing(x, token_mask)
        o = o * head_w.transpose(1, 2)[..., None]  # weighted sum of heads through the output projection
        o = self.merge_heads(o)
        return AttentionOutput(self.out_proj(o), w, self.aux_loss_weight * balance)
