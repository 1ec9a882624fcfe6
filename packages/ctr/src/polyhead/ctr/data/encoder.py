"""Feature encoding fitted on the training split only (AutoInt / FuxiCTR conventions).

Per field, local indices: ``0`` = missing value, ``1`` = out-of-vocabulary (values seen fewer than
``min_count`` times in the training split, and values never seen), ``2..`` = the vocabulary in order of
decreasing training frequency. Numeric fields are discretised (``polyhead.ctr.data.buckets``: the Criteo
transform ``floor(ln(x)^2)``, or quantile buckets of the training values where the log buckets would
collapse the field) and then treated like categories; in ``scale`` mode the model multiplies the field's
embedding by ``sign(x) * ln(1 + |x|)`` (AutoInt's value-scaled numeric embedding; index 1; missing values
use index 0 with value 1). The fitted encoder is a small JSON file saved with the data cache, the run and
the checkpoint, and reused by ``test``/``predict``; :meth:`FeatureEncoder.summary` reports each field.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from polyhead.ctr.data.buckets import bucket_code, choose_buckets, numeric_bucket_code, numeric_bucket_expr
from polyhead.ctr.data.counts import ValueCounter
from polyhead.ctr.data.formats import FieldSpec

MISSING, OOV = 0, 1
# Integer values below this get their numeric field's index from a table built once per field.
TABLE_SIZE = 1 << 16
FIT_BATCH_ROWS = 1 << 18


def scale_expr(name: str) -> pl.Expr:
    x = pl.col(name)
    return (x.sign() * x.abs().log1p()).fill_null(1.0).cast(pl.Float32)


@dataclass
class EncodedField:
    name: str
    type: str
    numeric_mode: str
    min_count: int
    vocab: list[str]
    bucketing: str = ""  # numeric fields discretised: "log" or "quantile"
    boundaries: list[float] = field(default_factory=list)  # quantile bucket edges (train quantiles)
    log_buckets: int = 0  # distinct log buckets in the training rows (why quantiles were chosen)

    @property
    def size(self) -> int:
        """Number of local indices (missing + OOV + vocabulary)."""
        return 2 + len(self.vocab) if self.is_categorical else 2

    @property
    def is_categorical(self) -> bool:
        return self.type == "categorical" or self.numeric_mode != "scale"

    @functools.cached_property
    def _numeric_lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(index of each integer 0..TABLE_SIZE-1, sorted bucket numbers, their indices)``."""
        keys = np.array([bucket_code(self.bucketing, v) for v in self.vocab], dtype=np.int64)
        order = np.argsort(keys)
        keys, values = keys[order], (np.arange(len(keys), dtype=np.int32) + 2)[order]
        grid = pl.Series("x", np.arange(TABLE_SIZE, dtype=np.float64))
        return self._lookup(self._bucket_numbers(grid), keys, values), keys, values

    def _bucket_numbers(self, x: pl.Series) -> np.ndarray:
        # polars' own expression, so the table and the values off it are bucketed identically
        code = numeric_bucket_code("x", self.bucketing, self.boundaries)
        return pl.DataFrame({"x": x}).select(code.alias("x"))["x"].to_numpy()

    @staticmethod
    def _lookup(codes: np.ndarray, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        if keys.size == 0:
            return np.full(codes.shape, OOV, dtype=np.int32)
        pos = np.searchsorted(keys, codes).clip(0, keys.size - 1)
        return np.where(keys[pos] == codes, values[pos], OOV).astype(np.int32)

    def index_numeric(self, s: pl.Series) -> pl.Series:
        """The local index of each value of a bucketed numeric field (``MISSING`` for null, ``OOV`` for a
        bucket outside the vocabulary).

        The Criteo transform takes a logarithm per value; count fields hold few distinct small integers, so
        the indices of the integers below ``TABLE_SIZE`` are computed once (with the same polars expression)
        and looked up; other values are bucketed one by one.
        """
        x = s.cast(pl.Float64).to_numpy()  # nulls read as NaN
        null = s.is_null().to_numpy()
        table, keys, values = self._numeric_lookup
        out = np.full(x.shape, MISSING, dtype=np.int32)
        with np.errstate(invalid="ignore"):
            small = (x >= 0) & (x < TABLE_SIZE) & (x == np.floor(x))  # False for NaN
        out[small] = table[x[small].astype(np.int64)]
        rest = ~small & ~null
        if rest.any():
            out[rest] = self._lookup(self._bucket_numbers(pl.Series("x", x[rest])), keys, values)
        return pl.Series(s.name, out)

    @functools.cached_property
    def enum(self) -> pl.Enum:
        """The vocabulary as an Enum dtype (codes = vocabulary positions), built once per fitted field."""
        return pl.Enum(self.vocab)


@dataclass
class FeatureEncoder:
    fields: list[EncodedField]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def cardinalities(self) -> list[int]:
        return [f.size for f in self.fields]

    @classmethod
    def fit(cls, train: pl.LazyFrame | pl.DataFrame, specs: list[FieldSpec]) -> FeatureEncoder:
        """Fit bucketings and vocabularies on the training rows: one (streaming) pass counts every field."""
        names = [s.name for s in specs if s.type == "categorical" or s.numeric_mode != "scale"]
        counter = ValueCounter(names)
        # Batches of a streaming query: one pass over the input for every field, memory bounded by a batch
        # and the distinct values.
        for batch in (
            train.lazy().select(names).collect_batches(chunk_size=FIT_BATCH_ROWS, engine="streaming")
        ):
            counter.add(batch)
        return cls.fit_counts(counter.result(), specs)

    @classmethod
    def fit_counts(cls, counts: dict[str, pl.DataFrame], specs: list[FieldSpec]) -> FeatureEncoder:
        """Fit from the training rows' value counts (``polyhead.ctr.data.counts``: ``value``, ``len`` per field).

        Numeric fields choose their buckets from the counts of their raw values, which are then summed per
        bucket; the vocabulary of a field is its values (buckets) seen at least ``min_count`` times, most
        frequent first (ties by value, so the order is reproducible).
        """
        cat = [s for s in specs if s.type == "categorical" or s.numeric_mode != "scale"]
        numeric = [s for s in cat if s.type == "numeric"]
        buckets = choose_buckets({s.name: counts[s.name] for s in numeric}, numeric)
        fields = [
            EncodedField(s.name, s.type, s.numeric_mode, s.min_count, [], *buckets.get(s.name, ("", [], 0)))
            for s in specs
        ]
        by_name = {f.name: f for f in fields}
        for s in cat:
            f = by_name[s.name]
            vc = counts[s.name]
            if s.type == "numeric":
                vc = (
                    vc.with_columns(numeric_bucket_expr("value", f.bucketing, f.boundaries).alias("value"))
                    .group_by("value")
                    .agg(pl.col("len").sum())
                )
            f.vocab = (
                vc.with_columns(pl.col("value").cast(pl.Utf8))
                .filter(pl.col("len") >= s.min_count)
                .sort(["len", "value"], descending=[True, False])["value"]
                .to_list()
            )
        return cls(fields)

    def summary(self) -> list[dict]:
        """Per field: how it is encoded and into how many values (a field with fewer than 2 is constant)."""
        out = []
        for f in self.fields:
            row = {"field": f.name, "type": f.type, "size": f.size}
            if f.type == "numeric":
                row["numeric"] = f.bucketing if f.is_categorical else "scale"
                if f.is_categorical:
                    row["buckets"] = len(f.vocab)
                    row["log_buckets"] = f.log_buckets
            out.append(row)
        return out

    def warnings(self) -> list[str]:
        """Fields that carry no information after encoding (one value or none in the training rows)."""
        return [
            f"field {f.name!r} has {len(f.vocab)} value(s) in the training rows after encoding "
            f"(min_count {f.min_count}): it is constant for the model"
            for f in self.fields
            if f.is_categorical and len(f.vocab) < 2
        ]

    def transform(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """Add ``idx_<field>`` (Int32 local index) and, for scaled numerics, ``val_<field>`` (Float32)."""
        exprs = []
        for f in self.fields:
            if f.is_categorical and f.type == "numeric":
                exprs.append(
                    pl.col(f.name)
                    .map_batches(f.index_numeric, return_dtype=pl.Int32, is_elementwise=True)
                    .alias(f"idx_{f.name}")
                )
            elif f.is_categorical:
                # Enum codes are the vocabulary positions; unknown values cast to null (-> OOV). Unlike
                # replace_strict with a large mapping, this cast streams without materialising columns.
                code = pl.col(f.name).cast(f.enum, strict=False).to_physical().cast(pl.Int32)
                exprs.append(
                    pl.when(pl.col(f.name).is_null())
                    .then(MISSING)
                    .otherwise(pl.when(code.is_null()).then(OOV).otherwise(code + 2))
                    .cast(pl.Int32)
                    .alias(f"idx_{f.name}")
                )
            else:
                exprs.append(
                    pl.when(pl.col(f.name).is_null())
                    .then(MISSING)
                    .otherwise(1)
                    .cast(pl.Int32)
                    .alias(f"idx_{f.name}")
                )
                exprs.append(scale_expr(f.name).alias(f"val_{f.name}"))
        return lf.with_columns(exprs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({**self.to_dict(), "summary": self.summary()}))

    @classmethod
    def load(cls, path: str | Path) -> FeatureEncoder:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureEncoder:
        return cls([EncodedField(**f) for f in data["fields"]])
