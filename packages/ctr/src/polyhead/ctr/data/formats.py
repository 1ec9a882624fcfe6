"""Raw CTR log formats: Criteo (TSV, no header), Avazu (CSV with header), and spec-described files.

Every reader returns a polars ``LazyFrame`` (nothing is loaded until collected or sunk, so files larger
than memory stream) with a ``line`` column (1-based line number in the file), the label (when the file has
one: unlabeled files such as Criteo's 39-column test TSV or Avazu's test CSV are read for ``predict``) and
the typed feature columns, plus a lazy report of malformed lines. Malformed lines either stop the run with
the file and line number (:class:`MalformedLineError`) or, with ``skip_bad_lines=True``, are skipped and
counted; nothing is dropped silently. Files that are not text at all (empty, binary, not UTF-8) are refused
before reading with the file and line; blank lines at the end of a file are ignored; CSV fields may be
quoted (RFC 4180, ``""`` for a quote inside a quoted field, no line breaks inside fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
from polars.expr.whenthen import ChainedThen, Then

# The specs are defined without polars in spec.py (for a fast CLI start) and re-exported here.
from polyhead.ctr.data.spec import AVAZU_CATEGORICAL as AVAZU_CATEGORICAL
from polyhead.ctr.data.spec import DatasetSpec as DatasetSpec
from polyhead.ctr.data.spec import FieldSpec as FieldSpec
from polyhead.ctr.data.spec import avazu_spec as avazu_spec
from polyhead.ctr.data.spec import criteo_spec as criteo_spec


class MalformedLineError(ValueError):
    """A line of a raw file does not match its format."""


SPLIT_NAMES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2}
_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")  # gzip, zstd: polars decompresses them itself


@dataclass
class ReadResult:
    """A lazily read file.

    Attributes:
        frame: ``line``, ``label`` (Int8; only when ``labeled``), features (numeric: Float64 with nulls;
            categorical: Utf8 with nulls), ``id`` (the id column, if any), ``_split`` (UInt8 codes of the
            split column) and ``_time`` (the time column as read) when the spec names them.
        bad: lazy frame of malformed lines: ``line``, ``reason``.
        labeled: whether the file has the label column.
    """

    frame: pl.LazyFrame
    bad: pl.LazyFrame
    labeled: bool = True


def check_text_file(path: Path) -> None:
    """Refuse an empty file, or one whose first MiB is binary (NUL bytes), naming the file and line."""
    size = path.stat().st_size
    if size == 0:
        raise MalformedLineError(f"{path}: the file is empty (0 bytes); expected {_expected(path)}")
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if head.startswith(_COMPRESSED):
        return
    nul = head.find(b"\x00")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise MalformedLineError(
            f"{path}: line {line}: binary data (a NUL byte at byte {nul}); expected a text file ({_expected(path)})"
        )


def _expected(path: Path) -> str:
    return "CTR data lines" if path.suffix not in (".parquet", ".pq") else "a Parquet file"


def trailing_blank_lines(path: Path) -> int:
    """How many lines at the end of ``path`` are blank (whitespace only): they are ignored, not errors."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(2) in _COMPRESSED:
            return 0
        f.seek(max(0, size - (1 << 16)))
        tail = f.read()
    lines = tail.split(b"\n")
    if lines and lines[-1] == b"":  # the newline that ends the last line starts no line of its own
        lines.pop()
    n = 0
    for line in reversed(lines):
        if line.strip():
            break
        n += 1
    return n


def _lines(path: Path) -> pl.LazyFrame:
    # One string column per physical line (the unit-separator never occurs in these logs); empty lines
    # come through as nulls, so the row index is the line number. Invalid UTF-8 is replaced by U+FFFD
    # (and reported per line) instead of failing the whole scan without a line number.
    return pl.scan_csv(
        path,
        has_header=False,
        separator="\x1f",
        quote_char=None,
        schema={"raw": pl.Utf8},
        encoding="utf8-lossy",
    ).with_row_index("line", offset=1)


def first_data_line(path: Path) -> str | None:
    """The first line of ``path`` that is not blank (``None`` if there is none), reading only up to it (a
    scan of the lines would read the whole file: 270 MB of resident memory on a 244 MB Criteo file)."""
    with open(path, "rb") as f:
        compressed = f.read(4).startswith(_COMPRESSED)
    if compressed:  # polars decompresses
        first = _lines(path).filter(pl.col("raw").str.strip_chars() != "").select("raw").head(1).collect()
        return str(first.item()) if first.height else None
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                return raw.decode("utf-8", "replace").rstrip("\r\n")
    return None


