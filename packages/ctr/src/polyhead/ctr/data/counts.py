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

import numpy as np
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


class CodeCounter:
    """Counts of dense non-negative integer codes (a Categorical's physical values) accumulated over blocks.

    Per block and column, a ``np.bincount`` where the codes are dense enough for it (the largest code at
    most a few times the block's rows), else ``np.unique``; the running counts are one int64 array per column
    indexed by code, so memory is 8 bytes per distinct code. On 1M generated Criteo rows (26 categorical
    fields) this counts in about a third of the time of the per-column group-bys of :class:`ValueCounter`.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self._counts = {n: np.zeros(0, dtype=np.int64) for n in self.names}

    def add(self, frame: pl.DataFrame, mask: np.ndarray | None = None) -> None:
        """Count the codes of each column of ``names`` in ``frame`` (nulls skipped), the rows where ``mask``
        (a boolean array) holds if given."""
        keep = None if mask is None else pl.Series(mask)
        for n in self.names:
            s = frame[n] if keep is None else frame[n].filter(keep)
            codes = s.drop_nulls().to_numpy()  # unsigned codes, no copy
            if codes.size == 0:
                continue
            top = int(codes.max()) + 1
            acc = self._counts[n]
            if acc.size < top:
                grown = np.zeros(max(top, 2 * acc.size), dtype=np.int64)
                grown[: acc.size] = acc
                self._counts[n] = acc = grown
            if top <= 4 * codes.size + 4096:
                acc[:top] += np.bincount(codes, minlength=top)
            else:
                distinct, k = np.unique(codes, return_counts=True)
                acc[distinct] += k

    def result(self) -> dict[str, pl.DataFrame]:
        """Per column: the codes seen (``value``, UInt32) and their counts (``len``, Int64)."""
        out = {}
        for n, acc in self._counts.items():
            seen = np.flatnonzero(acc)
            out[n] = pl.DataFrame(
                {"value": seen.astype(np.uint32), "len": acc[seen]},
                schema={"value": pl.UInt32, "len": pl.Int64},
            )
        return out
