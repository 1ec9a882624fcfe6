"""Train / validation / test assignment of the rows of a click log (the ``split`` column: 0, 1, 2).

Four ways, one per run (:class:`SplitSpec`):

- ``hash`` (default): a seeded 8:1:1 split by hashing the line number (order-independent, reproducible;
  the AutoInt paper's random 8:1:1 split);
- ``column``: the file's own split column (``train``/``val``/``test``, validated per line by the reader);
- ``time``: train on the past, validate and test on the future: the rows are ordered by the time column
  and the last ``test_fraction`` (by time) are the test split, the ``val_fraction`` before them the
  validation split. Rows sharing a timestamp stay in one split, so no timestamp is in two splits;
- ``holdout_last``: the last ``N`` rows of the file are the test split and the ``N`` before them the
  validation split (click logs such as Criteo's are written in time order, so this is their time split).

The feature encoder is fitted on the train rows only, whichever way they were chosen.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from polyhead.ctr.data.spec import SplitSpec as SplitSpec


def hash_split(seed: int) -> pl.Expr:
    """Seeded, order-independent 8:1:1 split by hashing the line number: 0 train, 1 val, 2 test."""
    bucket = pl.col("line").hash(seed) % 10
    return pl.when(bucket < 8).then(0).when(bucket == 8).then(1).otherwise(2).cast(pl.UInt8).alias("split")


def time_bounds(times: pl.Series, spec: SplitSpec) -> tuple[Any, Any, bool]:
    """The validation and test thresholds of a time split from every row's time value, and whether the
    values compare as numbers (numeric text does, so "9" < "10"). One column in memory, not the rows."""
    numeric = False
    if times.dtype == pl.Utf8:
        as_num = times.str.strip_chars().cast(pl.Float64, strict=False)
        if as_num.null_count() == 0:
            times, numeric = as_num, True
    t = times.sort()
    n = len(t)
    i_val = min(n - 1, int(n * (1 - spec.val_fraction - spec.test_fraction)))
    i_test = min(n - 1, int(n * (1 - spec.test_fraction)))
    return t[i_val], t[i_test], numeric


def split_expr(
    spec: SplitSpec, *, bounds: tuple[Any, Any, bool] | None = None, n_rows: int | None = None
) -> pl.Expr:
    """The ``split`` column (UInt8) of a frame with ``line`` (hash), ``_split`` (column), ``_time`` (time, with
    :func:`time_bounds`) or ``_row``, the position among the good rows (holdout_last, with ``n_rows``)."""
    if spec.method == "hash":
        return hash_split(spec.seed)
    if spec.method == "column":
        return pl.col("_split").alias("split")
    if spec.method == "time":
        assert bounds is not None
        t_val, t_test, numeric = bounds
        key = pl.col("_time").str.strip_chars().cast(pl.Float64) if numeric else pl.col("_time")
        split = pl.when(key < t_val).then(0).when(key < t_test).then(1).otherwise(2)
        return split.cast(pl.UInt8).alias("split")
    assert n_rows is not None and spec.holdout_last is not None
    k, row = spec.holdout_last, pl.col("_row")
    split = pl.when(row >= n_rows - k).then(2).when(row >= n_rows - 2 * k).then(1).otherwise(0)
    return split.cast(pl.UInt8).alias("split")


def check_holdout(spec: SplitSpec, n_rows: int, *, source: str) -> None:
    """Refuse a ``holdout_last`` that leaves no training rows."""
    k = spec.holdout_last
    assert k is not None
    if n_rows <= 2 * k:
        raise ValueError(
            f"{source}: data.holdout_last {k} holds out {2 * k} rows (validation + test) of {n_rows}: nothing is left to train on"
        )


def assign_splits(lf: pl.LazyFrame, spec: SplitSpec, *, source: str) -> pl.LazyFrame:
    """``lf`` (the reader's good rows) with a ``split`` column (UInt8: 0 train, 1 val, 2 test)."""
    if spec.method in ("hash", "column"):
        return lf.with_columns(split_expr(spec))
    if spec.method == "time":
        times = lf.select(pl.col("_time")).collect(engine="streaming")["_time"]
        return lf.with_columns(split_expr(spec, bounds=time_bounds(times, spec)))
    n = lf.select(pl.len()).collect(engine="streaming").item()
    check_holdout(spec, n, source=source)
    # position among the good rows (a row index streams; a window over len() would not)
    return lf.with_row_index("_row").with_columns(split_expr(spec, n_rows=n)).drop("_row")
