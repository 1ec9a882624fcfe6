"""Raw CTR log formats: Criteo (TSV, no header), Avazu (CSV with header), and spec-described files.

Every reader returns a polars ``LazyFrame`` (nothing is loaded until collected or sunk, so files larger
than memory stream) with a ``line`` column (1-based line number in the file), the label and the typed
feature columns, plus a lazy report of malformed lines. Malformed lines either stop the run with the
file and line number (:class:`MalformedLineError`) or, with ``skip_bad_lines=True``, are skipped and
counted; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

FieldType = Literal["categorical", "numeric"]


@dataclass(frozen=True)
class FieldSpec:
    """One input column.

    Attributes:
        name: column name.
        type: ``categorical`` or ``numeric``.
        min_count: categorical values seen fewer times in the training split map to the field's OOV index.
        numeric_mode: ``bucket`` (Criteo transform floor(ln(x)^2) for x > 2, then embedded as a category)
            or ``scale`` (the value times the field embedding).
    """

    name: str
    type: FieldType
    min_count: int = 10
    numeric_mode: Literal["bucket", "scale"] = "bucket"


@dataclass(frozen=True)
class DatasetSpec:
    """A whole file: its layout, label and feature fields."""

    format: Literal["criteo", "avazu", "csv", "tsv", "parquet"]
    label: str
    fields: list[FieldSpec]
    id_column: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


def criteo_spec(min_count: int = 10, numeric_mode: str = "bucket") -> DatasetSpec:
    """Criteo display-ads layout: label, I1..I13 (integer counts), C1..C26 (hashed categories)."""
    fields = [FieldSpec(f"I{i}", "numeric", min_count, numeric_mode) for i in range(1, 14)]  # type: ignore[arg-type]
    fields += [FieldSpec(f"C{i}", "categorical", min_count) for i in range(1, 27)]
    return DatasetSpec("criteo", "label", fields)


AVAZU_CATEGORICAL = [
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    "C14",
    "C15",
    "C16",
    "C17",
    "C18",
    "C19",
    "C20",
    "C21",
]


def avazu_spec(min_count: int = 10) -> DatasetSpec:
    """Avazu layout: ``id,click,hour,C1,...`` with every feature categorical (hour as hour-of-day)."""
    return DatasetSpec(
        "avazu", "click", [FieldSpec(c, "categorical", min_count) for c in AVAZU_CATEGORICAL], "id"
    )


class MalformedLineError(ValueError):
    """A line of a raw file does not match its format."""


@dataclass
class ReadResult:
    """A lazily read file.

    Attributes:
        frame: ``line``, label (Int8), features (numeric: Float64 with nulls; categorical: Utf8 with nulls).
        bad: lazy frame of malformed lines: ``line``, ``reason``.
    """

    frame: pl.LazyFrame
    bad: pl.LazyFrame


def _lines(path: Path) -> pl.LazyFrame:
    # One string column per physical line (the unit-separator never occurs in these logs); empty lines
    # come through as nulls, so the row index is the line number.
    return pl.scan_csv(
        path, has_header=False, separator="\x1f", quote_char=None, schema={"raw": pl.Utf8}
    ).with_row_index("line", offset=1)


def read_delimited(path: Path, spec: DatasetSpec, *, separator: str, header: bool) -> ReadResult:
    """Read a delimited text file column-by-position, validating every line."""
    if header:
        with open(path, encoding="utf-8", errors="replace") as f:
            columns = f.readline().rstrip("\r\n").split(separator)
        missing = [c for c in [spec.label, *spec.names] if c not in columns]
        if missing:
            raise MalformedLineError(f"{path}: line 1 (header) lacks column(s) {missing}; found {columns}")
    else:
        columns = [spec.label, *spec.names]
    n = len(columns)
    lf = _lines(path)
    if header:
        lf = lf.filter(pl.col("line") > 1)
    parts = pl.col("raw").str.split(separator)
    lf = lf.with_columns(parts.list.len().alias("_n"))
    parsed = lf.with_columns([parts.list.get(i, null_on_oob=True).alias(c) for i, c in enumerate(columns)])
    empty = lambda c: pl.col(c).is_null() | (pl.col(c) == "")  # noqa: E731
    label_ok = pl.col(spec.label).cast(pl.Int8, strict=False).is_in([0, 1])
    checks = [
        (pl.col("raw").is_null() | (pl.col("raw").str.strip_chars() == ""), pl.lit("empty line")),
        (pl.col("_n") != n, pl.format(f"expected {n} fields, found {{}}", pl.col("_n"))),
        (~label_ok, pl.format(f"label {spec.label!r} must be 0 or 1, got '{{}}'", pl.col(spec.label))),
    ]
    for f in spec.fields:
        if f.type == "numeric":
            bad_num = ~empty(f.name) & pl.col(f.name).cast(pl.Float64, strict=False).is_null()
            checks.append(
                (bad_num, pl.format(f"field {f.name!r} must be numeric, got '{{}}'", pl.col(f.name)))
            )
    reason = pl.when(checks[0][0]).then(checks[0][1])
    for cond, msg in checks[1:]:
        reason = reason.when(cond).then(msg)
    parsed = parsed.with_columns(reason.otherwise(None).alias("_reason"))
    bad = parsed.filter(pl.col("_reason").is_not_null()).select("line", pl.col("_reason").alias("reason"))
    feats = []
    for f in spec.fields:
        col = pl.when(empty(f.name)).then(None).otherwise(pl.col(f.name))
        feats.append(
            col.cast(pl.Float64, strict=False).alias(f.name) if f.type == "numeric" else col.alias(f.name)
        )
    keep = ["line", pl.col(spec.label).cast(pl.Int8).alias("label"), *feats]
    if spec.id_column and spec.id_column in columns:
        keep.append(pl.col(spec.id_column).alias("id"))
    good = parsed.filter(pl.col("_reason").is_null()).select(keep)
    return ReadResult(good, bad)


def read_raw(path: str | Path, spec: DatasetSpec) -> ReadResult:
    """Read ``path`` in ``spec.format`` (see :class:`DatasetSpec`)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CTR data file not found: {p}")
    if spec.format == "criteo":
        return read_delimited(p, spec, separator="\t", header=False)
    if spec.format in ("avazu", "csv"):
        res = read_delimited(p, spec, separator=",", header=True)
    elif spec.format == "tsv":
        res = read_delimited(p, spec, separator="\t", header=True)
    elif spec.format == "parquet":
        lf = pl.scan_parquet(p).with_row_index("line", offset=1)
        cols = [pl.col(spec.label).cast(pl.Int8).alias("label")]
        cols += [
            pl.col(f.name).cast(pl.Float64) if f.type == "numeric" else pl.col(f.name).cast(pl.Utf8)
            for f in spec.fields
        ]
        if spec.id_column:
            cols.append(pl.col(spec.id_column).alias("id"))
        bad = lf.filter(~pl.col(spec.label).is_in([0, 1])).select(
            "line", pl.format("label must be 0 or 1, got {}", pl.col(spec.label)).alias("reason")
        )
        return ReadResult(lf.filter(pl.col(spec.label).is_in([0, 1])).select("line", *cols), bad)
    else:
        raise ValueError(f"unknown CTR format {spec.format!r}; expected criteo, avazu, csv, tsv or parquet")
    if spec.format == "avazu":
        # Avazu's hour is YYMMDDHH: the hour of day is the informative, low-cardinality part.
        res.frame = res.frame.with_columns(pl.col("hour").str.slice(6, 2))
    return res


def check_bad_lines(path: str | Path, result: ReadResult, *, skip: bool, limit: int = 20) -> int:
    """Raise on the first malformed line, or (``skip``) report and return how many were skipped."""
    bad = result.bad.collect(engine="streaming")
    if bad.height == 0:
        return 0
    if not skip:
        first = bad.row(0, named=True)
        more = f" (and {bad.height - 1} more malformed lines)" if bad.height > 1 else ""
        raise MalformedLineError(
            f"{path}: line {first['line']}: {first['reason']}{more}; pass skip_bad_lines=true to skip and count them"
        )
    shown = ", ".join(f"line {r['line']} ({r['reason']})" for r in bad.head(limit).iter_rows(named=True))
    print(
        f"polyhead-ctr: skipped {bad.height} malformed line(s) in {path}: {shown}{' ...' if bad.height > limit else ''}"
    )
    return bad.height
