"""``polyhead-cslr``: fit | validate | test | predict on Isharah-format keypoints or generated signing;
``extract`` for MediaPipe Holistic keypoints from videos or ``.pose`` files."""

from __future__ import annotations

from polyhead.cslr import extract
from polyhead.cslr.datamodule import CSLRDataModule
from polyhead.cslr.module import CSLRModule
from polyhead.train import run_cli


def main(args: list[str] | None = None) -> None:
    run_cli(
        "cslr",
        CSLRModule,
        CSLRDataModule,
        monitor="val/wer",
        mode="min",
        trainer_defaults={"max_epochs": 30},
        extra_commands={"extract": extract.main},
        args=args,
    )
