"""``polyhead-face``: fit | validate | test | predict, plus ``restore`` (in-the-wild photos: detect, align,
restore, paste back) and ``explain`` (per-head attention over dictionary entries and image regions)."""

from __future__ import annotations

from polyhead.face.datamodule import FaceDataModule
from polyhead.face.module import FaceModule
from polyhead.train import run_cli


def _restore(argv: list[str]) -> int:
    from polyhead.face.restore import main

    return main(argv)


def _explain(argv: list[str]) -> int:
    from polyhead.face.explain import main

    return main(argv)


def main(args: list[str] | None = None) -> None:
    run_cli(
        "face",
        FaceModule,
        FaceDataModule,
        monitor="val/psnr",
        mode="max",
        trainer_defaults={"max_epochs": 12, "limit_train_batches": 60},
        extra_commands={"restore": _restore, "explain": _explain},
        args=args,
    )
