"""The umbrella ``polyhead`` command.

polyhead list                 installed domain packages (entry-point group ``polyhead.domains``)
polyhead demo [--domains a,b] [--out runs/demo]
                              every installed domain's pipeline in quick mode, then one summary table
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from polyhead.train.domains import DemoRow, discover_domains


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def cmd_list(_: argparse.Namespace) -> int:
    entries = discover_domains()
    con = _console()
    if not entries:
        con.print(
            "No polyhead domain package is installed. Install one, e.g. `pip install polyhead-ctr`, "
            "then run `polyhead demo`."
        )
        return 0
    table = Table(title="installed polyhead domains")
    for col in ("domain", "package", "version", "command", "status"):
        table.add_column(col)
    for e in entries:
        title = e.domain.title if e.domain else ""
        status = "ok: " + title if e.error is None else f"[red]broken[/red]: {e.error}"
        table.add_row(e.name, e.dist, e.version, f"polyhead-{e.name}", status)
    con.print(table)
    return 0


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}"


def cmd_demo(ns: argparse.Namespace) -> int:
    con = _console()
    entries = discover_domains()
    if ns.domains:
        wanted = set(ns.domains.split(","))
        unknown = wanted - {e.name for e in entries}
        if unknown:
            con.print(f"unknown or not installed domain(s): {', '.join(sorted(unknown))}")
            return 2
        entries = [e for e in entries if e.name in wanted]
    if not entries:
        con.print(
            "No polyhead domain package is installed, so there is nothing to demo. Install one, e.g. "
            "`pip install polyhead-ctr` (or `uv sync --all-packages` in the repository)."
        )
        return 0
    out = Path(ns.out)
    rows: list[DemoRow] = []
    failures: list[tuple[str, str]] = []
    for e in entries:
        if e.domain is None:
            failures.append((e.name, e.error or "failed to load"))
            continue
        con.rule(f"polyhead demo: {e.name} — {e.domain.title}")
        t0 = time.monotonic()
        try:
            rows.extend(e.domain.quick(out / e.name))
        except Exception as err:  # one broken domain must not hide the others' results
            traceback.print_exc()
            failures.append((e.name, f"{type(err).__name__}: {err} (after {time.monotonic() - t0:.0f}s)"))
    table = Table(title="polyhead demo summary (quick mode)")
    for col in ("domain", "model", "dataset", "metric", "value", "baseline", "baseline value", "wall time"):
        table.add_column(col, justify="right" if col in ("value", "baseline value", "wall time") else "left")
    for r in rows:
        table.add_row(
            r.domain,
            r.model,
            r.dataset,
            r.metric,
            _fmt(r.value),
            r.baseline,
            _fmt(r.baseline_value),
            f"{r.wall_s:.0f}s",
        )
    con.print(table)
    for name, err in failures:
        con.print(f"[red]{name} failed[/red]: {err}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "failures": dict(failures)}, indent=2) + "\n"
    )
    con.print(f"summary written to {out / 'summary.json'}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="polyhead", description="polyhead: applied multi-head attention models"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list installed domain packages")
    p_list.set_defaults(fn=cmd_list)
    p_demo = sub.add_parser("demo", help="run every installed domain's quick pipeline and summarise")
    p_demo.add_argument("--domains", default=None, help="comma-separated subset of domains")
    p_demo.add_argument("--out", default="runs/demo", help="output root (default runs/demo)")
    p_demo.set_defaults(fn=cmd_demo)
    from polyhead.train.matrix import add_matrix_parser
    add_matrix_parser(sub)
    ns = parser.parse_args(argv)
    raise SystemExit(ns.fn(ns))
