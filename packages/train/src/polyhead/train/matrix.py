"""``polyhead matrix``: every registered attention variant swapped into every installed domain, one table.

Each domain declares (:class:`polyhead.train.domains.Domain`) its attention sites, its CLI, its main test
metric and the fit arguments of its quick model per budget; each attention variant declares its
capabilities (``needs_shape``, ``supports_cross``, ``cross_is_prefix``, ``supports_causal``,
``supports_bidirectional`` on :class:`polyhead.attention.base.AttentionBase`). The matrix knows no domain
or variant by name:

- Applicability per site: a 2-D variant (``needs_shape``) needs a ``2d`` site (it is not adapted to a
  1-D sequence), a ``cross`` site needs ``supports_cross`` and a context of any length (not
  ``cross_is_prefix``), a causal site ``supports_causal``, a bidirectional site ``supports_bidirectional``. Sites sharing a config key get the variant only if all
  of them accept it; keys where it does not apply keep the domain's default attention and the cell says
  which sites kept it (a cell where no key applies is not run, with the reasons).
- A cell runs ``fit`` then ``test`` of the domain's CLI (:func:`polyhead.train.experiment.fit_test`) with
  the budget's ``matrix_args`` (to both: the data settings must reach ``test``) and
  ``--<config_key> '{"name": <variant>}'`` per applicable key. At a site that is not causal, a variant
  whose ``causal`` option defaults to True (``s2``, ``dma``) gets ``"causal": false``; at causal sites
  the domain's model sets ``causal=True`` itself, as it does for its default attention.
- Every domain also runs a ``default`` cell (no attention override): the reference of the relative
  columns.
- A cell is one (domain, variant, seed), run in a fresh subprocess by default: a crash, an exception
  or a ``SystemExit`` marks that cell failed and the others still run; the process's peak RSS comes from
  ``os.wait4``. The :class:`polyhead.train.cost.CostStats` callback records time per training batch,
  throughput, parameter counts, the training peak memory and the trained model's attention entropy and
  mean attention distance.
- ``<out>/cells/<budget>/<domain>/<variant>/seed<k>/cell.json`` is written last and atomically; a cell
  with a ``cell.json`` whose spec matches is reused, a cell without one (killed) is run again from
  scratch. Failed cells are reused too unless ``--retry-failed``.
- Outputs: ``matrix.json``, ``matrix.md`` (per domain: absolute values and ratios to the default),
  ``heatmap.png`` and an offline W&B run with the table and the heatmap.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from polyhead.train.domains import BUDGETS, ENTRY_POINT_GROUP, AttentionSite, Domain

DEFAULT_VARIANT = "default"
CELL_FILE = "cell.json"
SPEC_FILE = "spec.json"
RESULT_FILE = "result.json"
LOG_FILE = "log.txt"
COST_CALLBACK = "polyhead.train.cost.CostStats"


# ---- applicability ---------------------------------------------------------------------------------
def site_refusal(cls: type, site: AttentionSite) -> str | None:
    """Why variant class ``cls`` cannot serve ``site`` (None: it can), from the variant's declarations."""
    needs_shape = getattr(cls, "needs_shape", False)
    if needs_shape and site.layout != "2d":
        return "2-D variant (needs an (H, W) grid), site is a 1-D sequence"
    if site.kind == "cross" and not getattr(cls, "supports_cross", True):
        return "no cross-attention (supports_cross=False)"
    if site.kind == "cross" and getattr(cls, "cross_is_prefix", False):
        return "its context is a key cache of the same sequence (cross_is_prefix=True), not a second sequence"
    if site.causal and not getattr(cls, "supports_causal", False):
        return "no causal mode (supports_causal=False)"
    if not site.causal and not getattr(cls, "supports_bidirectional", True):
        return "causal only (supports_bidirectional=False), site is bidirectional"
    return None


def _causal_default(cls: type) -> bool | None:
    param = inspect.signature(cls).parameters.get("causal")
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return bool(param.default)


