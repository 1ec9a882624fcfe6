"""Value counts of many columns, the statistics the feature encoder is fitted from.

Fitting a CTR encoder needs, per field, the distinct training values and how often each occurs: the
vocabularies (values seen at least ``min_count`` times, by decreasing frequency) and the numeric bucketings
(distinct values, distinct log buckets, quantiles; ``polyhead.ctr.data.buckets``) all follow from them. The
counts of every column are computed in one parallel polars pass over a frame (:func:`value_counts`), or
accumulated over the blocks of a file read in pieces (:class:`ValueCounter`): memory is the number of
distinct values, not the number of rows. This replaces DeepCTR/scikit-learn's one ``LabelEncoder`` per
column (a sort of each column) and an earlier all-columns unpivot (one row per cell).
"""

from __future__ import annotations

import polars as pl

# Partial counts are merged once this many (column, value) rows have piled up: bounds memory by the
# distinct values while keeping the merges rare.
MERGE_ROWS = 1_000_000


def value_counts(frame: pl.DataFrame | pl.LazyFrame, names: list[str]) -> dict[str, pl.DataFrame]:
    """Per column of ``names``: its distinct non-null values (``value``) and their counts (``len``, Int64).

    The per-column group-bys run as one ``collect_all`` on polars' in-memory engine (in parallel; a filter
    in a lazy ``frame`` runs inside each column's query). For a large lazy input use :class:`ValueCounter`
    on its batches.
    """
    lf = frame.lazy()
    queries = [
        lf.select(pl.col(n).alias("value"))
        .drop_nulls()
        .group_by("value")
        .agg(pl.len().cast(pl.Int64).alias("len"))
        for n in names
    ]
    if not queries:
        return {}
    return dict(zip(names, pl.collect_all(queries)))


class ValueCounter:
    """Value counts of the same columns accumulated over blocks of rows (see :func:`value_counts`)."""

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self._parts: dict[str, list[pl.DataFrame]] = {n: [] for n in self.names}
        self._pending = 0

    def add(self, frame: pl.DataFrame, *, where: pl.Expr | None = None) -> None:
        """Count the rows of ``frame`` (which has every column of ``names``), those where ``where`` holds if given.

        The filter runs inside each column's query, so only that column's rows are gathered.
        """
        lf = frame.lazy() if where is None else frame.lazy().filter(where)
        for name, counts in value_counts(lf, self.names).items():
            self._parts[name].append(counts)
            self._pending += counts.height
        if self._pending > MERGE_ROWS:
            self._merge()

    def _merge(self) -> None:
        for name, parts in self._parts.items():
            if len(parts) > 1:
                self._parts[name] = [pl.concat(parts).group_by("value").agg(pl.col("len").sum())]
        self._pending = sum(p[0].height for p in self._parts.values() if p)

    def result(self) -> dict[str, pl.DataFrame]:
        """The counts of every row added so far, per column (``value``, ``len``)."""
        self._merge()
        return {
            n: p[0] if p else pl.DataFrame(schema={"value": pl.Utf8, "len": pl.Int64})
            for n, p in self._parts.items()
        }
