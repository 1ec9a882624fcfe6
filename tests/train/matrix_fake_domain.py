"""A fake domain for the matrix tests: the pointer-lookup task of example_task.py behind the Domain protocol.

The model takes its attention as a config dict (``--model.attention '{"name": "moh"}'``), as the real
domains do. To test failure reporting the CLI breaks on purpose for some variants: ``gaam`` raises an
exception inside ``fit``, ``rcmha`` exits with code 3, ``single_head`` kills its own process (SIGKILL, as
the kernel's OOM killer would; only used with subprocess cells).
"""

from __future__ import annotations

import os
import signal
from typing import Any

from example_task import PointerData, PointerModel

from polyhead.attention.blocks import build_attention
from polyhead.train import run_cli
from polyhead.train.domains import AttentionSite, Domain


class MatrixPointerModel(PointerModel):
    """PointerModel whose attention is a config dict (name plus the variant's options)."""

    def __init__(
        self,
        *,
        attention: dict[str, Any] | None = None,
        vocab: int = 16,
        length: int = 12,
        dim: int = 32,
        heads: int = 4,
        lr: float = 3e-3,
    ) -> None:
        super().__init__(vocab=vocab, length=length, dim=dim, heads=heads, lr=lr)
        self.attn = build_attention(attention or {"name": "mha"}, dim, heads)
        self.save_hyperparameters()


def cli(args: list[str]) -> object:
    joined = " ".join(args)
    if '"name": "rcmha"' in joined:
        raise SystemExit(3)
    if '"name": "single_head"' in joined:
        os.kill(os.getpid(), signal.SIGKILL)
    if '"name": "gaam"' in joined and args[0] == "fit":
        raise RuntimeError("fake domain: gaam breaks this model")
    return run_cli(
        "fake", MatrixPointerModel, PointerData, monitor="val/acc", mode="max", trainer_defaults={}, args=args
    )


TINY = [
    "--trainer.max_epochs",
    "1",
    "--data.num_train",
    "320",
    "--data.num_val",
    "256",
    "--data.batch_size",
    "64",
]

FAKE = Domain(
    name="fake",
    title="pointer lookup (matrix test domain)",
    quick=lambda out: [],
    sites=(AttentionSite("pointer self-attention", kind="self", causal=False, layout="1d"),),
    cli=cli,
    metric="test/acc",
    higher_is_better=True,
    matrix_args={"tiny": TINY},
)

# A domain that has not declared its matrix fields yet.
BARE = Domain(name="bare", title="no matrix declarations", quick=lambda out: [])