@dataclass(frozen=True)
class Plan:
    """Where a variant goes in a domain.

    Attributes:
        configs: per config key, the attention config passed on the command line.
        applied: names of the sites that get the variant.
        kept: ``site name -> reason`` for the sites that keep the domain's default attention.
    """

    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: tuple[str, ...] = ()
    kept: dict[str, str] = field(default_factory=dict)

    @property
    def applies(self) -> bool:
        return bool(self.configs)

    @property
    def reason(self) -> str:
        return "; ".join(f"{site}: {why}" for site, why in self.kept.items())


def plan_variant(name: str, cls: type, sites: Sequence[AttentionSite]) -> Plan:
    """Which config keys of a domain take variant ``name`` and with which config (see module docstring)."""
    by_key: dict[str, list[AttentionSite]] = {}
    for s in sites:
        by_key.setdefault(s.config_key, []).append(s)
    configs: dict[str, dict[str, Any]] = {}
    applied: list[str] = []
    kept: dict[str, str] = {}
    causal_default = _causal_default(cls)
    for key, group in by_key.items():
        refusals = {s.name: site_refusal(cls, s) for s in group}
        if any(refusals.values()):
            for s in group:
                why = refusals[s.name] or "shares --" + key + " with: " + ", ".join(
                    n for n, r in refusals.items() if r
                )
                kept[s.name] = why
            continue
        cfg: dict[str, Any] = {"name": name}
        if causal_default and any(not s.causal for s in group):
            cfg["causal"] = False
        configs[key] = cfg
        applied.extend(s.name for s in group)
    return Plan(configs=configs, applied=tuple(applied), kept=kept)


def readiness(domain: Domain, budget: str) -> str | None:
    """Why ``domain`` cannot take part in the matrix at ``budget`` (None: it can)."""
    missing = [
        what
        for what, ok in (("sites", domain.sites), ("cli", domain.cli), ("metric", domain.metric))
        if not ok
    ]
    if missing:
        return f"not matrix-ready: declares no {'/'.join(missing)}"
    if budget not in domain.matrix_args:
        return f"not matrix-ready: no matrix_args for budget {budget!r}"
    return None


# ---- domains ---------------------------------------------------------------------------------------
@dataclass
class DomainRef:
    """A domain to run: its name, the ``module:attr`` a cell process imports it from, the loaded object."""

    name: str
    target: str
    domain: Domain | None
    error: str | None = None


def load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"domain target must be 'module:attribute', got {target!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_domains(specs: Sequence[str] | None) -> list[DomainRef]:
    """Installed domains by entry-point name (all when ``specs`` is empty) or ``module:attr`` targets.

    Raises:
        ValueError: a name that is no installed domain.
    """
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    wanted = list(specs) if specs else sorted(eps)
    refs = []
    for spec in wanted:
        if ":" in spec:
            target, name = spec, None
        elif spec in eps:
            target, name = eps[spec].value, spec
        else:
            raise ValueError(
                f"unknown or not installed domain {spec!r}; installed: {', '.join(sorted(eps)) or 'none'}"
            )
        try:
            obj = load_target(target)
        except Exception as err:  # one broken domain package must not stop the others
            refs.append(DomainRef(name or spec, target, None, f"failed to load: {type(err).__name__}: {err}"))
            continue
        if not isinstance(obj, Domain):
            refs.append(DomainRef(name or spec, target, None, f"{target} is not a polyhead Domain"))
            continue
        refs.append(DomainRef(name or obj.name, target, obj))
    return refs


