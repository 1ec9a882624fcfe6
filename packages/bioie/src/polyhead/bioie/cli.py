"""``polyhead-bioie``: fit | validate | test | predict (LightningCLI) and ``generate``.

polyhead-bioie generate out/ --docs 200      # generated abstracts as PubTator, BioC XML, TACRED JSON, parses

Nothing heavy is imported here: ``--help`` answers without Lightning, ``generate`` without it either.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from polyhead.train.entry import run_domain_cli


def generate_command(argv: list[str]) -> int:
    """write generated abstracts in every format (PubTator, BioC XML, TACRED JSON, parses)"""
    from polyhead.bioie.data.bioc_io import write_bioc
    from polyhead.bioie.data.generator import generate_split
    from polyhead.bioie.data.pubtator import write_parses, write_pubtator
    from polyhead.bioie.data.tacred import write_tacred

    ap = argparse.ArgumentParser(
        prog="polyhead-bioie generate", description="write generated abstracts in every format"
    )
    ap.add_argument("out")
    ap.add_argument("--split", default="test", choices=["train", "dev", "test"])
    ap.add_argument("--docs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    if ns.docs < 1:
        ap.error(f"--docs must be >= 1, got {ns.docs}")
    docs, parses, examples = generate_split(ns.split, ns.docs, seed=ns.seed)
    out = Path(ns.out)
    write_pubtator(docs, out / f"{ns.split}.pubtator")
    write_parses(parses, out / f"{ns.split}.pubtator.parses.json")
    write_bioc(docs, out / f"{ns.split}.xml")
    write_parses(parses, out / f"{ns.split}.xml.parses.json")
    write_tacred(examples, out / f"{ns.split}.json")
    print(f"wrote {len(docs)} documents ({len(examples)} candidate pairs) to {out}")
    return 0


def main(args: list[str] | None = None) -> None:
    run_domain_cli(
        "bioie",
        model="polyhead.bioie.module:RelationModule",
        datamodule="polyhead.bioie.datamodule:RelationDataModule",
        monitor="val/micro_f1",
        mode="max",
        trainer_defaults={"max_epochs": 5, "log_every_n_steps": 20},
        extra_commands={"generate": generate_command},
        args=args,
    )
