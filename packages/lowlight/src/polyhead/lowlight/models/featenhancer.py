"""FeatEnHancer: task-driven hierarchical feature enhancement in front of a detector.

Hashmi et al., "FeatEnHancer: Enhancing Hierarchical Features for Object Detection and Beyond Under
Low-Light Vision" (ICCV 2023, arXiv:2308.03594).

- Scales: the image at full resolution and down-sampled to 1/4 and 1/8 (area averaging, so that the curves
  still act on intensities).
- Feature enhancement network per scale: a Zero-DCE-like curve estimator (:class:`DCENet`, own weights per
  scale) whose curve maps enhance that scale and whose last hidden features describe it.
- Scale-aware attentional fusion: every scale's features are pooled to the 1/8 grid and projected to
  ``dim``-wide tokens (plus a learned scale embedding); multi-head attention from the full-scale tokens
  (queries) to the tokens of all scales (keys/values) fuses them, so each head weights each scale by its
  usefulness for the task. The attention comes from ``polyhead.attention`` by config: the default
  ``multiscale_cross`` takes the scales as separate contexts with per-scale projections and a learned scale
  gate; any variant that can cross-attend gets the concatenated scale tokens; a self-attention-only variant
  attends over all scale tokens (as a ``(3h, w)`` grid for 2-D variants).
- Output: the fused map is up-sampled and projected to a 3-channel residual, added to the full-scale
  curve-enhanced image: the enhanced representation the detector sees. Trained end to end with the
  detection loss only.

Differences from the reference: the paper feeds enhanced features of several resolutions into the
detector's backbone hierarchy; here the detector stays a stock torchvision model, so the fused
representation enters at the input. The per-scale enhancers are narrower (``channels``) for CPU budgets.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyhead.attention import AttentionBase, create_attention, get_attention_class
from polyhead.lowlight.models.zero_dce import DCENet, apply_curves

SCALES = (1, 4, 8)  # full, 1/4, 1/8


class FeatEnHancer(nn.Module):
    """Image ``(B, 3, H, W)`` in [0, 1] -> enhanced representation ``(B, 3, H, W)``.

    Args:
        channels: width of each scale's curve estimator.
        iterations: curve iterations per scale.
        depth: convolutions per curve estimator.
        dim: token width of the attention fusion.
        num_heads: fusion heads.
        attention: ``polyhead.attention`` config ``{"name": ..., **options}`` (default ``multiscale_cross``).
    """

    def __init__(
        self,
        *,
        channels: int = 16,
        iterations: int = 8,
        depth: int = 5,
        dim: int = 32,
        num_heads: int = 4,
        attention: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.iterations = iterations
        self.fen = nn.ModuleList(
            DCENet(channels=channels, iterations=iterations, depth=depth) for _ in SCALES
        )
        self.proj = nn.ModuleList(nn.Conv2d(channels + 3, dim, 1) for _ in SCALES)
        self.scale_embed = nn.Parameter(torch.zeros(len(SCALES), dim))
        cfg = dict(attention or {"name": "multiscale_cross"})
        name = cfg.pop("name", "multiscale_cross")
        # the registry is typed as holding nn.Module classes; every registered variant derives from AttentionBase
        cls = cast("type[AttentionBase]", get_attention_class(name))
        if name == "multiscale_cross":
            cfg.setdefault("num_scales", len(SCALES))
        self.attention_name = name
        self.mode = "scales" if name == "multiscale_cross" else ("cross" if cls.supports_cross else "self")
        self.needs_shape = bool(getattr(cls, "needs_shape", False))
        self.fusion = create_attention(name, dim=dim, num_heads=num_heads, **cfg)
        self.num_heads = num_heads
        self.out = nn.Conv2d(dim, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)  # start as the curve-enhanced image; the residual is learnt
        assert self.out.bias is not None  # Conv2d's default bias=True
        nn.init.zeros_(self.out.bias)

    def forward(
        self, x: Tensor, *, return_details: bool = False
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        B, _, H, W = x.shape
        h, w = max(1, H // 8), max(1, W // 8)
        enhanced, tokens = [], []
        for i, s in enumerate(SCALES):
            xs = x if s == 1 else F.adaptive_avg_pool2d(x, (max(1, H // s), max(1, W // s)))
            alphas, feats = self.fen[i](xs)
            e = apply_curves(xs, alphas, self.iterations)
            enhanced.append(e)
            t = self.proj[i](torch.cat([feats, e], dim=1))
            t = F.adaptive_avg_pool2d(t, (h, w)).flatten(2).transpose(1, 2)  # (B, h*w, dim)
            tokens.append(t + self.scale_embed[i])
        query = tokens[0]
        L = query.shape[1]
        if self.mode == "scales":
            res = self.fusion(query, list(tokens), need_weights=return_details)
            fused = res.output  # multiscale_cross adds the query residual itself
        elif self.mode == "cross":
            res = self.fusion(query, torch.cat(tokens, dim=1), need_weights=return_details)
            fused = query + res.output
        else:
            joined = torch.cat(tokens, dim=1)
            shape = (len(SCALES) * h, w) if self.needs_shape else None
            res = self.fusion(joined, shape=shape, need_weights=return_details)
            fused = (joined + res.output).view(B, len(SCALES), L, -1).mean(dim=1)
        self.aux_loss = res.aux_loss
        grid = fused.transpose(1, 2).reshape(B, -1, h, w)
        out = enhanced[0] + self.out(F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False))
        if not return_details:
            return out
        details: dict[str, Tensor] = {
            f"enhanced_{s}": e for s, e in zip(("full", "quarter", "eighth"), enhanced)
        }
        if res.weights is not None:
            # (B, heads, L_q, 3 * L): each head's attention mass on each scale's keys, averaged over queries.
            wts = res.weights.float()
            per_scale = wts.view(*wts.shape[:3], len(SCALES), -1).sum(-1)  # (B, heads, L_q, 3)
            details["scale_weights"] = per_scale.mean(dim=2)  # (B, heads, 3)
        details["representation"] = out
        return out, details