# ---- one cell -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellSpec:
    """Everything that determines one cell's run (its hash decides whether a finished cell is reused)."""

    domain: str
    target: str
    variant: str
    seed: int
    budget: str
    device: str
    configs: dict[str, dict[str, Any]]
    budget_args: tuple[str, ...]

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def args(self) -> list[str]:
        """Arguments for both ``fit`` and ``test`` (see :func:`polyhead.train.experiment.fit_test`).

        The budget's arguments go to ``test`` too: LightningCLI restores only the model's settings from the
        checkpoint, so data settings (a generated dataset's size, ...) must be repeated. The attention
        configs come after them, the device last, so neither can be overridden by the budget's arguments.
        """
        args = [
            "--run.wandb",
            "disabled",
            "--run.progress",
            "plain",
            "--run.attention_maps",
            "false",
            f"--trainer.callbacks+={COST_CALLBACK}",
            "--seed_everything",
            str(self.seed),
            *self.budget_args,
        ]
        for key, cfg in self.configs.items():
            args += [f"--{key}", json.dumps(cfg)]
        accelerator = "gpu" if self.device == "cuda" else "cpu"
        return [*args, "--trainer.accelerator", accelerator, "--trainer.devices", "1"]


def run_cell(spec: CellSpec, cell_dir: Path) -> dict[str, Any]:
    """Run one cell in this process: fit -> test, then its metric and ``cost.json``."""
    from polyhead.train.cost import COST_FILE
    from polyhead.train.experiment import fit_test

    domain = load_target(spec.target)
    root = cell_dir / "runs"
    if root.exists():  # a killed earlier attempt: start again from scratch
        shutil.rmtree(root)
    res = fit_test(
        domain.cli, domain=domain.name, root=root, experiment=spec.variant, version=f"seed{spec.seed}",
        common_args=spec.args(),
    )  # fmt: skip
    if domain.metric not in res.metrics:
        raise KeyError(
            f"metric {domain.metric!r} not in {res.run_dir / 'metrics.json'} (has: {', '.join(sorted(res.metrics))})"
        )
    cost_path = res.run_dir / COST_FILE
    cost = json.loads(cost_path.read_text()) if cost_path.is_file() else {}
    return {
        "metric": float(res.metrics[domain.metric]),
        "metrics": res.metrics,
        "fit_test_wall_s": res.wall_s,
        "run_dir": str(res.run_dir),
        "cost": cost,
    }


