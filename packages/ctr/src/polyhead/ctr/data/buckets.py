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


def numeric_bucket_code(name: str, method: str, boundaries: list[float]) -> pl.Expr:
    """The bucket of each value as an Int64 (``log``: ``floor(ln(x)^2)`` for x > 2, else ``floor(x)``;
    ``quantile``: the number of edges <= x); null stays null."""
    x = pl.col(name)
    if method == "log":
        return pl.when(x > 2).then((x.log() ** 2).floor()).otherwise(x.floor()).cast(pl.Int64)
    if method != "quantile":
        raise ValueError(f"field {name!r}: unknown bucketing {method!r}")
    idx = pl.lit(pl.Series(boundaries, dtype=pl.Float64)).search_sorted(x, side="right").cast(pl.Int64)
    return pl.when(x.is_null()).then(None).otherwise(idx)


def numeric_bucket_expr(name: str, method: str, boundaries: list[float]) -> pl.Expr:
    """The bucket of each value as its vocabulary string (``log``: the bucket number; ``quantile``: ``q<i>``)."""
    code = numeric_bucket_code(name, method, boundaries)
    return code.cast(pl.Utf8) if method == "log" else pl.format("q{}", code)


def bucket_code(method: str, label: str) -> int:
    """The bucket number of a vocabulary string of :func:`numeric_bucket_expr`."""
    return int(label[1:] if method == "quantile" else label)


def quantile_edges(values: np.ndarray, num_quantiles: int, counts: np.ndarray | None = None) -> list[float]:
    """Distinct inner edges for at most ``num_quantiles`` buckets of the training values.

    ``values`` are the training values, or with ``counts`` the distinct values (ascending) and how often each
    occurs: the edges are the same as for the values repeated that often (``np.quantile(..., method="lower")``
    picks the value at rank ``floor(p * (n - 1))``, read here from the cumulative counts). A field with at
    most ``num_quantiles`` distinct values gets one bucket per value. Otherwise the edges are the row
    quantiles; where a heavy point mass (90% zeros) merges them into fewer than half the buckets, the
    quantiles of the distinct values are used instead, so the field keeps its spread.
    """
    if counts is None:
        distinct, counts = np.unique(values, return_counts=True)
    else:
        distinct = np.asarray(values)
    if distinct.size <= num_quantiles:
        return [float(e) for e in distinct[1:]]
    probs = np.linspace(0, 1, num_quantiles + 1)[1:-1]
    cum = np.cumsum(counts)
    ranks = np.floor(probs * (cum[-1] - 1)).astype(np.int64)
    edges = np.unique(distinct[np.searchsorted(cum, ranks, side="right")])
    edges = edges[edges > distinct[0]]  # an edge at the minimum would leave bucket 0 empty
    if edges.size + 1 < num_quantiles // 2:
        edges = np.unique(np.quantile(distinct, probs, method="lower"))
        edges = edges[edges > distinct[0]]
    return [float(e) for e in edges]


def log_buckets(values: np.ndarray) -> np.ndarray:
    """``floor(ln(x)^2)`` for x > 2, else ``floor(x)`` (the Criteo transform, as :func:`numeric_bucket_code`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 2, np.floor(np.log(values) ** 2), np.floor(values)).astype(np.int64)


def choose_buckets(
    counts: dict[str, pl.DataFrame], specs: list[FieldSpec]
) -> dict[str, tuple[str, list[float], int]]:
    """Per numeric field: ``(method, quantile edges, distinct log buckets)`` fitted on the training rows.

    ``counts[name]`` holds the field's distinct non-null training values (``value``, Float64) and how often each
    occurs (``len``): everything the choice needs (distinct values, distinct log buckets, quantiles), so the
    training rows are read once for all fields.
    """
    out: dict[str, tuple[str, list[float], int]] = {}
    for s in specs:
        vc = counts[s.name].sort("value")
        values, n = vc["value"].to_numpy(), vc["len"].to_numpy()
        n_raw = values.size
        n_log = int(np.unique(log_buckets(values)).size) if n_raw else 0
        if s.numeric_mode == "log" or (s.numeric_mode == "bucket" and n_log >= min(s.min_buckets, n_raw)):
            out[s.name] = ("log", [], n_log)
        else:
            edges = quantile_edges(values, s.num_quantiles, n) if n_raw else []
            out[s.name] = ("quantile", edges, n_log)
    return out