def _has_quotes(path: Path) -> bool:
    return bool(_lines(path).select(pl.col("raw").str.contains('"', literal=True).any()).collect().item())


def _split_quoted(raw: pl.Expr, sep: str) -> tuple[pl.Expr, pl.Expr]:
    """RFC 4180 fields of a line (quoted with ``""`` escapes, or plain), and whether they cover the line.

    Each match is one field with its leading separator (none for the first); a stray quote leaves part of
    the line unmatched, which the coverage check reports.
    """
    s = re_escape(sep)
    matches = raw.str.extract_all(f'(?:^|{s})(?:"(?:[^"]|"")*"|[^{s}"]*)')
    covered = matches.list.eval(pl.element().str.len_bytes()).list.sum() == raw.str.len_bytes()
    field_ = pl.element().str.strip_prefix(sep)
    unquoted = (
        pl.when(field_.str.starts_with('"'))
        .then(field_.str.slice(1, field_.str.len_chars() - 2).str.replace_all('""', '"', literal=True))
        .otherwise(field_)
    )
    return matches.list.eval(unquoted), covered


def re_escape(sep: str) -> str:
    return "\\" + sep if sep in r".^$*+?()[]{}|\-" else sep


def read_header(path: Path, separator: str) -> list[str]:
    try:
        return pl.scan_csv(path, separator=separator, n_rows=0, infer_schema=False).collect_schema().names()
    except pl.exceptions.PolarsError as err:
        raise MalformedLineError(f"{path}: line 1 (header): cannot be read as a CSV header ({err})") from None


def delimited_layout(
    path: Path, spec: DatasetSpec, *, separator: str, header: bool, require_label: bool = True
) -> tuple[list[str], bool]:
    """The columns of a delimited file in order (from its header, or the format's layout) and whether it has
    the label: a headerless file with one field fewer than label + features is unlabeled when
    ``require_label`` is off."""
    extra = [c for c in (spec.split_column, spec.time_column) if c]
    if header:
        columns = read_header(path, separator)
        labeled = spec.label in columns
        needed = [*([spec.label] if require_label else []), *spec.names, *extra]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise MalformedLineError(f"{path}: line 1 (header) lacks column(s) {missing}; found {columns}")
        return columns, labeled
    if extra:
        raise ValueError(
            f"{path}: a {spec.format} file has no header, so no split or time column by name "
            f"({extra}); use data.holdout_last (the file's order is its time order) or the hash split"
        )
    first = first_data_line(path)
    n_first = len(first.split(separator)) if first is not None else 0
    labeled = require_label or n_first != len(spec.names)
    return [*([spec.label] if labeled else []), *spec.names], labeled


def formatted_fields(spec: DatasetSpec) -> set[str]:
    """The features :func:`format_features` rewrites as text (they are read as text first)."""
    return {"hour"} if spec.format == "avazu" else set()


def format_features(frame: pl.LazyFrame, spec: DatasetSpec) -> pl.LazyFrame:
    """What a format does to its read features before encoding (Avazu: the hour of day)."""
    if spec.format == "avazu":
        # Avazu's hour is YYMMDDHH: the hour of day is the informative, low-cardinality part.
        return frame.with_columns(pl.col("hour").str.slice(6, 2))
    return frame


def row_meta_columns(spec: DatasetSpec, columns: list[str]) -> list[pl.Expr]:
    """The per-row columns besides features and label of a delimited file's (already validated) text
    columns: the row id as ``id``, the split code as ``_split`` (0 train, 1 val, 2 test), the time as
    ``_time``; shared by the line reader and the block reader."""
    out = []
    if spec.id_column and spec.id_column in columns:
        out.append(pl.col(spec.id_column).alias("id"))
    if spec.split_column:
        code = pl.col(spec.split_column).str.strip_chars().str.to_lowercase()
        out.append(code.replace_strict(SPLIT_NAMES, return_dtype=pl.UInt8).alias("_split"))
    if spec.time_column:
        out.append(pl.col(spec.time_column).alias("_time"))
    return out


