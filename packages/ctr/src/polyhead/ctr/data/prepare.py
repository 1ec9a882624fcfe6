"""Preprocessing: read -> validate -> seeded 8:1:1 split -> fit encoder on train -> encoded Parquet cache.

Everything runs on polars' lazy engine with streaming collection/sinks, so a file larger than memory is
scanned, never loaded. The cache lives in ``<cache_dir>/<key>/`` where the key hashes the input file
(path, size, modification time, first and last MiB) and the feature spec, split seed and code version;
it holds ``data.parquet`` (``split``, ``label``, ``idx_*``/``val_*`` columns), ``encoder.json`` and
``meta.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from polyhead.ctr.data.encoder import FeatureEncoder
from polyhead.ctr.data.formats import DatasetSpec, check_bad_lines, read_raw

CACHE_VERSION = 1
SPLITS = {"train": 0, "val": 1, "test": 2}


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        if st.st_size > 1 << 20:
            f.seek(max(st.st_size - (1 << 20), 0))
            h.update(f.read(1 << 20))
    return h.hexdigest()


def cache_key(path: Path, spec: DatasetSpec, seed: int) -> str:
    payload = json.dumps(
        {"file": file_fingerprint(path), "spec": asdict(spec), "seed": seed, "v": CACHE_VERSION}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def split_expr(seed: int) -> pl.Expr:
    """Seeded, order-independent 8:1:1 split by hashing the line number: 0 train, 1 val, 2 test."""
    bucket = pl.col("line").hash(seed) % 10
    return pl.when(bucket < 8).then(0).when(bucket == 8).then(1).otherwise(2).cast(pl.UInt8).alias("split")


def preprocess(
    path: str | Path, spec: DatasetSpec, cache_dir: str | Path, *, seed: int = 0, skip_bad_lines: bool = False
) -> Path:
    """Build (or reuse) the encoded cache of ``path``; returns its directory."""
    path = Path(path)
    out = Path(cache_dir) / cache_key(path, spec, seed)
    if (out / "meta.json").is_file():
        return out
    t0 = time.perf_counter()
    res = read_raw(path, spec)
    skipped = check_bad_lines(path, res, skip=skip_bad_lines)
    lf = res.frame.with_columns(split_expr(seed))
    encoder = FeatureEncoder.fit(lf.filter(pl.col("split") == 0), spec.fields)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    encoded = encoder.transform(lf)
    keep = ["line", "split", "label", *(["id"] if "id" in encoded.collect_schema() else [])]
    keep += [c for c in encoded.collect_schema() if c.startswith(("idx_", "val_"))]
    encoded.select(keep).sink_parquet(tmp / "data.parquet", engine="streaming")
    counts = pl.scan_parquet(tmp / "data.parquet").group_by("split").len().collect()
    rows = {name: int(counts.filter(pl.col("split") == i)["len"].sum()) for name, i in SPLITS.items()}
    encoder.save(tmp / "encoder.json")
    meta = {
        "source": str(path),
        "rows": rows,
        "skipped_lines": skipped,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(out)
    return out


def transform_file(
    path: str | Path, spec: DatasetSpec, encoder: FeatureEncoder, *, skip_bad_lines: bool = False
) -> pl.DataFrame:
    """Encode a new file with a saved encoder (for ``predict``); unseen values map to OOV."""
    res = read_raw(path, spec)
    check_bad_lines(path, res, skip=skip_bad_lines)
    encoded = encoder.transform(res.frame)
    cols = ["line", "label", *(["id"] if "id" in encoded.collect_schema() else [])]
    cols += [c for c in encoded.collect_schema() if c.startswith(("idx_", "val_"))]
    return encoded.select(cols).collect(engine="streaming")
