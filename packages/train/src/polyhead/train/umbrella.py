"""The umbrella ``polyhead`` command.

polyhead list                 installed domain packages (entry-point group ``polyhead.domains``)
polyhead demo [--domains a,b] [--out runs/demo] [--full]
                              every installed domain's pipeline in quick mode (``--full``: the full
                              configs where a domain has them), then one summary table

``polyhead demo`` runs the domains one after another, each isolated: whatever a domain's pipeline raises
or exits with (a config error's ``SystemExit(2)``, 130 after Ctrl-C, 143 after SIGTERM, any exception) is
reported in that domain's entry and the next domain still runs. A progress line before and after each
domain shows its time budget (``Domain.budget_s``) and the time it took. ``<out>/summary.json`` is
rewritten (atomically) after every domain, so an interrupted demo still leaves the results so far.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from polyhead.train.atomic import write_text_atomic
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


def _versus(r: DemoRow) -> str:
    """The paper's model against its baseline in the row's own direction."""
    if r.baseline_value is None or r.value is None or math.isnan(r.value) or math.isnan(r.baseline_value):
        return "-"
    if r.value == r.baseline_value:
        return "tie"
    better = r.value > r.baseline_value if r.higher_is_better else r.value < r.baseline_value
    return "better" if better else "worse"


def _write_summary(out: Path, payload: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "summary.json", json.dumps(payload, indent=2) + "\n")


def _run_domain(
    fn: Callable[[Path], list[DemoRow]], out: Path
) -> tuple[list[DemoRow], str | None, int | None]:
    """Run one domain's pipeline; return its rows, or the failure and the exit code it ended with."""
    try:
        return list(fn(out)), None, None
    except SystemExit as err:  # a domain CLI's exit (2: config error, 130: Ctrl-C, 143: SIGTERM, ...)
        if isinstance(err.code, int) or err.code is None:
            code = err.code or 0
            what = {2: "configuration error", 130: "interrupted", 143: "terminated"}.get(code, "exited")
            return [], f"{what} (exit code {code})", code
        return [], f"exited: {err.code} (exit code 1)", 1  # SystemExit("message") exits with 1
    except Exception as err:  # one broken domain must not hide the others' results
        traceback.print_exc()
        return [], f"{type(err).__name__}: {err}", None


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
    mode = "full" if ns.full else "quick"
    rows: list[DemoRow] = []
    failures: dict[str, str] = {}
    runs: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"mode": mode, "domains": runs, "rows": [], "failures": failures}
    t_start = time.monotonic()
    interrupted = False
    n = len(entries)
    for i, e in enumerate(entries, 1):
        tag = f"polyhead demo [{i}/{n}] {e.name}"
        if e.domain is None:
            failures[e.name] = e.error or "failed to load"
            runs.append({"domain": e.name, "status": "broken", "error": failures[e.name]})
            print(f"{tag}: not loadable: {failures[e.name]}", flush=True)
            continue
        d = e.domain
        fn, how = (d.full, "full") if ns.full and d.full is not None else (d.quick, "quick")
        budget = d.budget_s if how == "quick" else None
        con.rule(f"polyhead demo: {e.name} — {d.title}")
        if ns.full and d.full is None:
            print(f"{tag}: has no full configuration; running its quick pipeline", flush=True)
        limit = f"budget {budget:.0f} s" if budget is not None else "no time budget (full configs)"
        print(f"{tag}: {how} pipeline, {limit}", flush=True)
        t0 = time.monotonic()
        try:
            got, error, code = _run_domain(fn, out / e.name)
        except KeyboardInterrupt:  # a second Ctrl-C (the first one stops the domain's training cleanly)
            got, error, code, interrupted = [], "interrupted (KeyboardInterrupt)", 130, True
        wall = time.monotonic() - t0
        run: dict[str, Any] = {"domain": e.name, "mode": how, "budget_s": budget, "wall_s": round(wall, 1)}
        if error is None:
            rows.extend(got)
            over = budget is not None and wall > budget
            run.update(status="ok", rows=len(got), over_budget=over)
            verdict = (
                f"over budget by {wall - budget:.0f} s" if over and budget is not None else "within budget"
            )
            print(f"{tag}: done in {wall:.0f} s ({verdict if budget is not None else 'full'})", flush=True)
        else:
            failures[e.name] = f"{error} after {wall:.0f}s"
            run.update(status="failed", error=error, exit_code=code)
            print(f"{tag}: failed after {wall:.0f} s: {error}", flush=True)
        runs.append(run)
        payload["rows"] = [asdict(r) for r in rows]
        payload["wall_s"] = round(time.monotonic() - t_start, 1)
        _write_summary(out, payload)  # after every domain: an interrupted demo keeps what finished
        if interrupted:
            print("polyhead demo: interrupted; the remaining domains are skipped", flush=True)
            break

    table = Table(title=f"polyhead demo summary ({mode} mode)")
    cols = ("domain", "model", "dataset", "metric", "value", "baseline", "baseline value", "vs baseline")
    for col in (*cols, "full config", "wall time"):
        right = col in ("value", "baseline value", "full config", "wall time")
        table.add_column(col, justify="right" if right else "left")
    for r in rows:
        table.add_row(
            r.domain,
            r.model,
            r.dataset,
            f"{r.metric} {'↑' if r.higher_is_better else '↓'}",
            _fmt(r.value),
            r.baseline,
            _fmt(r.baseline_value),
            _versus(r),
            _fmt(r.full_value),
            f"{r.wall_s:.0f}s",
        )
    con.print(table)
    con.print(
        "↑ higher is better, ↓ lower is better; full config: what the domain's full configuration reached"
    )
    for r in rows:
        if r.full_value is not None and r.full_source:
            con.print(f"  full config of {r.domain} {r.model}: {r.full_source}")
    for r in rows:
        if r.note:
            con.print(f"  note on {r.domain} {r.model}: {r.note}")
    for name, err in failures.items():
        con.print(f"[red]{name} failed[/red]: {err}")
    payload["wall_s"] = round(time.monotonic() - t_start, 1)
    _write_summary(out, payload)
    con.print(f"summary written to {out / 'summary.json'} ({payload['wall_s']:.0f} s in all)")
    if interrupted:
        return 130
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
    p_demo.add_argument(
        "--full", action="store_true", help="run the full configs where a domain has them (hours on CPU)"
    )
    p_demo.set_defaults(fn=cmd_demo)
    from polyhead.train.matrix import add_matrix_parser

    add_matrix_parser(sub)
    ns = parser.parse_args(argv)
    raise SystemExit(ns.fn(ns))
