"""Discretising numeric CTR fields so that no field collapses.

The standard Criteo transform (AutoInt, FuxiCTR, the Kaggle winners' pipeline) maps a count ``x > 2`` to
``floor(ln(x)^2)`` and smaller values to ``floor(x)``. It suits counts spread over orders of magnitude, but
maps every value of a narrow-range field to one bucket: every year from 1922 to 1998 has
``floor(ln(x)^2) = 57``, so a ``release_year`` field becomes a constant. Per field, on the training rows:

- ``log``: the Criteo transform;
- ``quantile``: edges at the training quantiles (at most ``num_quantiles`` buckets; one per value where the
  field has fewer distinct values; see :func:`quantile_edges`), value ``x`` in bucket ``#edges <= x``;
- ``bucket`` (default): ``log`` where it keeps at least ``min(min_buckets, distinct values)`` distinct
  buckets, else ``quantile``. The choice and both counts are in the encoder summary.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from polyhead.ctr.data.formats import FieldSpec


def log_bucket_expr(name: str) -> pl.Expr:
    """Criteo numeric discretisation, as a string category (null stays null)."""
    x = pl.col(name)
    b = pl.when(x > 2).then((x.log() ** 2).floor()).otherwise(x.floor())
    return b.cast(pl.Int64).cast(pl.Utf8)


def numeric_bucket_expr(name: str, method: str, boundaries: list[float]) -> pl.Expr:
    """The bucket of each value as a string (``log``: the bucket number; ``quantile``: ``q<i>``)."""
    if method == "log":
        return log_bucket_expr(name)
    if method != "quantile":
        raise ValueError(f"field {name!r}: unknown bucketing {method!r}")
    x = pl.col(name)
    idx = pl.lit(pl.Series(boundaries, dtype=pl.Float64)).search_sorted(x, side="right")
    return pl.when(x.is_null()).then(None).otherwise(pl.format("q{}", idx))


def quantile_edges(values: np.ndarray, num_quantiles: int) -> list[float]:
    """Distinct inner edges for at most ``num_quantiles`` buckets of the training values.

    A field with at most ``num_quantiles`` distinct values gets one bucket per value. Otherwise the edges
    are the row quantiles; where a heavy point mass (90% zeros) merges them into fewer than half the
    buckets, the quantiles of the distinct values are used instead, so the field keeps its spread.
    """
    distinct = np.unique(values)
    if distinct.size <= num_quantiles:
        return [float(e) for e in distinct[1:]]
    probs = np.linspace(0, 1, num_quantiles + 1)[1:-1]
    edges = np.unique(np.quantile(values, probs, method="lower"))
    edges = edges[edges > distinct[0]]  # an edge at the minimum would leave bucket 0 empty
    if edges.size + 1 < num_quantiles // 2:
        edges = np.unique(np.quantile(distinct, probs, method="lower"))
        edges = edges[edges > distinct[0]]
    return [float(e) for e in edges]


def choose_buckets(train: pl.LazyFrame, specs: list[FieldSpec]) -> dict[str, tuple[str, list[float], int]]:
    """Per numeric field: ``(method, quantile edges, distinct log buckets)`` fitted on ``train``."""
    if not specs:
        return {}
    stats = train.select(
        *[log_bucket_expr(s.name).drop_nulls().n_unique().alias(f"log:{s.name}") for s in specs],
        *[pl.col(s.name).drop_nulls().n_unique().alias(f"raw:{s.name}") for s in specs],
    ).collect(engine="streaming")
    out: dict[str, tuple[str, list[float], int]] = {}
    need_quantiles = []
    for s in specs:
        n_log, n_raw = stats[f"log:{s.name}"].item(), stats[f"raw:{s.name}"].item()
        if s.numeric_mode == "log" or (s.numeric_mode == "bucket" and n_log >= min(s.min_buckets, n_raw)):
            out[s.name] = ("log", [], n_log)
        else:
            need_quantiles.append(s)
            out[s.name] = ("quantile", [], n_log)
    if need_quantiles:  # one column per such field in memory (floats), not the rows
        cols = train.select([pl.col(s.name) for s in need_quantiles]).collect(engine="streaming")
        for s in need_quantiles:
            values = cols[s.name].drop_nulls().to_numpy()
            out[s.name] = ("quantile", quantile_edges(values, s.num_quantiles), out[s.name][2])
    return out
