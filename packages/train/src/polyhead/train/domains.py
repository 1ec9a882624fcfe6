"""Domain discovery for the umbrella ``polyhead`` command.

A domain package registers a :class:`Domain` under the entry-point group ``polyhead.domains``::

    [project.entry-points."polyhead.domains"]
    ctr = "polyhead.ctr.pipeline:DOMAIN"

``Domain.quick(out_dir)`` runs the domain's end-to-end pipeline in quick mode (prepare -> fit -> test ->
report) and returns :class:`DemoRow` results for the ``polyhead demo`` summary table. The steps live in the
domain package itself, so the demo also works for a package installed alone from a wheel.

For the variant x domain matrix a domain also declares its attention sites (:class:`AttentionSite`), its
CLI entry point, its main metric and the fit arguments that train its quick model at each budget; the
umbrella command knows no domain by name and reads everything from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "polyhead.domains"
BUDGETS = ("tiny", "quick", "full")


@dataclass(frozen=True)
class DemoRow:
    """One line of the ``polyhead demo`` summary table.

    Attributes:
        higher_is_better: direction of ``metric`` (False for WER, loss, ...).
        full_value: what the domain's full configuration reached on its full task (from the package
            README's measured table), shown beside the quick figure; None when not measured.
        full_source: where ``full_value`` comes from (config and data), one short phrase.
        note: one sentence a newcomer needs, e.g. why the paper's model does not beat its baseline here.
    """

    domain: str
    model: str
    dataset: str
    metric: str
    value: float
    baseline: str
    baseline_value: float | None
    wall_s: float
    higher_is_better: bool = True
    full_value: float | None = None
    full_source: str = ""
    note: str = ""


@dataclass(frozen=True)
class AttentionSite:
    """One swappable attention layer group of a domain's quick model.

    Attributes:
        name: what the site is (``encoder self-attention``, ``decoder cross-attention``, ...).
        kind: ``self`` or ``cross`` attention.
        causal: whether the site masks future positions.
        layout: ``1d`` (a sequence) or ``2d`` (a grid of tokens).
        shape: the ``(H, W)`` grid of a ``2d`` site in the quick model, if fixed.
        config_key: the CLI key that takes the attention config of this site (``--<config_key>
            '{name: moh}'``), e.g. ``model.attention``.
    """

    name: str
    kind: str = "self"
    causal: bool = False
    layout: str = "1d"
    shape: tuple[int, int] | None = None
    config_key: str = "model.attention"

    def __post_init__(self) -> None:
        if self.kind not in ("self", "cross"):
            raise ValueError(
                f"AttentionSite {self.name!r}: kind must be 'self' or 'cross', got {self.kind!r}"
            )
        if self.layout not in ("1d", "2d"):
            raise ValueError(f"AttentionSite {self.name!r}: layout must be '1d' or '2d', got {self.layout!r}")


@dataclass(frozen=True)
class Domain:
    """A domain package as seen by the umbrella command.

    Attributes:
        name: short name, also the ``polyhead-<name>`` command.
        title: one line saying what the domain does.
        quick: runs the quick pipeline into ``out_dir`` and returns its summary rows.
        budget_s: wall-time budget of ``quick`` on an idle 2-core machine (shown by ``polyhead demo``).
        full: runs the pipeline with the full configs (``polyhead demo --full``), if the domain has one.
        sites: the swappable attention sites of the quick model (for the matrix).
        cli: the domain's CLI entry point, ``main(args: list[str])`` (for the matrix).
        metric: the main test metric, a key of metrics.json's ``metrics`` (e.g. ``test/auc``).
        higher_is_better: direction of ``metric``.
        matrix_args: per budget (``tiny``, ``quick``, ``full``), the arguments that train and test the
            quick model, passed to both ``fit`` and ``test`` (a checkpoint restores only the model's settings,
            so data settings must reach ``test`` too); the matrix adds the run options and one
            ``--<site.config_key>`` per site.
    """

    name: str
    title: str
    quick: Callable[[Path], list[DemoRow]]
    budget_s: float = 150.0
    full: Callable[[Path], list[DemoRow]] | None = None
    sites: tuple[AttentionSite, ...] = ()
    cli: Callable[[list[str]], object] | None = None
    metric: str = ""
    higher_is_better: bool = True
    matrix_args: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.matrix_args) - set(BUDGETS)
        if unknown:
            raise ValueError(
                f"Domain {self.name!r}: matrix_args has unknown budget(s) {sorted(unknown)}; expected {BUDGETS}"
            )


@dataclass(frozen=True)
class DomainEntry:
    """An installed domain entry point, loaded or with the error that stopped it from loading."""

    name: str
    dist: str
    version: str
    domain: Domain | None
    error: str | None


def discover_domains() -> list[DomainEntry]:
    """All entry points in ``polyhead.domains``, sorted by name; a broken one is reported, not raised."""
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        try:
            obj = ep.load()
        except Exception as err:  # a broken optional package must not break `polyhead list`
            found.append(DomainEntry(ep.name, dist, version, None, f"{type(err).__name__}: {err}"))
            continue
        if not isinstance(obj, Domain):
            found.append(DomainEntry(ep.name, dist, version, None, f"{ep.value} is not a polyhead Domain"))
            continue
        found.append(DomainEntry(ep.name, dist, version, obj, None))
    return sorted(found, key=lambda e: e.name)


@dataclass(frozen=True)
class MeasuredResult:
    """One figure from a domain's measured results (``value``) and where it was measured (``source``)."""

    value: float
    source: str


def measured_results(package: str) -> dict[str, MeasuredResult]:
    """The measured full-configuration figures a domain ships as data, ``<package>/results.json``.

    ``polyhead demo`` shows them beside the quick rows. The figures are measured (the README's results
    tables are their record) and kept out of code, so a re-measurement edits one data file. Format:
    ``{"rows": {"<key>": {"value": <float>, "source": "<what was run, where>"}}}``.

    Raises:
        FileNotFoundError: the package ships no ``results.json``.
        ValueError: a row without a numeric ``value`` or a ``source``.
    """
    import json
    from importlib.resources import files

    path = files(package) / "results.json"
    rows = json.loads(path.read_text(encoding="utf-8")).get("rows", {})
    out = {}
    for key, row in rows.items():
        if not isinstance(row.get("value"), int | float) or not isinstance(row.get("source"), str):
            raise ValueError(f"{path}: row {key!r} needs a numeric 'value' and a 'source', got {row!r}")
        out[key] = MeasuredResult(float(row["value"]), row["source"])
    return out
