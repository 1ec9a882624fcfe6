"""``polyhead-face``: fit | validate | test | predict, plus ``restore`` (in-the-wild photos: detect, align,
restore, paste back) and ``explain`` (per-head attention over dictionary entries and image regions).

Nothing heavy is imported here: ``--help`` answers without Lightning; each command imports what it uses.
"""

from __future__ import annotations

from polyhead.train.entry import run_domain_cli


def _restore(argv: list[str]) -> int:
    """whole photos: detect, align, restore and paste the faces back"""
    from polyhead.face.restore import main

    return main(argv)


def _explain(argv: list[str]) -> int:
    """per-head attention over dictionary entries and image regions"""
    from polyhead.face.explain import main

    return main(argv)


def main(args: list[str] | None = None) -> None:
    run_domain_cli(
        "face",
        model="polyhead.face.module:FaceModule",
        datamodule="polyhead.face.datamodule:FaceDataModule",
        monitor="val/psnr",
        mode="max",
        trainer_defaults={"max_epochs": 12, "limit_train_batches": 60},
        extra_commands={"restore": _restore, "explain": _explain},
        args=args,
    )