def _atomic_write(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _tail(path: Path, n: int = 2000) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace")
    return text[-n:]


def _failure(err: BaseException) -> str:
    if isinstance(err, SystemExit):
        return f"SystemExit({err.code})"
    return f"{type(err).__name__}: {err}"


def execute_cell(
    spec: CellSpec, cell_dir: Path, *, isolate: bool = True, timeout_s: float | None = None
) -> dict[str, Any]:
    """Run a cell (in a subprocess when ``isolate``) and write its ``cell.json``; never raises for the cell's
    own failures."""
    cell_dir.mkdir(parents=True, exist_ok=True)
    for stale in (CELL_FILE, RESULT_FILE):
        (cell_dir / stale).unlink(missing_ok=True)
    _atomic_write(cell_dir / SPEC_FILE, asdict(spec))
    t0 = time.monotonic()
    record: dict[str, Any] = {"spec": asdict(spec), "spec_key": spec.key()}
    if isolate:
        record.update(_run_subprocess(cell_dir, timeout_s))
    else:
        try:
            record.update({"status": "ok", "result": run_cell(spec, cell_dir)})
        except (Exception, SystemExit) as err:
            record.update(
                {"status": "failed", "error": _failure(err), "traceback": traceback.format_exc()[-4000:]}
            )
    record["wall_s"] = time.monotonic() - t0
    _atomic_write(cell_dir / CELL_FILE, record)
    return record


def _run_subprocess(cell_dir: Path, timeout_s: float | None) -> dict[str, Any]:
    env = dict(os.environ)
    # The child imports the domain exactly as this process does (a `module:attr` target on sys.path too).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    cmd = [sys.executable, "-m", "polyhead.train.matrix", "--cell", str(cell_dir)]
    timed_out = threading.Event()
    with open(cell_dir / LOG_FILE, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        timer = None
        if timeout_s:

            def kill() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(timeout_s, kill)
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted matrix: do not leave the cell running
            proc.kill()
            proc.wait()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss of this one child (kB on Linux, bytes on macOS): its whole life, imports included.
    rss = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    out: dict[str, Any] = {"returncode": proc.returncode, "process_peak_rss_mb": rss}
    result_path = cell_dir / RESULT_FILE
    if proc.returncode == 0 and result_path.is_file():
        out.update({"status": "ok", "result": json.loads(result_path.read_text())})
        return out
    if timed_out.is_set():
        error = f"timed out after {timeout_s:.0f}s (killed)"
    elif result_path.is_file():
        error = json.loads(result_path.read_text()).get("error", f"exit code {proc.returncode}")
    elif proc.returncode < 0:
        error = f"killed by signal {-proc.returncode}"
    else:
        error = f"exit code {proc.returncode}"
    out.update({"status": "failed", "error": error, "log_tail": _tail(cell_dir / LOG_FILE)})
    return out


def _cell_process_main(cell_dir: Path) -> int:
    """Entry of the cell subprocess: run the spec in ``cell_dir`` and write ``result.json``."""
    fields = json.loads((cell_dir / SPEC_FILE).read_text())
    spec = CellSpec(**{**fields, "budget_args": tuple(fields["budget_args"])})
    try:
        result = run_cell(spec, cell_dir)
    except (Exception, SystemExit) as err:
        traceback.print_exc()
        _atomic_write(cell_dir / RESULT_FILE, {"error": _failure(err)})
        return 1
    _atomic_write(cell_dir / RESULT_FILE, result)
    return 0


def reusable(cell_dir: Path, spec: CellSpec, *, retry_failed: bool) -> dict[str, Any] | None:
    """The finished ``cell.json`` of this very spec, or None (missing, killed, other spec, failed and retried)."""
    path = cell_dir / CELL_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("spec_key") != spec.key():
        return None
    if record.get("status") != "ok" and retry_failed:
        return None
    return record


# ---- aggregation ----------------------------------------------------------------------------------
def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.fmean(vals)) if vals else None


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Seed records of one (domain, variant) -> metric mean/sd and mean cost figures."""
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    metrics = [r["result"]["metric"] for r in ok]
    fits = [r["result"].get("cost", {}).get("fit", {}) for r in ok]
    tests = [r["result"].get("cost", {}).get("test", {}) for r in ok]
    out: dict[str, Any] = {
        "status": "ok" if ok and not failed else ("failed" if not ok else "partly failed"),
        "seeds_ok": len(ok),
        "seeds_failed": len(failed),
        "errors": [r.get("error", "?") for r in failed],
        "metric_values": metrics,
        "metric_mean": _mean(metrics),
        "metric_sd": float(statistics.stdev(metrics)) if len(metrics) >= 2 else None,
        "step_ms": _mean([f.get("step_ms_median") for f in fits]),
        "throughput": _mean([f.get("throughput") for f in fits]),
        "peak_rss_mb": max(
            (f["peak_rss_mb"] for f in fits if f.get("peak_rss_mb") is not None), default=None
        ),
        "cuda_peak_mb": max(
            (f["cuda_peak_mb"] for f in fits if f.get("cuda_peak_mb") is not None), default=None
        ),
        "process_peak_rss_mb": max(
            (r["process_peak_rss_mb"] for r in ok if r.get("process_peak_rss_mb") is not None), default=None
        ),
        "params": fits[0].get("params") if fits else None,
        "attention_params": fits[0].get("attention_params") if fits else None,
        "attention_variants": fits[0].get("variants") if fits else None,
        "attn_entropy": _mean([t.get("attn_entropy") for t in tests]),
        "attn_entropy_norm": _mean([t.get("attn_entropy_norm") for t in tests]),
        "attn_distance": _mean([t.get("attn_distance") for t in tests]),
        "cross_entropy": _mean([t.get("cross_entropy") for t in tests]),
        "wall_s": sum(r.get("wall_s", 0.0) for r in records),
    }
    return out


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def add_relative(row: dict[str, Any], ref: dict[str, Any] | None, higher_is_better: bool) -> None:
    """Ratios and metric change of ``row`` against the domain's default cell ``ref``."""
    rm = ref.get("metric_mean") if ref else None
    m = row.get("metric_mean")
    row["metric_delta"] = None if m is None or rm is None else m - rm
    sign = 1.0 if higher_is_better else -1.0
    row["metric_gain_pct"] = None if m is None or rm is None or rm == 0 else 100.0 * sign * (m - rm) / abs(rm)
    for key in ("step_ms", "peak_rss_mb", "cuda_peak_mb", "params", "throughput"):
        row[f"{key}_ratio"] = _ratio(row.get(key), ref.get(key) if ref else None)


# ---- the matrix -----------------------------------------------------------------------------------
def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "host_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_start"] = list(os.getloadavg())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def run_matrix(
    domains: Sequence[DomainRef],
    *,
    variants: Sequence[str],
    budget: str,
    seeds: int,
    out: Path,
    device: str = "cpu",
    isolate: bool = True,
    retry_failed: bool = False,
    cell_timeout_s: float | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or reuse) every cell and return the matrix payload (also written to ``out/matrix.json``)."""
    from polyhead.attention import get_attention_class

    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    payload: dict[str, Any] = {
        "budget": budget,
        "seeds": seeds,
        "device": device,
        "isolated_cells": isolate,
        "variants": list(variants),
        "machine": _machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "domains": {},
        "rows": [],
    }
    for ref in domains:
        dom = ref.domain
        info: dict[str, Any] = {"target": ref.target}
        payload["domains"][ref.name] = info
        if dom is None:
            info.update({"status": "broken", "reason": ref.error})
            log(f"[matrix] {ref.name}: {ref.error}")
            continue
        why = readiness(dom, budget)
        info.update(
            {
                "title": dom.title,
                "metric": dom.metric,
                "higher_is_better": dom.higher_is_better,
                "sites": [asdict(s) for s in dom.sites],
            }
        )
        if why:
            info.update({"status": "not matrix-ready", "reason": why})
            log(f"[matrix] {ref.name}: {why}")
            continue
        info["status"] = "ready"
        budget_args = tuple(dom.matrix_args[budget])
        rows: list[dict[str, Any]] = []
        for variant in [DEFAULT_VARIANT, *variants]:
            row: dict[str, Any] = {"domain": ref.name, "variant": variant}
            if variant == DEFAULT_VARIANT:
                plan = Plan(applied=tuple(s.name for s in dom.sites))
            else:
                plan = plan_variant(variant, get_attention_class(variant), dom.sites)
                if not plan.applies:
                    row.update({"status": "n/a", "reason": plan.reason, "kept": plan.kept})
                    rows.append(row)
                    continue
            row.update({"configs": plan.configs, "applied": list(plan.applied), "kept": plan.kept})
            records = []
            for seed in range(seeds):
                spec = CellSpec(
                    ref.name, ref.target, variant, seed, budget, device, plan.configs, budget_args
                )
                cell_dir = out / "cells" / budget / ref.name / variant / f"seed{seed}"
                record = reusable(cell_dir, spec, retry_failed=retry_failed)
                if record is not None:
                    log(f"[matrix] {ref.name}/{variant}/seed{seed}: reused ({record['status']})")
                else:
                    log(f"[matrix] {ref.name}/{variant}/seed{seed}: running ...")
                    record = execute_cell(spec, cell_dir, isolate=isolate, timeout_s=cell_timeout_s)
                    extra = f": {record.get('error')}" if record["status"] != "ok" else ""
                    log(
                        f"[matrix] {ref.name}/{variant}/seed{seed}: {record['status']} in {record['wall_s']:.0f}s{extra}"
                    )
                record["cell_dir"] = str(cell_dir)
                records.append(record)
            row.update(aggregate(records))
            row["cells"] = [r["cell_dir"] for r in records]
            rows.append(row)
        ref_row = rows[0] if rows and rows[0].get("metric_mean") is not None else None
        for row in rows:
            if row.get("status") in ("ok", "partly failed"):
                add_relative(row, ref_row, dom.higher_is_better)
        info["default_attention"] = rows[0].get("attention_variants") if rows else None
        payload["rows"].extend(rows)
    payload["wall_s"] = time.monotonic() - t0
    payload["cells_wall_s"] = sum(r.get("wall_s", 0.0) for r in payload["rows"])
    with contextlib.suppress(OSError):
        payload["machine"]["loadavg_end"] = list(os.getloadavg())
    _atomic_write(out / "matrix.json", payload)
    return payload


# ---- outputs --------------------------------------------------------------------------------------
def _f(v: float | None, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _int(v: float | None) -> str:
    return "-" if v is None else f"{int(v):,}"


def _entropy(row: dict[str, Any]) -> str:
    # Self-attention entropy; a domain whose sites are all cross-attention shows its cross entropy instead.
    if row.get("attn_entropy") is not None:
        return _f(row["attn_entropy"], ".3f")
    if row.get("cross_entropy") is not None:
        return _f(row["cross_entropy"], ".3f") + " (cross)"
    return "-"


TABLE_COLUMNS = (
    "variant",
    "metric (mean ± sd)",
    "Δ vs default",
    "step ms",
    "× step",
    "peak MB",
    "× mem",
    "params",
    "× params",
    "samples/s",
    "entropy",
    "distance",
    "sites / status",
)


def table_rows(payload: dict[str, Any], domain: str) -> list[list[str]]:
    """The Markdown table's cells for one domain (also logged to W&B).

    Peak memory is the training peak RSS on CPU and the CUDA allocator's peak on ``--device cuda``.
    """
    mem = "cuda_peak_mb" if payload["device"] == "cuda" else "peak_rss_mb"
    out = []
    for row in payload["rows"]:
        if row["domain"] != domain:
            continue
        name = row["variant"]
        if name == DEFAULT_VARIANT and row.get("attention_variants"):
            name = f"default ({'+'.join(row['attention_variants'])})"
        status = row.get("status", "?")
        if status == "n/a":
            out.append([name, *["-"] * 11, f"n/a: {row['reason']}"])
            continue
        if status == "failed":
            out.append([name, *["-"] * 11, "failed: " + "; ".join(sorted(set(row["errors"])))[:300]])
            continue
        m, sd = row.get("metric_mean"), row.get("metric_sd")
        metric = _f(m) + (f" ± {sd:.4f}" if sd is not None else "")
        note = (
            "all sites"
            if not row.get("kept")
            else "kept default: " + "; ".join(f"{k} ({v})" for k, v in row["kept"].items())
        )
        if status == "partly failed":
            note += f"; {row['seeds_failed']} seed(s) failed: " + "; ".join(sorted(set(row["errors"])))[:200]
        delta = row.get("metric_delta")
        out.append(
            [
                name,
                metric,
                "-" if name.startswith(DEFAULT_VARIANT) or delta is None else f"{delta:+.4f}",
                _f(row.get("step_ms"), ".1f"),
                _x(row.get("step_ms_ratio")),
                _f(row.get(mem), ".0f"),
                _x(row.get(f"{mem}_ratio")),
                _int(row.get("params")),
                _x(row.get("params_ratio")),
                _f(row.get("throughput"), ".1f"),
                _entropy(row),
                _f(row.get("attn_distance"), ".2f"),
                note,
            ]
        )
    return out


def render_markdown(payload: dict[str, Any]) -> str:
    m = payload["machine"]
    lines = [
        f"# polyhead matrix: budget `{payload['budget']}`, {payload['seeds']} seed(s), device `{payload['device']}`",
        "",
        f"Started {payload['started']}; this invocation {payload.get('wall_s', 0) / 60:.1f} min, the cells' own "
        f"wall time {payload.get('cells_wall_s', 0) / 60:.1f} min (reused cells count the time of the run that "
        f"made them). Machine: {m.get('host_cpus')} CPUs "
        f"({m.get('cpu', '?')}), load average at start {_loads(m.get('loadavg_start'))}, at end "
        f"{_loads(m.get('loadavg_end'))}: timings are only comparable within one run.",
        "",
        "Columns: the domain's test metric (mean ± sample sd over seeds) and its change against the domain's "
        "own default attention (`default` row); median time per training batch after 2 warm-up batches and "
        "its ratio to the default; peak memory of training (MB; on CPU the process's peak RSS, which "
        "includes the Python/torch baseline; on CUDA the allocator's peak); parameters; training samples/s; mean attention entropy (nats) and mean attention distance "
        "(positions, or grid cells at 2-D sites) of the trained model's self-attention on the first test batch "
        "(entropy of the cross-attention where a domain has no self-attention site).",
        "",
    ]
    for name, info in payload["domains"].items():
        if info.get("status") != "ready":
            lines += [f"## {name}", "", str(info.get("reason")), ""]
            continue
        arrow = "higher is better" if info["higher_is_better"] else "lower is better"
        sites = "; ".join(
            f"{s['name']} ({s['kind']}, {'causal' if s['causal'] else 'bidirectional'}, {s['layout']}, --{s['config_key']})"
            for s in info["sites"]
        )
        lines += [f"## {name}: `{info['metric']}` ({arrow})", "", f"Sites: {sites}.", ""]
        lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
        lines.append("|" + "---|" * len(TABLE_COLUMNS))
        for cells in table_rows(payload, name):
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _loads(v: Sequence[float] | None) -> str:
    return "?" if not v else "/".join(f"{x:.1f}" for x in v)


def plot_heatmap(payload: dict[str, Any], path: Path) -> Path | None:
    """Variants x domains, coloured by the metric's change against each domain's default (in % of it, sign
    flipped for lower-is-better metrics so that blue is always better), annotated with the absolute value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    domains = [d for d, i in payload["domains"].items() if i.get("status") == "ready"]
    if not domains:
        return None
    variants = [DEFAULT_VARIANT, *payload["variants"]]
    vals = np.full((len(variants), len(domains)), np.nan)
    text = [["" for _ in domains] for _ in variants]
    for row in payload["rows"]:
        if row["domain"] not in domains or row["variant"] not in variants:
            continue
        i, j = variants.index(row["variant"]), domains.index(row["domain"])
        status = row.get("status")
        if status == "n/a":
            text[i][j] = "n/a"
        elif status == "failed":
            text[i][j] = "fail"
        else:
            gain = row.get("metric_gain_pct")
            vals[i, j] = gain if gain is not None else np.nan
            text[i][j] = _f(row.get("metric_mean"), ".3f") + ("" if status == "ok" else "*")
    lim = float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0
    lim = lim or 1.0
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(domains), 0.9 + 0.38 * len(variants)))
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_facecolor("#dddddd")
    ax.set_xticks(range(len(domains)))
    ax.set_xticklabels([f"{d}\n{payload['domains'][d]['metric']}" for d in domains], fontsize=8)
    ax.set_yticks(range(len(variants)))
    ax.set_yticklabels(variants, fontsize=8)
    for i in range(len(variants)):
        for j in range(len(domains)):
            dark = np.isfinite(vals[i, j]) and abs(vals[i, j]) > 0.6 * lim
            ax.text(
                j, i, text[i][j], ha="center", va="center", fontsize=7, color="white" if dark else "black"
            )
    fig.colorbar(im, ax=ax, label="% better than default")
    ax.set_title(
        f"polyhead matrix ({payload['budget']}, {payload['seeds']} seed(s), {payload['device']})", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_wandb(
    payload: dict[str, Any], out: Path, heatmap: Path | None, mode: Literal["online", "offline", "disabled"]
) -> str | None:
    """One W&B run (offline by default) with the table (all domains) and the heatmap; returns its directory."""
    if mode == "disabled":
        return None
    import wandb

    run = wandb.init(
        project="polyhead-matrix",
        dir=str(out),
        mode=mode,
        name=f"matrix-{payload['budget']}",
        job_type="matrix",
        config={k: payload[k] for k in ("budget", "seeds", "device", "variants")},
        settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
    )
    data = [[d, *cells] for d in payload["domains"] for cells in table_rows(payload, d)]
    log: dict[str, Any] = {"matrix": wandb.Table(columns=["domain", *TABLE_COLUMNS], data=data)}
    if heatmap is not None:
        log["heatmap"] = wandb.Image(str(heatmap))
    run.log(log)
    for row in payload["rows"]:
        if row.get("metric_mean") is not None:
            run.summary[f"{row['domain']}/{row['variant']}/metric"] = row["metric_mean"]
    run_dir = str(Path(run.dir).parent)
    run.finish()
    return run_dir


# ---- command line ---------------------------------------------------------------------------------
def add_matrix_parser(sub: Any) -> None:
    """Register ``polyhead matrix`` on the umbrella command's subparsers."""
    p = sub.add_parser("matrix", help="every attention variant in every installed domain, one table")
    p.add_argument(
        "--domains",
        default=None,
        help="comma-separated domains (default: all installed); "
        "'module:attr' names a Domain object that is not installed",
    )
    p.add_argument(
        "--variants", default=None, help="comma-separated attention variants (default: all registered)"
    )
    p.add_argument(
        "--budget", default="tiny", choices=BUDGETS, help="training budget per cell (default tiny)"
    )
    p.add_argument("--seeds", type=int, default=1, help="seeds per cell (default 1)")
    p.add_argument("--out", default="runs/matrix", help="output directory (default runs/matrix)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"))
    p.add_argument(
        "--retry-failed", action="store_true", help="run failed cells again instead of reusing them"
    )
    p.add_argument("--cell-timeout", type=float, default=None, help="seconds after which a cell is killed")
    p.add_argument(
        "--in-process",
        action="store_true",
        help="run cells in this process (faster start; no per-cell process peak memory, no crash isolation)",
    )
    p.set_defaults(fn=cmd_matrix)


