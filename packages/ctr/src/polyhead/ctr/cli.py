"""``polyhead-ctr``: fit | validate | test | predict (LightningCLI) and ``generate``."""

from __future__ import annotations

import argparse
import sys

from polyhead.train.entry import run_domain_cli
from polyhead.train.faults import PolyheadConfigError


def generate_command(argv: list[str]) -> int:
    """Write a generated Criteo-format TSV (the embedded default data)."""
    ap = argparse.ArgumentParser(
        prog="polyhead-ctr generate", description="write a generated Criteo-format TSV"
    )
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    from polyhead.ctr.data.synthetic import generate_criteo

    path = generate_criteo(ns.out, ns.rows, seed=ns.seed)
    print(f"wrote {ns.rows} rows to {path}")
    return 0


def _export(argv: list[str]) -> int:
    """Export a checkpoint as ONNX with its feature encoder (model.onnx, encoder.json, data_spec.json)."""
    from polyhead.ctr.export import export_command  # torch.onnx is imported only for this command

    return export_command(argv)


def take_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """Remove ``--threads N`` / ``--threads=N`` from ``argv``; returns the rest and N."""
    rest, threads, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads" or a.startswith("--threads="):
            value = a.split("=", 1)[1] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            if not value.isdigit() or int(value) < 1:
                raise PolyheadConfigError(f"--threads must be a positive integer, got {value!r}")
            threads = int(value)
            continue
        rest.append(a)
        i += 1
    return rest, threads


def main(args: list[str] | None = None) -> None:
    """``polyhead-ctr``; ``--threads N`` (any position) sets torch's intra-op threads for the command."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        argv, threads = take_threads(argv)
    except PolyheadConfigError as err:
        print(f"polyhead-ctr: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    # Lightning, polars and the model modules are imported only when a subcommand runs (not for --help)
    run_domain_cli(
        "ctr",
        model="polyhead.ctr.module:CTRModule",
        datamodule="polyhead.ctr.module:CTRDataModule",
        monitor="val/auc",
        mode="max",
        trainer_defaults={"max_epochs": 3, "log_every_n_steps": 20},
        extra_commands={"generate": generate_command, "export": _export},
        args=argv,
    )
