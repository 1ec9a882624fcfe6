"""Feature encoding fitted on the training split only (AutoInt / FuxiCTR conventions).

Per field, local indices: ``0`` = missing value, ``1`` = out-of-vocabulary (values seen fewer than
``min_count`` times in the training split, and values never seen), ``2..`` = the vocabulary in order of
decreasing training frequency. Numeric fields in ``bucket`` mode are first discretised with the Criteo
transform ``floor(ln(x)^2)`` for ``x > 2`` (``floor(x)`` otherwise) and then treated like categories; in
``scale`` mode the model multiplies the field's embedding by ``sign(x) * ln(1 + |x|)`` (index 1; missing
values use index 0 with value 1). The fitted encoder is a small JSON file saved with the data cache and the
run, and reused by ``test``/``predict``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from polyhead.ctr.data.formats import FieldSpec

MISSING, OOV = 0, 1


def bucket_expr(name: str) -> pl.Expr:
    """Criteo numeric discretisation, as a string category (null stays null)."""
    x = pl.col(name)
    b = pl.when(x > 2).then((x.log() ** 2).floor()).otherwise(x.floor())
    return b.cast(pl.Int64).cast(pl.Utf8).alias(name)


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

    @property
    def size(self) -> int:
        """Number of local indices (missing + OOV + vocabulary)."""
        return 2 + len(self.vocab) if self.is_categorical else 2

    @property
    def is_categorical(self) -> bool:
        return self.type == "categorical" or self.numeric_mode == "bucket"


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
        """Fit vocabularies on the (lazy) training split; one grouped count per categorical field."""
        cat = [s for s in specs if s.type == "categorical" or s.numeric_mode == "bucket"]
        prepared = train.with_columns([bucket_expr(s.name) for s in cat if s.type == "numeric"])
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
        vocabs = {
            name: grp["value"].to_list() for (name,), grp in counts.group_by("field", maintain_order=True)
        }
        fields = [
            EncodedField(
                s.name,
                s.type,
                s.numeric_mode,
                s.min_count,
                vocabs.get(s.name, []),
            )
            for s in specs
        ]
        return cls(fields)

    def transform(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """Add ``idx_<field>`` (Int32 local index) and, for scaled numerics, ``val_<field>`` (Float32)."""
        exprs = []
        for f in self.fields:
            if f.is_categorical:
                src = bucket_expr(f.name) if f.type == "numeric" else pl.col(f.name)
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
        Path(path).write_text(json.dumps({"fields": [asdict(f) for f in self.fields]}))

    @classmethod
    def load(cls, path: str | Path) -> FeatureEncoder:
        data = json.loads(Path(path).read_text())
        return cls([EncodedField(**f) for f in data["fields"]])

    def to_dict(self) -> dict:
        return {"fields": [asdict(f) for f in self.fields]}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureEncoder:
        return cls([EncodedField(**f) for f in data["fields"]])