def _split(v: str | None) -> list[str]:
    return [s.strip() for s in v.split(",") if s.strip()] if v else []


def cmd_matrix(ns: argparse.Namespace) -> int:
    from polyhead.attention import list_attention

    def error(msg: str) -> int:
        print(f"polyhead matrix: error: {msg}", file=sys.stderr)
        return 2

    if ns.seeds < 1:
        return error(f"--seeds must be >= 1, got {ns.seeds}")
    if ns.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return error("--device cuda: no CUDA device is available")
    try:
        domains = resolve_domains(_split(ns.domains))
    except ValueError as err:
        return error(str(err))
    registered = list_attention()
    variants = _split(ns.variants) or registered
    unknown = [v for v in variants if v not in registered]
    if unknown:
        return error(
            f"unknown attention variant(s) {', '.join(unknown)}; registered: {', '.join(registered)}"
        )
    if not domains:
        print("No polyhead domain package is installed, so the matrix is empty.")
        return 0
    # A SIGTERM ends the matrix like Ctrl-C: the running cell's process is killed, finished cells stay.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(ns.out)
    payload = run_matrix(
        domains,
        variants=variants,
        budget=ns.budget,
        seeds=ns.seeds,
        out=out,
        device=ns.device,
        isolate=not ns.in_process,
        retry_failed=ns.retry_failed,
        cell_timeout_s=ns.cell_timeout,
    )
    md = render_markdown(payload)
    (out / "matrix.md").write_text(md + "\n")
    heatmap = plot_heatmap(payload, out / "heatmap.png")
    payload["wandb_run"] = log_wandb(payload, out, heatmap, ns.wandb)
    _atomic_write(out / "matrix.json", payload)
    print(md)
    print(
        f"polyhead matrix: wrote {out / 'matrix.json'}, {out / 'matrix.md'}"
        + (f", {heatmap}" if heatmap else "")
    )
    failed = [r for r in payload["rows"] if r.get("status") in ("failed", "partly failed")]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    """``python -m polyhead.train.matrix --cell DIR`` runs one cell (what the matrix's subprocesses do)."""
    parser = argparse.ArgumentParser(prog="python -m polyhead.train.matrix")
    parser.add_argument("--cell", required=True, help="cell directory holding spec.json")
    ns = parser.parse_args(argv)
    raise SystemExit(_cell_process_main(Path(ns.cell)))


if __name__ == "__main__":
    main()
