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

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from polyhead.ctr.data.buckets import choose_buckets, numeric_bucket_expr
from polyhead.ctr.data.formats import FieldSpec

MISSING, OOV = 0, 1


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

    def bucket_expr(self) -> pl.Expr:
        """The field as the string category its vocabulary is counted over."""
        if self.type == "categorical":
            return pl.col(self.name)
        return numeric_bucket_expr(self.name, self.bucketing, self.boundaries)


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
    def fit(cls, train: pl.LazyFrame, specs: list[FieldSpec]) -> FeatureEncoder:
        """Fit bucketings and vocabularies on the (lazy) training split.

        One pass chooses each numeric field's buckets, one grouped count fits every vocabulary.
        """
        cat = [s for s in specs if s.type == "categorical" or s.numeric_mode != "scale"]
        buckets = choose_buckets(train, [s for s in cat if s.type == "numeric"])
        fields = [
            EncodedField(s.name, s.type, s.numeric_mode, s.min_count, [], *buckets.get(s.name, ("", [], 0)))
            for s in specs
        ]
        by_name = {f.name: f for f in fields}
        prepared = train.with_columns(
            [by_name[s.name].bucket_expr().alias(s.name) for s in cat if s.type == "numeric"]
        )
        # One streaming pass: all categorical columns as (field, value) rows, counted together. Memory
        # is the number of distinct values, not the number of rows.
        min_counts = {s.name: s.min_count for s in cat}
        counts = (
            prepared.select([pl.col(s.name).cast(pl.Utf8) for s in cat])
            .unpivot(variable_name="field", value_name="value")
            .drop_nulls("value")
            .group_by("field", "value")
            .len()
            .filter(pl.col("len") >= pl.col("field").replace_strict(min_counts, return_dtype=pl.Int64))
            .collect(engine="streaming")
            .sort(["field", "len", "value"], descending=[False, True, False])
        )
        for (name,), grp in counts.group_by("field", maintain_order=True):
            by_name[name].vocab = grp["value"].to_list()
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
            if f.is_categorical:
                src = f.bucket_expr()
                # Enum codes are the vocabulary positions; unknown values cast to null (-> OOV). Unlike
                # replace_strict with a large mapping, this cast streams without materialising columns.
                code = src.cast(pl.Enum(f.vocab), strict=False).to_physical().cast(pl.Int32)
                mapped = pl.when(code.is_null()).then(OOV).otherwise(code + 2)

                exprs.append(
                    pl.when(pl.col(f.name).is_null())
                    .then(MISSING)
                    .otherwise(mapped)
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
