"""``polyhead-cslr``: fit | validate | test | predict on Isharah-format keypoints or generated signing;
``extract`` for MediaPipe Holistic keypoints from videos or ``.pose`` files.

Nothing heavy is imported here: ``--help`` answers without Lightning, ``extract`` without Lightning.
"""

from __future__ import annotations

from polyhead.train.entry import run_domain_cli


def extract_command(argv: list[str]) -> int | None:
    """MediaPipe Holistic keypoints from videos, images or .pose files (needs polyhead-cslr[extract])"""
    from polyhead.cslr import extract

    return extract.main(argv)


def main(args: list[str] | None = None) -> None:
    run_domain_cli(
        "cslr",
        model="polyhead.cslr.module:CSLRModule",
        datamodule="polyhead.cslr.datamodule:CSLRDataModule",
        monitor="val/wer",
        mode="min",
        trainer_defaults={"max_epochs": 30},
        extra_commands={"extract": extract_command},
        args=args,
    )
