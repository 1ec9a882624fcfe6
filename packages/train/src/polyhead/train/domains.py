"""Domain discovery for the umbrella ``polyhead`` command.

A domain package registers a :class:`Domain` under the entry-point group ``polyhead.domains``::

    [project.entry-points."polyhead.domains"]
    ctr = "polyhead.ctr.pipeline:DOMAIN"

``Domain.quick(out_dir)`` runs the domain's end-to-end pipeline in quick mode (prepare -> fit -> test ->
report) and returns :class:`DemoRow` results for the ``polyhead demo`` summary table. The steps live in the
domain package itself, so the demo also works for a package installed alone from a wheel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "polyhead.domains"


@dataclass(frozen=True)
class DemoRow:
    """One line of the ``polyhead demo`` summary table."""

    domain: str
    model: str
    dataset: str
    metric: str
    value: float
    baseline: str
    baseline_value: float | None
    wall_s: float


@dataclass(frozen=True)
class Domain:
    """A domain package as seen by the umbrella command.

    Attributes:
        name: short name, also the ``polyhead-<name>`` command.
        title: one line saying what the domain does.
        quick: runs the quick pipeline into ``out_dir`` and returns its summary rows.
    """

    name: str
    title: str
    quick: Callable[[Path], list[DemoRow]]


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
