"""Shared callbacks: attention-map logging (and its degradation), plain progress lines."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from example_task import PointerData, PointerModel
from torch import nn

from polyhead.train.callbacks import AttentionMapLogger, LogLinesProgressBar


class NoAttention(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.out = nn.Linear(8, 16)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.out(self.emb(x).mean(1)), y)

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.out(self.emb(x).mean(1)), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path: Path, cb: pl.Callback) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        callbacks=[cb, LogLinesProgressBar(every_n_steps=1)],
        accelerator="cpu",
    )


def test_attention_logger_degrades_without_attention(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cb = AttentionMapLogger()
    _trainer(tmp_path, cb).fit(NoAttention(), datamodule=PointerData(num_train=128, num_val=64))
    assert cb.disabled_reason is not None
    captured = capsys.readouterr()
    assert "attention-map logging disabled" in captured.err
    assert "[fit] epoch 0 batch 2/2" in captured.out  # plain progress lines


def test_attention_logger_writes_heatmaps(tmp_path: Path) -> None:
    pytest.importorskip("polyhead.attention.analysis")
    cb = AttentionMapLogger(max_heads=2)
    trainer = _trainer(tmp_path, cb)
    trainer.fit(PointerModel(heads=2), datamodule=PointerData(num_train=128, num_val=64))
    assert cb.disabled_reason is None
    pngs = list((tmp_path / "media").glob("attention_attn_step*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000


class BuiltInSetup(pl.LightningModule):
    """Builds its attention network in `setup` (as the ctr and speech modules do, from the data)."""

    def __init__(self) -> None:
        super().__init__()
        self.net: PointerModel | None = None

    def setup(self, stage: str) -> None:
        if self.net is None:
            self.net = PointerModel(heads=2)

    def training_step(self, batch, batch_idx):
        return self.net.training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_attention_logger_finds_modules_built_in_setup(tmp_path: Path) -> None:
    pytest.importorskip("polyhead.attention.analysis")
    cb = AttentionMapLogger(max_heads=2)
    _trainer(tmp_path, cb).fit(BuiltInSetup(), datamodule=PointerData(num_train=128, num_val=64))
    assert cb.disabled_reason is None
    pngs = list((tmp_path / "media").glob("attention_net.attn_step*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000
