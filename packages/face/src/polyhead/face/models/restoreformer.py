"""RestoreFormer++: blind face restoration by cross-attention from degraded features to dictionary priors.

Wang et al., "RestoreFormer++: Towards Real-World Blind Face Restoration from Undegraded Key-Value
Pairs" (TPAMI 2023, arXiv:2308.07228). Stage 1 learns the high-quality dictionary
(:class:`~polyhead.face.models.vqgan.VQAutoencoder`). Stage 2 encodes the degraded face with a second
encoder (initialised from the high-quality one), looks its latents up in the frozen codebook (the
priors), and decodes with the stage-1 decoder while, at several resolutions, multi-head
cross-attention takes queries from the degraded encoder's features and keys/values from the priors.

Attention enters through :mod:`polyhead.attention` only (``attention: {name: multiscale_cross}`` by
default, any variant that supports cross-attention by config). Each fusion site attends to two context
scales: the decoder's prior features at the site's resolution and the dictionary codes at the latent
resolution (the core's ``multiscale_cross`` fuses them with learned per-token scale weights).

How this differs from the reference code: (1) the core variant adds its residual to the query
(degraded) stream, so each site merges ``[prior features, degraded + attended priors]`` with a 1x1 conv
initialised to pass the prior features through (training starts from the stage-1 decoder's output);
variants without a built-in residual get the same residual here; (2) the degraded encoder's latents are
pulled towards the high-quality codes of the same face (``latent_loss``), the dictionary-matching
objective of CodeFormer-style stage-2 training; (3) no facial-component or identity losses (no
pretrained networks offline), narrow widths for CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polyhead.attention.registry import create_attention, get_attention_class
from polyhead.face.models.quantizer import QuantizerOutput
from polyhead.face.models.vqgan import Encoder, VQAutoencoder


class CrossFusion(nn.Module):
    """One fusion site: queries from degraded features, keys/values from prior features at two scales."""

    def __init__(
        self,
        *,
        dim: int,
        degraded_dim: int,
        context_dims: Sequence[int],
        heads: int,
        attention: dict[str, Any] | None,
        resolution: int,
    ) -> None:
        super().__init__()
        cfg = dict(attention or {"name": "multiscale_cross"})
        name = cfg.pop("name", "multiscale_cross")
        cls = get_attention_class(name)
        if not getattr(cls, "supports_cross", True):
            raise ValueError(
                f"attention {name!r} does not support cross-attention; RestoreFormer++ needs a variant "
                "with supports_cross (e.g. multiscale_cross, mha, moh, gaam)"
            )
        self.multiscale = name == "multiscale_cross"
        if self.multiscale:
            cfg.setdefault("num_scales", len(context_dims))
        self.attn = create_attention(name, dim=dim, num_heads=heads, **cfg)
        self.resolution = resolution
        self.q_proj = nn.Conv2d(degraded_dim, dim, 1)
        self.ctx_proj = nn.ModuleList(nn.Linear(c, dim) for c in context_dims)
        self.merge = nn.Conv2d(2 * dim, dim, 1)
        with torch.no_grad():  # start as the identity on the prior features
            self.merge.weight.zero_()
            self.merge.weight[:, :dim, 0, 0] = torch.eye(dim)
            assert self.merge.bias is not None  # Conv2d's default bias=True
            self.merge.bias.zero_()

    def forward(self, h: Tensor, degraded: Tensor, context: Sequence[Tensor]) -> Tensor:
        B, C, H, W = h.shape
        q = self.q_proj(degraded).flatten(2).transpose(1, 2)  # (B, H*W, C)
        ctx = [p(c.flatten(2).transpose(1, 2)) for p, c in zip(self.ctx_proj, context, strict=True)]
        if self.multiscale:
            out = self.attn(q, ctx, shape=(H, W))
            fused = out.output
        else:
            out = self.attn(q, torch.cat(ctx, 1), shape=(H, W))
            fused = q + out.output
        fused_map = fused.transpose(1, 2).reshape(B, C, H, W)
        return self.merge(torch.cat([h, fused_map], 1))


@dataclass
class RestoreOutput:
    image: Tensor  # (B, 3, R, R) in [-1, 1]
    quant: QuantizerOutput  # lookup of the degraded latents in the dictionary
    latent: Tensor  # degraded encoder's pre-quantisation latent
    extras: dict[str, Tensor] = field(default_factory=dict)


class RestoreFormerPP(nn.Module):
    """The two-stage model: the VQ dictionary (``vq``) and the stage-2 restorer around it.

    Args:
        resolution, channels, channel_mult, z_dim, num_codes: the dictionary (see VQAutoencoder).
        heads: cross-attention heads (RestoreFormer++: 4).
        fusion_resolutions: decoder resolutions with a fusion site (default: the latent resolution and
            twice it, the paper's 16 and 32 at 512 px scaled to this model).
        attention: attention config ``{name: ..., **options}`` for every fusion site.
    """

    def __init__(
        self,
        *,
        resolution: int = 64,
        channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        z_dim: int = 64,
        num_codes: int = 512,
        heads: int = 4,
        fusion_resolutions: Sequence[int] | None = None,
        attention: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.vq = VQAutoencoder(
            resolution=resolution,
            channels=channels,
            channel_mult=channel_mult,
            z_dim=z_dim,
            num_codes=num_codes,
        )
        enc = self.vq.encoder
        self.lq_encoder = Encoder(
            channels=channels, channel_mult=channel_mult, z_dim=z_dim, resolution=resolution
        )
        lat = enc.latent_resolution
        self.fusion_resolutions = tuple(fusion_resolutions or (lat, 2 * lat))
        dec_w = self.vq.decoder.widths
        self.fusions = nn.ModuleDict()
        for r in self.fusion_resolutions:
            if r not in dec_w or r not in enc.widths:
                raise ValueError(
                    f"fusion resolution {r} is not a decoder resolution; choose from {sorted(dec_w)}"
                )
            self.fusions[str(r)] = CrossFusion(
                dim=dec_w[r],
                degraded_dim=enc.widths[r] if r != lat else enc.widths[lat],
                context_dims=(dec_w[r], z_dim),
                heads=heads,
                attention=attention,
                resolution=r,
            )
        self.stage = 1

    # ---- stage control --------------------------------------------------------------------------
    def start_stage2(self, *, copy_encoder: bool = True) -> None:
        """Freeze the dictionary (high-quality encoder and codebook); init the degraded encoder from it."""
        if copy_encoder:
            self.lq_encoder.load_state_dict(copy.deepcopy(self.vq.encoder.state_dict()))
        for p in [*self.vq.encoder.parameters(), *self.vq.quantizer.parameters()]:
            p.requires_grad_(False)
        self.stage = 2

    # ---- forward passes -------------------------------------------------------------------------
    def reconstruct(self, hq: Tensor) -> tuple[Tensor, QuantizerOutput, Tensor]:
        """Stage 1: reconstruct high-quality faces through the dictionary."""
        return self.vq(hq)

    @torch.no_grad()
    def hq_codes(self, hq: Tensor) -> Tensor:
        """The dictionary codes of the high-quality face (targets for the degraded latents)."""
        z, _ = self.vq.encoder(hq)
        return self.vq.quantizer.codes(self.vq.quantizer.lookup_map(z))

    def restore(self, lq: Tensor) -> RestoreOutput:
        """Restore ``lq (B, 3, R, R)`` in [-1, 1].

        Before stage 2 this is the dictionary-only restorer (encode with the high-quality encoder, look
        up, decode); from stage 2 on, the full RestoreFormer++ path.
        """
        if self.stage == 1:
            img, q, z = self.vq(lq)
            return RestoreOutput(img, q, z)
        z, feats = self.lq_encoder(lq)
        q = self.vq.quantizer(z)
        codes = q.z_q

        def fuse(r: int, h: Tensor) -> Tensor:
            if str(r) not in self.fusions:
                return h
            return self.fusions[str(r)](h, feats[r], [h, codes])

        return RestoreOutput(self.vq.decoder(codes, fuse), q, z)

    def forward(self, lq: Tensor) -> Tensor:
        return self.restore(lq).image
