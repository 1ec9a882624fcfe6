"""``polyhead-lowlight``: fit | validate | test | predict (LightningCLI) and ``generate``.

``predict`` also takes an image file or folder as its first argument:
``polyhead-lowlight predict photo.jpg`` is ``polyhead-lowlight predict --data.predict_input photo.jpg``.

Nothing heavy is imported here: ``--help`` answers without Lightning, ``generate`` without it either.
"""

from __future__ import annotations

import argparse
import sys

from polyhead.train.entry import run_domain_cli


def generate_command(argv: list[str]) -> int:
    """render the generated scenes (normal-light + dark copies, COCO JSON)"""
    from polyhead.lowlight.data.scenes import generate_scenes

    ap = argparse.ArgumentParser(prog="polyhead-lowlight generate",
                                 description="render the generated scenes (normal-light + dark copies, COCO JSON)")  # fmt: skip
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    root = generate_scenes(ns.out, splits={"train": ns.train, "val": ns.val, "test": ns.test},
                           image_size=ns.image_size, seed=ns.seed)  # fmt: skip
    print(f"wrote scenes to {root} (annotations/*.json; images under normal/ and dark/)")
    return 0


def _positional_predict(args: list[str]) -> list[str]:
    if len(args) >= 2 and args[0] == "predict" and not args[1].startswith("-"):
        return ["predict", "--data.predict_input", args[1], *args[2:]]
    return args


def main(args: list[str] | None = None) -> None:
    argv = _positional_predict(list(sys.argv[1:] if args is None else args))
    try:
        run_domain_cli(
            "lowlight",
            model="polyhead.lowlight.module:LowLightModule",
            datamodule="polyhead.lowlight.datamodule:LowLightDataModule",
            monitor="val/map",
            mode="max",
            trainer_defaults={"max_epochs": 8, "log_every_n_steps": 10, "gradient_clip_val": 10.0},
            extra_commands={"generate": generate_command},
            args=argv,
        )
    except Exception as err:
        # imported here: an AnnotationError can only come after the data modules were imported
        from polyhead.lowlight.data.validation import AnnotationError

        if not isinstance(err, AnnotationError):
            raise
        # Annotations are read when the trainer sets the data up, after the platform's config checks: the
        # report (every problem, one per line, with file and record) goes out as the CLI's error.
        print(f"polyhead-lowlight: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
