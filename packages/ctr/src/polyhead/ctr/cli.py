"""``polyhead-ctr``: fit | validate | test | predict (LightningCLI) and ``generate``."""

from __future__ import annotations

import argparse

from polyhead.ctr.data.synthetic import generate_criteo
from polyhead.ctr.module import CTRDataModule, CTRModule
from polyhead.train import run_cli


def generate_command(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="polyhead-ctr generate", description="write a generated Criteo-format TSV"
    )
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    path = generate_criteo(ns.out, ns.rows, seed=ns.seed)
    print(f"wrote {ns.rows} rows to {path}")
    return 0


def main(args: list[str] | None = None) -> None:
    run_cli(
        "ctr",
        CTRModule,
        CTRDataModule,
        monitor="val/auc",
        mode="max",
        trainer_defaults={"max_epochs": 3, "log_every_n_steps": 20},
        extra_commands={"generate": generate_command},
        args=args,
    )
