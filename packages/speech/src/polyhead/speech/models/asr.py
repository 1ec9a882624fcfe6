"""Conformer encoder + Transformer decoder with cross-attention, trained with joint CTC/attention loss.

- Encoder (Gulati et al. 2020, arXiv:2005.08100): two 3x3 stride-2 convolutions (4x subsampling in time),
  a linear projection, then Conformer blocks whose self-attention is any ``polyhead.attention`` variant
  (default ``rel_mha``, Transformer-XL relative positions, as in the paper).
- Decoder: token embedding + sinusoidal positions, pre-norm layers of causal self-attention,
  cross-attention to the encoder output (key padding masked) and an FFN; cross-attention weights can be
  returned per layer and head (the explanation code reads them).
- Loss (Watanabe et al. 2017, "Hybrid CTC/Attention"): ``ctc_weight * CTC + (1 - ctc_weight) * CE`` with
  label smoothing on the decoder, CTC in float32.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from polyhead.attention.blocks import ConformerBlock, build_attention, sinusoidal_positions
from polyhead.attention.variants.mha import MultiHeadAttention
from polyhead.speech.data.tokenizer import BLANK, SOS_EOS


class ConvSubsampling(nn.Module):
    """``(B, T, F) -> (B, T', d)`` with ``T' = ((T - 1) // 2 - 1) // 2``: two 3x3 stride-2 convs + ReLU."""

    def __init__(self, n_mels: int, d_model: int, channels: int = 144) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2),
            nn.ReLU(),
        )
        f = ((n_mels - 1) // 2 - 1) // 2
        self.proj = nn.Linear(channels * f, d_model)

    @staticmethod
    def output_lengths(lengths: Tensor) -> Tensor:
        return ((lengths - 1) // 2 - 1) // 2

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(x[:, None])  # (B, C, T', F')
        B, C, T, F = h.shape
        return self.proj(h.permute(0, 2, 1, 3).reshape(B, T, C * F))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, attention: dict[str, Any] | None) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = build_attention({**(attention or {"name": "mha"}), "causal": True}, dim, heads)
        self.cross_attn = build_attention(attention or {"name": "mha"}, dim, heads)
        self.ff = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, y: Tensor, y_mask: Tensor, memory: Tensor, mem_mask: Tensor, need_weights: bool
    ) -> tuple[Tensor, Tensor | None]:
        y = y + self.drop(self.self_attn(self.norm1(y), mask=y_mask).output)
        out = self.cross_attn(self.norm2(y), memory, mask=mem_mask, need_weights=need_weights)
        y = y + self.drop(out.output)
        y = y + self.drop(self.ff(self.norm3(y)))
        return y, out.weights


