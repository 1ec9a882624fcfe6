"""A tiny but real task for testing polyhead.train end to end: pointer lookup on generated sequences.

Each sample is a sequence of random tokens; its label is the token found at the position named by the
first token (``y = x[x[0] % L]``), which a one-layer attention model learns in a few hundred steps.
Run as a script it is a polyhead CLI (``python example_task.py fit ...``), so Lightning's DDP launcher can
re-launch it.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
import torchmetrics
from torch import nn
from torch.utils.data import TensorDataset

from polyhead.attention import create_attention
from polyhead.train import run_cli, stateful_loader


def make_pointer_data(n: int, length: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, length), generator=g)
    y = x[torch.arange(n), x[:, 0] % length]
    return x, y


class PointerModel(pl.LightningModule):
    """Embedding + one polyhead attention layer + classifier."""

    def __init__(
        self,
        *,
        vocab: int = 16,
        length: int = 12,
        dim: int = 32,
        heads: int = 4,
        attention: str = "mha",
        lr: float = 3e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.1)
        self.attn = create_attention(attention, dim=dim, num_heads=heads)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(2 * dim, vocab)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=vocab)
        self.test_acc = torchmetrics.Accuracy(task="multiclass", num_classes=vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos
        h = self.norm(h + self.attn(h).output)
        return self.head(torch.cat([h[:, 0], h.mean(1)], dim=-1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("test/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc)

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).argmax(-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class PointerData(pl.LightningDataModule):
    """Generated pointer-lookup data, or a ``torch.save``-d ``(x, y)`` pair from ``data_path``."""

    def __init__(
        self,
        *,
        data_path: str | None = None,
        num_train: int = 2048,
        num_val: int = 512,
        length: int = 12,
        vocab: int = 16,
        batch_size: int = 64,
        seed: int = 0,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.cache_dir = cache_dir  # unused by the task; the CLI fills it (<run.root>/example/cache)
        if data_path is not None and not Path(data_path).is_file():
            raise FileNotFoundError(f"data.data_path: no such file: {data_path}")
        self.data_path = data_path
        self.num_train, self.num_val = num_train, num_val
        self.length, self.vocab, self.batch_size, self.seed = length, vocab, batch_size, seed

    def setup(self, stage: str) -> None:
        if self.data_path is not None:
            x, y = torch.load(self.data_path)
            n_val = len(x) // 5
            self.train = TensorDataset(x[n_val:], y[n_val:])
            self.val = TensorDataset(x[:n_val], y[:n_val])
        else:
            self.train = TensorDataset(*make_pointer_data(self.num_train, self.length, self.vocab, self.seed))
            self.val = TensorDataset(*make_pointer_data(self.num_val, self.length, self.vocab, self.seed + 1))

    def train_dataloader(self):
        return stateful_loader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return stateful_loader(self.val, batch_size=256)

    def test_dataloader(self):
        return stateful_loader(self.val, batch_size=256)

    def predict_dataloader(self):
        return stateful_loader(self.val, batch_size=256)


def main(args: list[str] | None = None):
    return run_cli(
        "example",
        PointerModel,
        PointerData,
        monitor="val/acc",
        mode="max",
        trainer_defaults={"max_epochs": 2},
        args=args,
    )


if __name__ == "__main__":
    main()
