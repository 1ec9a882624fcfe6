"""Preprocessing: read -> validate -> split (``polyhead.ctr.data.splits``) -> fit the encoder on the train
rows -> encoded Parquet cache.

Delimited files are read in byte blocks by polars' native CSV parser (``polyhead.ctr.data.blocks``) and
parsed once: each categorical field is parsed straight into a ``pl.Categorical`` over its own
``pl.Categories`` (codes dense per field and the same in every block), and each parsed block is kept on disk
as Arrow IPC with those fields as their UInt32 codes (about 0.9x the text's size, removed at the end). Two
cheap passes over the parsed blocks follow: the first assigns the splits and counts every field's values
(codes) on the train rows (``polyhead.ctr.data.counts``), from which the encoder is fitted; the second maps
each code to its local index through a table per field and encodes the numeric fields into a streaming
Parquet sink. Memory is a few blocks plus the distinct values, whatever the file size. A file the
block reader refuses (a malformed line, quoted CSV fields, compression) and Parquet input go through the
line-level reader of ``polyhead.ctr.data.formats`` on polars' lazy engine with streaming collection and
sinks, which names or skips each malformed line. The cache lives in ``<cache_dir>/<key>/`` where the key
hashes the input file (path, size, modification time, first and last MiB) and the feature spec, split and
code version; it holds ``data.parquet`` (``split``, ``label``, ``idx_*``/``val_*`` columns),
``encoder.json`` and ``meta.json`` (rows per split, skipped lines by reason, the reader used, the encoder
summary).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

from polyhead.ctr.data.blocks import BLOCK_BYTES, BlockReader, NotFastReadable
from polyhead.ctr.data.counts import CodeCounter, ValueCounter
from polyhead.ctr.data.encoder import MISSING, OOV, FeatureEncoder
from polyhead.ctr.data.formats import DatasetSpec, MalformedLineError, check_bad_lines, read_raw
from polyhead.ctr.data.splits import SplitSpec, assign_splits, check_holdout, split_expr, time_bounds

CACHE_VERSION = 3
SPLITS = {"train": 0, "val": 1, "test": 2}
# The cache is written once and read whole by the data module: lz4 without column statistics writes faster
# than polars' default (zstd with statistics), for a somewhat larger file.
PARQUET_OPTIONS: dict = {"compression": "lz4", "statistics": False}


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 1 << 20:
            f.seek(max(st.st_size - (1 << 20), 0))
            h.update(f.read(1 << 20))
    return h.hexdigest()


def cache_key(path: Path, spec: DatasetSpec, split: SplitSpec) -> str:
    payload = json.dumps(
        {"file": file_fingerprint(path), "spec": asdict(spec), "split": asdict(split), "v": CACHE_VERSION}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def preprocess(
    path: str | Path,
    spec: DatasetSpec,
    cache_dir: str | Path,
    *,
    seed: int = 0,
    split: SplitSpec | None = None,
    skip_bad_lines: bool = False,
    block_bytes: int = BLOCK_BYTES,
) -> Path:
    """Build (or reuse) the encoded cache of ``path``; returns its directory.

    ``split`` defaults to the seeded hash split (``SplitSpec(seed=seed)``); ``block_bytes`` is the block
    reader's block size.
    """
    path = Path(path)
    split = split or SplitSpec(seed=seed)
    out = Path(cache_dir) / cache_key(path, spec, split)
    if (out / "meta.json").is_file():
        return out
    t0 = time.perf_counter()
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    reader = BlockReader.open(path, spec, block_bytes=block_bytes, categorical=categorical_dtypes(spec))
    done, how = None, "lines"
    if reader is not None:
        try:
            done, how = _encode_blocks(reader, spec, split, tmp / "data.parquet"), "blocks"
        except NotFastReadable as why:
            print(f"polyhead-ctr: {path}: reading line by line ({why})")
    if done is None:
        done = _encode_lines(path, spec, split, tmp / "data.parquet", skip_bad_lines=skip_bad_lines)
    encoder, rows, skipped = done
    encoder.save(tmp / "encoder.json")
    meta = {
        "source": str(path),
        "rows": rows,
        "skipped_lines": sum(skipped.values()),
        "skipped_by_reason": skipped,
        "split": asdict(split),
        "reader": how,
        "encoder": encoder.summary(),
        "seconds": time.perf_counter() - t0,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(out)
    return out


def _no_train_rows(path: Path, spec: DatasetSpec, split: SplitSpec, total: int) -> MalformedLineError:
    what = (
        "no data lines" if total == 0 else f"no training rows among its {total} rows ({split.method} split)"
    )
    return MalformedLineError(f"{path}: {what}; expected {spec.format} lines with a label and features")


def _keep(schema: pl.Schema) -> list[str]:
    keep = ["line", "split", "label", *(["id"] if "id" in schema else [])]
    return keep + [c for c in schema if c.startswith(("idx_", "val_"))]


def _fitted_names(spec: DatasetSpec) -> list[str]:
    return [f.name for f in spec.fields if f.type == "categorical" or f.numeric_mode != "scale"]


def categorical_dtypes(spec: DatasetSpec) -> dict[str, pl.DataType]:
    """A ``pl.Categorical`` per categorical feature, each over its own new ``pl.Categories`` (codes dense per
    field, the same in every block of one preprocessing run)."""
    namespace = f"polyhead-ctr-{uuid.uuid4().hex}"
    return {
        f.name: pl.Categorical(pl.Categories(f.name, namespace))
        for f in spec.fields
        if f.type == "categorical"
    }


def _encode_blocks(
    reader: BlockReader, spec: DatasetSpec, split: SplitSpec, target: Path
) -> tuple[FeatureEncoder, dict[str, int], dict[str, int]]:
    """The block reader's single parse, then two passes over the parsed blocks; see the module docstring."""
    spill = target.parent / "blocks"
    spill.mkdir(exist_ok=True)
    try:
        return _encode_parsed_blocks(reader, spec, split, target, spill)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _encode_parsed_blocks(
    reader: BlockReader, spec: DatasetSpec, split: SplitSpec, target: Path, spill: Path
) -> tuple[FeatureEncoder, dict[str, int], dict[str, int]]:
    cats = reader.categorical
    # polars frees a Categories' strings once no Series of its dtype is left (the blocks are dropped after
    # spilling): an empty Series per field keeps them until the codes have been mapped back.
    anchors = [pl.Series(n, [], dtype=dt) for n, dt in cats.items()]
    # 1. Parse every block once; keep it on disk with each categorical field as its UInt32 codes. Where a row's
    # split follows from the row itself (hash, split column), its values are counted here too.
    per_block = split.method in ("hash", "column")
    rule = split_expr(split) if per_block else None
    codes = CodeCounter(list(cats))
    counter = ValueCounter([n for n in _fitted_names(spec) if n not in cats])
    per_split = np.zeros(3, dtype=np.int64)

    def count(f: pl.DataFrame) -> None:
        split_of_row = f["split"].to_numpy()
        per_split[:] += np.bincount(split_of_row, minlength=3)[:3]
        codes.add(f, split_of_row == 0)
        counter.add(f, where=pl.col("split") == 0)

    parts: list[Path] = []
    times: list[pl.Series] = []
    n_rows = 0
    to_codes = [pl.col(n).to_physical() for n in cats]
    for i, f in enumerate(reader):
        f = f.with_columns(to_codes)
        if rule is not None:
            f = f.with_columns(rule)
            count(f)
        elif split.method == "time":
            times.append(f["_time"])
        parts.append(spill / f"{i:06d}.arrow")
        f.write_ipc(parts[-1], compression="uncompressed")
        n_rows += f.height
    if n_rows == 0:
        raise _no_train_rows(reader.path, spec, split, 0)

    def frames() -> Iterator[pl.DataFrame]:
        offset = 0
        for part in parts:
            f = pl.read_ipc(part)
            if rule is None:  # time or holdout_last: assigned now that every row has been seen
                f = f.with_row_index("_row", offset=offset).with_columns(late_rule).drop("_row")
                offset += f.height
            yield f

    if rule is None:
        bounds = time_bounds(pl.concat(times), split) if split.method == "time" else None
        if split.method == "holdout_last":
            check_holdout(split, n_rows, source=str(reader.path))
        late_rule = split_expr(split, bounds=bounds, n_rows=n_rows)
        for f in frames():
            count(f)

    # 2. Fit from the train rows' counts (categorical fields: counts of codes, mapped back to their values).
    if per_split[0] == 0:
        raise _no_train_rows(reader.path, spec, split, int(per_split.sum()))
    counts = {**counter.result(), **codes.result()}
    values = {n: dt.categories.to_series() for n, dt in cats.items()}  # type: ignore[attr-defined]
    for n, strings in values.items():
        counts[n] = counts[n].select(strings.gather(counts[n]["value"]).alias("value"), "len")
    encoder = FeatureEncoder.fit_counts(counts, spec.fields)
    for warning in encoder.warnings():
        print(f"polyhead-ctr: {reader.path}: {warning}")

    # 3. Encode: a code's local index from a table per categorical field (its last entry: missing).
    indices = []
    for field in encoder.fields:
        if field.name in cats:
            size = len(values[field.name])
            table = np.full(size + 1, OOV, dtype=np.int32)
            table[size] = MISSING
            if field.vocab:
                vocab_codes = pl.Series(field.vocab).cast(cats[field.name]).to_physical().to_numpy()
                table[vocab_codes] = np.arange(2, len(field.vocab) + 2, dtype=np.int32)
            code = pl.col(field.name).fill_null(size)
            indices.append(pl.lit(pl.Series(table)).gather(code).alias(f"idx_{field.name}"))
    numeric = [f.name for f in encoder.fields if f.name not in cats]
    keep = ["line", "split", *[c for c in ("label", "id") if c in reader.schema], *encoder.output_columns()]
    source = reader.schema
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        c: source.get(c, pl.UInt8 if c == "split" else pl.Int32) for c in keep
    }
    schema.update({c: pl.Float32 for c in keep if c.startswith("val_")})

    def encoded(
        with_columns: list[str] | None, predicate: pl.Expr | None, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        for f in frames():
            df = encoder.transform(f.lazy(), numeric).with_columns(indices).select(with_columns or keep)
            yield (df.filter(predicate) if predicate is not None else df).collect()

    # A Python source read block by block: a scan of the IPC files reads ahead and holds far more memory.
    lf = register_io_source(encoded, schema=schema, explain_name="polyhead-ctr blocks")
    lf.sink_parquet(target, engine="streaming", **PARQUET_OPTIONS)
    del anchors
    return encoder, dict(zip(SPLITS, per_split.tolist())), {}  # bad lines go to the line reader


def _encode_lines(
    path: Path, spec: DatasetSpec, split: SplitSpec, target: Path, *, skip_bad_lines: bool
) -> tuple[FeatureEncoder, dict[str, int], dict[str, int]]:
    """The line-level reader: every line validated (named or skipped and counted), lazy and streaming."""
    res = read_raw(path, spec)
    skipped = check_bad_lines(path, res, skip=skip_bad_lines)
    lf = assign_splits(res.frame, split, source=str(path))
    n_train = lf.filter(pl.col("split") == 0).select(pl.len()).collect(engine="streaming").item()
    if n_train == 0:
        raise _no_train_rows(path, spec, split, lf.select(pl.len()).collect(engine="streaming").item())
    encoder = FeatureEncoder.fit(lf.filter(pl.col("split") == 0), spec.fields)
    for warning in encoder.warnings():
        print(f"polyhead-ctr: {path}: {warning}")
    encoded = encoder.transform(lf)
    encoded.select(_keep(encoded.collect_schema())).sink_parquet(
        target, engine="streaming", **PARQUET_OPTIONS
    )
    counts = pl.scan_parquet(target).group_by("split").len().collect()
    rows = {name: int(counts.filter(pl.col("split") == i)["len"].sum()) for name, i in SPLITS.items()}
    return encoder, rows, skipped


def transform_file(
    path: str | Path,
    spec: DatasetSpec,
    encoder: FeatureEncoder,
    *,
    skip_bad_lines: bool = False,
    require_label: bool = False,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Encode a new file with a saved encoder (for ``predict``; labeled or not); unseen values map to OOV.

    Returns the encoded rows (``line``, ``label`` if the file has one, ``id`` if the spec names an id column,
    ``idx_*``/``val_*``) and the skipped lines by reason.
    """
    path = Path(path)
    df = None
    skipped: dict[str, int] = {}
    reader = BlockReader.open(path, spec, require_label=require_label)
    if reader is not None:  # the block reader first, as in preprocess
        try:
            frames = [_scored_columns(encoder.transform(f.lazy())).collect() for f in reader]
            df = pl.concat(frames, how="vertical") if frames else None
        except NotFastReadable as why:
            print(f"polyhead-ctr: {path}: reading line by line ({why})")
    if df is None:
        res = read_raw(path, spec, require_label=require_label)
        skipped = check_bad_lines(path, res, skip=skip_bad_lines)
        df = _scored_columns(encoder.transform(res.frame)).collect(engine="streaming")
    if df.height == 0:
        raise MalformedLineError(f"{path}: no data lines to score; expected {spec.format} lines")
    return df, skipped


def _scored_columns(encoded: pl.LazyFrame) -> pl.LazyFrame:
    schema = encoded.collect_schema()
    cols = ["line", *[c for c in ("label", "id") if c in schema]]
    return encoded.select(cols + [c for c in schema if c.startswith(("idx_", "val_"))])