class ASRModel(nn.Module):
    """Joint CTC/attention speech recogniser.

    Args:
        vocab_size: tokenizer size (index 0 = blank, 1 = <sos/eos>).
        n_mels: input feature dimension.
        d_model, encoder_layers, decoder_layers, heads, conv_kernel, dropout: sizes (Conformer-S-like
            defaults scaled to CPU).
        attention: encoder self-attention config (default ``{"name": "rel_mha"}``).
        decoder_attention: decoder attention config (default ``{"name": "mha"}``).
    """

    def __init__(
        self, vocab_size: int, *, n_mels: int = 80, d_model: int = 144, encoder_layers: int = 8,
        decoder_layers: int = 2, heads: int = 4, conv_kernel: int = 15, dropout: float = 0.1,
        attention: dict[str, Any] | None = None, decoder_attention: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.subsample = ConvSubsampling(n_mels, d_model)
        self.enc_drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(
            ConformerBlock(
                d_model,
                heads,
                kernel=conv_kernel,
                dropout=dropout,
                attention=attention or {"name": "rel_mha"},
            )
            for _ in range(encoder_layers)
        )
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.embed = nn.Embedding(vocab_size, d_model)
        # N(0, 1/d) so that the sqrt(d)-scaled embedding has unit variance per dimension, like the sinusoidal
        # positions added to it (Vaswani et al.'s scheme). With PyTorch's N(0, 1) default the scaled
        # embedding was sqrt(d) times larger than the positions, the decoder could not tell positions apart,
        # and it looped ("the the the", "seveveveve") while CTC learnt.
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.decoder = nn.ModuleList(
            DecoderLayer(d_model, heads, dropout, decoder_attention) for _ in range(decoder_layers)
        )
        self.dec_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.d_model, self.vocab_size, self.num_heads = d_model, vocab_size, heads

    def encode(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(B, T, F)`` -> encoder output ``(B, T', d)``, lengths ``(B,)``, key mask ``(B, T')`` (True = frame)."""
        h = self.enc_drop(self.subsample(feats))
        out_len = ConvSubsampling.output_lengths(lengths).clamp(min=1, max=h.shape[1])
        mask = torch.arange(h.shape[1], device=h.device)[None, :] < out_len[:, None]
        for block in self.encoder:
            h = block(h, mask)
        return h, out_len, mask

    def ctc_log_probs(self, enc: Tensor) -> Tensor:
        return self.ctc_head(enc).float().log_softmax(-1)

    def decode_step(
        self, ys: Tensor, ys_mask: Tensor, memory: Tensor, mem_mask: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, list[Tensor | None]]:
        """Teacher-forced decoder: ``ys (B, U)`` token ids -> logits ``(B, U, V)`` and per-layer cross weights."""
        U = ys.shape[1]
        y = self.embed(ys) * self.d_model**0.5 + sinusoidal_positions(
            U, self.d_model, ys.device, memory.dtype
        )
        weights = []
        for layer in self.decoder:
            y, w = layer(y, ys_mask, memory, mem_mask, need_weights)
            weights.append(w)
        return self.out(self.dec_norm(y)), weights

    def supports_incremental(self) -> bool:
        """Whether :meth:`decode_next` equals :meth:`decode_step`: plain ``mha`` decoder self-attention (no
        relative-position bias), whose causal mask is bottom-right aligned, so one new query over the cached
        prefix is exactly the last row of the full causal attention."""
        return all(
            isinstance(layer.self_attn, MultiHeadAttention) and layer.self_attn.rel_pos_max_distance is None
            for layer in self.decoder
        )

    def decode_next(
        self, tokens: Tensor, memory: Tensor, mem_mask: Tensor, cache: list[Tensor] | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """One incremental decoder step for ``tokens (n,)`` at position ``t`` (= the cache length).

        Returns logits ``(n, V)`` for the next token and the new cache: per layer, the normalised
        self-attention inputs of positions ``0..t``, ``(n, t + 1, d)`` (reorder its first dimension with the
        beams). Costs one position per step instead of the whole prefix.
        """
        t = 0 if cache is None else cache[0].shape[1]
        pos = sinusoidal_positions(t + 1, self.d_model, tokens.device, memory.dtype)[t:]  # (1, d)
        y = self.embed(tokens)[:, None] * self.d_model**0.5 + pos  # (n, 1, d)
        new_cache = []
        for i, module in enumerate(self.decoder):
            layer = cast(DecoderLayer, module)
            h = layer.norm1(y)
            prefix = h if cache is None else torch.cat([cache[i], h], 1)  # (n, t + 1, d)
            new_cache.append(prefix)
            y = y + layer.drop(layer.self_attn(h, prefix).output)
            y = y + layer.drop(layer.cross_attn(layer.norm2(y), memory, mask=mem_mask).output)
            y = y + layer.drop(layer.ff(layer.norm3(y)))
        return self.out(self.dec_norm(y))[:, 0], new_cache

    def forward(self, feats: Tensor, lengths: Tensor, targets: list[list[int]]) -> dict[str, Tensor]:
        enc, enc_len, mask = self.encode(feats, lengths)
        dev = feats.device
        ys_in = [torch.tensor([SOS_EOS, *t], device=dev) for t in targets]
        ys_out = [torch.tensor([*t, SOS_EOS], device=dev) for t in targets]
        ys_in_p = nn.utils.rnn.pad_sequence(ys_in, batch_first=True, padding_value=SOS_EOS)
        ys_out_p = nn.utils.rnn.pad_sequence(ys_out, batch_first=True, padding_value=-100)
        ys_mask = ys_out_p != -100
        logits, _ = self.decode_step(ys_in_p, ys_mask, enc, mask)
        return {
            "ctc_log_probs": self.ctc_log_probs(enc),
            "enc_lengths": enc_len,
            "logits": logits,
            "ys_out": ys_out_p,
        }


def joint_loss(
    out: dict[str, Tensor], targets: list[list[int]], *, ctc_weight: float = 0.3, label_smoothing: float = 0.1
) -> tuple[Tensor, dict[str, Tensor]]:
    """``ctc_weight * CTC + (1 - ctc_weight) * label-smoothed CE``; CTC in float32, mean over utterances."""
    lp = out["ctc_log_probs"].transpose(0, 1)  # (T, B, V)
    tgt = torch.cat([torch.tensor(t, dtype=torch.long) for t in targets]).to(lp.device)
    tgt_len = torch.tensor([len(t) for t in targets], device=lp.device)
    ctc = nn.functional.ctc_loss(
        lp, tgt, out["enc_lengths"], tgt_len, blank=BLANK, reduction="none", zero_infinity=True
    )
    ctc = (ctc / tgt_len.clamp(min=1)).mean()
    logits = out["logits"].float()
    ce = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        out["ys_out"].reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
    )
    loss = ctc_weight * ctc + (1 - ctc_weight) * ce
    return loss, {"ctc": ctc.detach(), "att": ce.detach()}
