"""Features: 80-dim log-mel filterbanks with per-utterance CMVN, SpecAugment and speed perturbation.

Fbank: 25 ms Hann windows every 10 ms, 512-point FFT, 80 mel bands (torchaudio's MelSpectrogram), log with
a floor; CMVN normalises each mel band to zero mean and unit variance over the utterance's frames.
SpecAugment (Park et al. 2019, arXiv:1904.08779): ``freq_masks`` bands of width < ``freq_width`` and
``time_masks`` spans of width < ``time_width`` frames (at most ``max_time_ratio`` of the utterance) are set
to zero (the mean after CMVN), vectorised over the batch and respecting each utterance's length.
Speed perturbation (Ko et al. 2015): resample by factor ``s`` and keep the rate, which changes tempo and
pitch together.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Fbank(nn.Module):
    """``(samples,)`` or ``(B, samples)`` -> ``(frames, n_mels)`` / ``(B, frames, n_mels)`` log-mel + CMVN."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, cmvn: bool = True) -> None:
        super().__init__()
        import torchaudio

        if sample_rate < 8000 or n_mels < 8:
            raise ValueError(f"Fbank needs sample_rate >= 8000 and n_mels >= 8, got {sample_rate}, {n_mels}")
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=512, win_length=int(0.025 * sample_rate),
            hop_length=int(0.010 * sample_rate), n_mels=n_mels, power=2.0, center=False,
        )  # fmt: skip
        self.cmvn = cmvn
        self.sample_rate, self.n_mels = sample_rate, n_mels

    def config(self) -> dict:
        """What a run stores with its checkpoint; :meth:`from_config` rebuilds the same features."""
        return {"sample_rate": self.sample_rate, "n_mels": self.n_mels, "cmvn": self.cmvn, "n_fft": 512,
                "win_ms": 25, "hop_ms": 10, "log_floor": 1e-6, "cmvn_scope": "utterance"}  # fmt: skip

    @classmethod
    def from_config(cls, d: dict | None) -> Fbank:
        d = d or {}
        return cls(sample_rate=int(d.get("sample_rate", 16000)), n_mels=int(d.get("n_mels", 80)),
                   cmvn=bool(d.get("cmvn", True)))  # fmt: skip

    def num_frames(self, samples: int) -> int:
        """Frames of a ``samples``-long signal (no centring: the 512-point frame must fit)."""
        hop = int(0.010 * self.sample_rate)
        return 1 + (samples - 512) // hop if samples >= 512 else 0

    @torch.no_grad()
    def forward(self, wav: Tensor) -> Tensor:
        feats = (self.mel(wav.float()) + 1e-6).log().transpose(-1, -2)  # (..., frames, n_mels)
        if self.cmvn:
            feats = (feats - feats.mean(-2, keepdim=True)) / (feats.std(-2, keepdim=True) + 1e-5)
        return feats


def spec_augment(
    feats: Tensor,
    lengths: Tensor,
    *,
    freq_masks: int = 2,
    freq_width: int = 27,
    time_masks: int = 2,
    time_width: int = 40,
    max_time_ratio: float = 0.05,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Masks ``(B, T, F)`` features in place-free fashion; returns the masked copy."""
    B, T, F = feats.shape
    dev = feats.device
    g = generator

    def spans(n: int, width: Tensor, limit: Tensor) -> Tensor:  # -> (B, n, 2) [start, end)
        w = (torch.rand(B, n, generator=g) * width[:, None]).long()
        start = (torch.rand(B, n, generator=g) * (limit[:, None] - w).clamp(min=1)).long()
        return torch.stack([start, start + w], -1).to(dev)

    keep = torch.ones(B, T, F, dtype=torch.bool, device=dev)
    if freq_masks:
        fs = spans(freq_masks, torch.full((B,), float(freq_width)), torch.full((B,), F))
        f = torch.arange(F, device=dev)
        hit = ((f >= fs[..., :1]) & (f < fs[..., 1:])).any(1)  # (B, F)
        keep &= ~hit[:, None, :]
    if time_masks:
        tw = torch.minimum(torch.full((B,), float(time_width)), lengths.float().cpu() * max_time_ratio + 1)
        ts = spans(time_masks, tw, lengths.cpu())
        t = torch.arange(T, device=dev)
        hit = ((t >= ts[..., :1]) & (t < ts[..., 1:])).any(1)  # (B, T)
        keep &= ~hit[:, :, None]
    return feats.masked_fill(~keep, 0.0)


def speed_perturb(wav: Tensor, factor: float, sample_rate: int = 16000) -> Tensor:
    """Play ``factor`` times faster (tempo and pitch), same sample rate."""
    if factor == 1.0:
        return wav
    import torchaudio.functional as AF

    return AF.resample(wav, round(sample_rate * factor), sample_rate)
