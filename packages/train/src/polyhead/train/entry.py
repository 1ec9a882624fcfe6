"""A domain command's entry point that imports the training stack only when it is needed.

    def main(args: list[str] | None = None) -> None:
        run_domain_cli(
            "cslr",
            model="polyhead.cslr.module:CSLRModule",
            datamodule="polyhead.cslr.datamodule:CSLRDataModule",
            monitor="val/wer",
            mode="min",
            extra_commands={"extract": extract_command},
            args=args,
        )

is :func:`polyhead.train.cli.run_cli` with the LightningModule and DataModule named by ``"module:Class"``
strings: ``polyhead-<domain> --help`` answers from this file (Lightning's import, with torchmetrics,
torchvision and scipy behind it, costs seconds; README: "Start-up cost"), an extra command (``extract``, ``generate``, ...) imports only what it uses, and
``fit``/``test``/... import the classes and run :func:`~polyhead.train.cli.run_cli` exactly as before.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

# The training subcommands of every domain and their one-line help (LightningCLI's own help for each,
# shortened); `polyhead-<domain> <subcommand> --help` shows the full options.
TRAINING_SUBCOMMANDS: dict[str, str] = {
    "fit": "train (no config needed: the domain's embedded default data)",
    "validate": "one evaluation epoch over the validation set",
    "test": "evaluate on the test set (best checkpoint of the latest run) -> metrics.json",
    "predict": "predictions of a trained model",
}

ExtraCommand = Callable[[list[str]], "int | None"]


def load_object(target: str) -> Any:
    """``"package.module:Name"`` -> the object (imports the module).

    Raises:
        ValueError: ``target`` is not of the form ``module:attribute``.
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'package.module:Name', got {target!r}")
    return getattr(importlib.import_module(module), attr)


def domain_help(domain: str, extra_commands: Mapping[str, ExtraCommand] | None = None) -> str:
    """The top-level ``polyhead-<domain> --help`` text: the subcommands and the domain's extra commands."""
    lines = [
        f"usage: polyhead-{domain} [-h] [-c CONFIG] {{{','.join(TRAINING_SUBCOMMANDS)}}} ...",
        "",
        f"polyhead-{domain}: train and evaluate the {domain} models (fit, validate, test, predict; --run.* "
        "places outputs under <root>/<domain>/<experiment>/<version>)",
        "",
        f"subcommands (polyhead-{domain} SUBCOMMAND --help for the options, --print_config for the resolved "
        "config):",
        *(f"  {name:<12} {what}" for name, what in TRAINING_SUBCOMMANDS.items()),
    ]
    if extra_commands:
        lines += ["", "more commands (run with --help for their options):"]
        for name, fn in extra_commands.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            lines.append(f"  {name:<12} {doc[0] if doc else ''}".rstrip())
    return "\n".join(lines)


def run_domain_cli(
    domain: str,
    *,
    model: str,
    datamodule: str | None,
    monitor: str,
    mode: str = "min",
    trainer_defaults: dict[str, Any] | None = None,
    extra_commands: Mapping[str, ExtraCommand] | None = None,
    args: list[str] | None = None,
) -> Any:
    """Run ``polyhead-<domain>`` with ``args`` (default ``sys.argv[1:]``), importing lazily.

    Args:
        domain: domain name (run directories, W&B project, messages).
        model: ``"module:Class"`` of the LightningModule.
        datamodule: ``"module:Class"`` of the LightningDataModule, or None.
        monitor, mode, trainer_defaults: as :func:`polyhead.train.cli.run_cli`'s.
        extra_commands: commands besides fit/validate/test/predict, each a function taking the remaining
            argv and returning an exit code; the first line of its docstring is its help. Keep their
            modules light: import what a command needs inside it.
        args: argv to parse instead of ``sys.argv[1:]``.

    Returns:
        What :func:`polyhead.train.cli.run_cli` returns (None for ``--help`` and extra commands).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv in (["-h"], ["--help"]):
        print(domain_help(domain, extra_commands))
        return None
    if extra_commands and argv and argv[0] in extra_commands:
        code = extra_commands[argv[0]](argv[1:])
        if code:
            raise SystemExit(code)
        return None
    from polyhead.train.cli import run_cli

    return run_cli(
        domain,
        load_object(model),
        load_object(datamodule) if datamodule is not None else None,
        monitor=monitor,
        mode=mode,
        trainer_defaults=trainer_defaults,
        extra_commands=dict(extra_commands) if extra_commands else None,
        args=argv,
    )
