"""Vector quantisation with a learned codebook: the dictionary of RestoreFormer++'s stage 1.

van den Oord et al., "Neural Discrete Representation Learning" (VQ-VAE, NeurIPS 2017,
arXiv:1711.00937): nearest-code lookup, straight-through gradients, codebook loss
``||sg(z) - e||^2`` plus ``beta * ||z - sg(e)||^2`` (commitment, beta 0.25). RestoreFormer++ uses a
1024 x 256 codebook learned on high-quality faces.

Additions: codebook usage (fraction of codes hit by a batch) and perplexity ``exp(H(p))`` of the code
distribution are returned for logging, and codes whose running usage falls below ``dead_threshold`` of
uniform are re-initialised from random encoder outputs of the current batch (:meth:`reinit_dead`),
the usual fix for codebook collapse (as in Jukebox / "restart" schemes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass
class QuantizerOutput:
    z_q: Tensor  # (B, C, H, W) straight-through quantised latents
    indices: Tensor  # (B, H, W) code ids
    loss: Tensor  # codebook + beta * commitment
    usage: Tensor  # fraction of codes used by this batch
    perplexity: Tensor


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup with dead-code re-initialisation.

    Args:
        num_codes: dictionary size (RestoreFormer++: 1024).
        dim: code width (RestoreFormer++: 256).
        beta: commitment weight.
        usage_decay: decay of the running per-code usage.
        dead_threshold: a code is dead when its running usage is below ``dead_threshold / num_codes``.
    """

    usage: Tensor  # registered buffer: running per-code usage

    def __init__(
        self,
        *,
        num_codes: int = 1024,
        dim: int = 256,
        beta: float = 0.25,
        usage_decay: float = 0.99,
        dead_threshold: float = 0.03,
    ) -> None:
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise ValueError(f"num_codes must be >= 2 and dim >= 1, got {num_codes}, {dim}")
        if not 0 < usage_decay < 1:
            raise ValueError(f"usage_decay must lie in (0, 1), got {usage_decay}")
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.usage_decay, self.dead_threshold = usage_decay, dead_threshold
        self.codebook = nn.Embedding(num_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1 / num_codes, 1 / num_codes)
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))

    def lookup(self, z: Tensor) -> Tensor:
        """Nearest code id for each vector of ``z (N, C)``."""
        e = self.codebook.weight
        d = (z * z).sum(1, keepdim=True) - 2 * z @ e.t() + (e * e).sum(1)[None]  # (N, K)
        return d.argmin(1)

    def forward(self, z: Tensor) -> QuantizerOutput:
        B, C, H, W = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, C)
        idx = self.lookup(flat.detach())
        q = self.codebook(idx)
        loss = F.mse_loss(q, flat.detach()) + self.beta * F.mse_loss(flat, q.detach())
        q_st = flat + (q - flat).detach()
        counts = torch.bincount(idx, minlength=self.num_codes).float()
        p = counts / counts.sum()
        if self.training:
            self.usage.mul_(self.usage_decay).add_(p, alpha=1 - self.usage_decay)
        perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
        return QuantizerOutput(
            z_q=q_st.view(B, H, W, C).permute(0, 3, 1, 2),
            indices=idx.view(B, H, W),
            loss=loss,
            usage=(counts > 0).float().mean(),
            perplexity=perplexity,
        )

    def lookup_map(self, z: Tensor) -> Tensor:
        """Nearest code ids of a latent map ``(B, C, H, W)`` -> ``(B, H, W)``."""
        B, C, H, W = z.shape
        return self.lookup(z.permute(0, 2, 3, 1).reshape(-1, C)).view(B, H, W)

    def codes(self, indices: Tensor) -> Tensor:
        """Code vectors for ``indices (B, H, W)`` -> ``(B, C, H, W)``."""
        return self.codebook(indices).permute(0, 3, 1, 2)

    @torch.no_grad()
    def reinit_dead(self, z: Tensor) -> int:
        """Re-initialise dead codes from random vectors of ``z (B, C, H, W)``; returns how many."""
        dead = self.usage < self.dead_threshold / self.num_codes
        n = int(dead.sum())
        if n == 0:
            return 0
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, self.dim)
        pick = torch.randint(flat.shape[0], (n,), device=flat.device)
        noise = torch.randn(n, self.dim, device=flat.device) * flat.std() * 0.01
        self.codebook.weight.data[dead] = flat[pick] + noise
        self.usage[dead] = 1.0 / self.num_codes
        return n