def read_delimited(
    path: Path, spec: DatasetSpec, *, separator: str, header: bool, require_label: bool = True
) -> ReadResult:
    """Read a delimited text file column-by-position, validating every line.

    Without ``require_label`` a file without the label column (a header without it, or one field fewer per
    line for a headerless format) is read as unlabeled.
    """
    check_text_file(path)
    columns, labeled = delimited_layout(
        path, spec, separator=separator, header=header, require_label=require_label
    )
    n = len(columns)
    lf = _lines(path)
    if header:
        lf = lf.filter(pl.col("line") > 1)
    raw = pl.col("raw")
    covered = pl.lit(True)
    if separator == "," and _has_quotes(path):
        parts, covered = _split_quoted(raw, separator)
    else:
        parts = raw.str.split(separator)
    lf = lf.with_columns(parts.alias("_parts"), covered.alias("_covered"))
    lf = lf.with_columns(pl.col("_parts").list.len().alias("_n"))
    parsed = lf.with_columns(
        [pl.col("_parts").list.get(i, null_on_oob=True).alias(c) for i, c in enumerate(columns)]
    )
    empty = lambda c: pl.col(c).is_null() | (pl.col(c) == "")  # noqa: E731
    expected = f"expected {n} fields"
    if not header and not require_label:
        expected = f"expected {n} fields ({'label + ' if labeled else ''}{len(spec.names)} features)"
    checks = [
        (raw.is_null() | (raw.str.strip_chars() == ""), pl.lit("empty line")),
        (raw.str.contains("\ufffd", literal=True), pl.lit("not UTF-8 text (binary data?)")),
        (raw.str.contains("\x00", literal=True), pl.lit("binary data (a NUL byte)")),
        (~pl.col("_covered"), pl.lit("unbalanced or stray quote in a quoted CSV field")),
        (pl.col("_n") != n, pl.format(f"{expected}, found {{}}", pl.col("_n"))),
    ]
    if labeled:
        label_ok = pl.col(spec.label).str.strip_chars().is_in(["0", "1"])
        checks.append(
            (~label_ok, pl.format(f"label {spec.label!r} must be 0 or 1, got '{{}}'", pl.col(spec.label)))
        )
    for f in spec.fields:
        if f.type == "numeric":
            as_float = pl.col(f.name).cast(pl.Float64, strict=False)
            bad_num = ~empty(f.name) & as_float.is_null()
            checks.append(
                (bad_num, pl.format(f"field {f.name!r} must be numeric, got '{{}}'", pl.col(f.name)))
            )
            if f.integer:
                # Int64 parsing refuses "3.5" and "1e9" (a float written where a count belongs).
                bad_int = ~empty(f.name) & pl.col(f.name).cast(pl.Int64, strict=False).is_null()
                checks.append(
                    (bad_int, pl.format(f"field {f.name!r} must be an integer, got '{{}}'", pl.col(f.name)))
                )
    if spec.split_column:
        code = pl.col(spec.split_column).str.strip_chars().str.to_lowercase()
        checks.append(
            (
                ~code.is_in(list(SPLIT_NAMES)),
                pl.format(
                    f"split column {spec.split_column!r} must be train, val (valid, validation, dev) or test, got '{{}}'",
                    pl.col(spec.split_column),
                ),
            )
        )
    if spec.time_column:
        checks.append((empty(spec.time_column), pl.lit(f"time column {spec.time_column!r} is empty")))
    reason: Then | ChainedThen = pl.when(checks[0][0]).then(checks[0][1])
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
    keep: list[pl.Expr | str] = ["line", *feats]
    if labeled:
        keep.insert(1, pl.col(spec.label).str.strip_chars().cast(pl.Int8).alias("label"))
    keep += row_meta_columns(spec, columns)
    good = parsed.filter(pl.col("_reason").is_null()).select(keep)
    return ReadResult(good, bad, labeled)


def read_parquet(path: Path, spec: DatasetSpec, *, require_label: bool = True) -> ReadResult:
    """A Parquet file with the spec's columns (typed by the spec); labels and split names validated per row."""
    try:
        lf = pl.scan_parquet(path)
        names = lf.collect_schema().names()
    except pl.exceptions.PolarsError as err:
        raise MalformedLineError(f"{path}: not a readable Parquet file ({err})") from None
    labeled = spec.label in names
    needed = [*([spec.label] if require_label else []), *spec.names]
    needed += [c for c in (spec.split_column, spec.time_column) if c]
    missing = [c for c in needed if c not in names]
    if missing:
        raise MalformedLineError(f"{path}: lacks column(s) {missing}; found {names}")
    lf = lf.with_row_index("line", offset=1)
    cols: list[pl.Expr | str] = ["line"]
    checks = []
    if labeled:
        cols.append(pl.col(spec.label).cast(pl.Int8, strict=False).alias("label"))
        checks.append(
            (
                ~pl.col(spec.label).cast(pl.Int8, strict=False).is_in([0, 1]),
                pl.format(f"label {spec.label!r} must be 0 or 1, got '{{}}'", pl.col(spec.label)),
            )
        )
    for f in spec.fields:
        if f.type == "numeric":
            cols.append(pl.col(f.name).cast(pl.Float64, strict=False))
            checks.append(
                (
                    pl.col(f.name).is_not_null() & pl.col(f.name).cast(pl.Float64, strict=False).is_null(),
                    pl.format(f"field {f.name!r} must be numeric, got '{{}}'", pl.col(f.name)),
                )
            )
        else:
            cols.append(pl.col(f.name).cast(pl.Utf8))
    if spec.id_column and spec.id_column in names:
        cols.append(pl.col(spec.id_column).alias("id"))
    if spec.split_column:
        code = pl.col(spec.split_column).cast(pl.Utf8).str.strip_chars().str.to_lowercase()
        checks.append(
            (
                ~code.is_in(list(SPLIT_NAMES)),
                pl.format(f"split column {spec.split_column!r} must be train, val or test, got '{{}}'", code),
            )
        )
        cols.append(code.replace_strict(SPLIT_NAMES, default=None, return_dtype=pl.UInt8).alias("_split"))
    if spec.time_column:
        checks.append(
            (pl.col(spec.time_column).is_null(), pl.lit(f"time column {spec.time_column!r} is empty"))
        )
        cols.append(pl.col(spec.time_column).alias("_time"))
    if not checks:
        return ReadResult(lf.select(cols), lf.head(0).select("line", pl.lit("").alias("reason")), labeled)
    reason: Then | ChainedThen = pl.when(checks[0][0]).then(checks[0][1])
    for cond, msg in checks[1:]:
        reason = reason.when(cond).then(msg)
    lf = lf.with_columns(reason.otherwise(None).alias("_reason"))
    bad = lf.filter(pl.col("_reason").is_not_null()).select("line", pl.col("_reason").alias("reason"))
    return ReadResult(lf.filter(pl.col("_reason").is_null()).select(cols), bad, labeled)


def read_raw(path: str | Path, spec: DatasetSpec, *, require_label: bool = True) -> ReadResult:
    """Read ``path`` in ``spec.format`` (see :class:`DatasetSpec`); ``require_label=False`` for ``predict``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CTR data file not found: {p}")
    if spec.format == "criteo":
        return read_delimited(p, spec, separator="\t", header=False, require_label=require_label)
    if spec.format in ("avazu", "csv"):
        res = read_delimited(p, spec, separator=",", header=True, require_label=require_label)
    elif spec.format == "tsv":
        res = read_delimited(p, spec, separator="\t", header=True, require_label=require_label)
    elif spec.format == "parquet":
        if p.stat().st_size == 0:
            raise MalformedLineError(f"{p}: the file is empty (0 bytes); expected a Parquet file")
        return read_parquet(p, spec, require_label=require_label)
    else:
        raise ValueError(f"unknown CTR format {spec.format!r}; expected criteo, avazu, csv, tsv or parquet")
    res.frame = format_features(res.frame, spec)
    return res


def check_bad_lines(path: str | Path, result: ReadResult, *, skip: bool, limit: int = 20) -> dict[str, int]:
    """Raise on the first malformed line, or (``skip``) report them and return the counts by kind of problem.

    Blank lines at the end of the file are not malformed (editors and ``echo >>`` leave them); blank lines
    between data lines are. The kind is the reason without the offending value (``field 'I1' must be an
    integer``).
    """
    bad = result.bad.collect(engine="streaming").sort("line")
    trailing = trailing_blank_lines(Path(path)) if bad.height else 0
    if trailing:
        blank = bad.filter(pl.col("reason") == "empty line")["line"].tail(trailing)
        bad = bad.filter(~pl.col("line").is_in(blank.implode()))
    if bad.height == 0:
        return {}
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
    kinds = bad["reason"].str.replace(r",? got '.*$|, found \d+$", "")
    return {str(k): int(c) for k, c in kinds.value_counts().iter_rows()}
