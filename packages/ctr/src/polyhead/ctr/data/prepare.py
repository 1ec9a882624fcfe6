"""Preprocessing: read -> validate -> split (``polyhead.ctr.data.splits``) -> fit the encoder on the train
rows -> encoded Parquet cache.

Everything runs on polars' lazy engine with streaming collection/sinks, so a file larger than memory is
scanned, never loaded. The cache lives in ``<cache_dir>/<key>/`` where the key hashes the input file
(path, size, modification time, first and last MiB) and the feature spec, split and code version;
it holds ``data.parquet`` (``split``, ``label``, ``idx_*``/``val_*`` columns), ``encoder.json`` and
``meta.json`` (rows per split, skipped lines by reason, the encoder summary).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import polars as pl

from polyhead.ctr.data.encoder import FeatureEncoder
from polyhead.ctr.data.formats import DatasetSpec, MalformedLineError, check_bad_lines, read_raw
from polyhead.ctr.data.splits import SplitSpec, assign_splits

CACHE_VERSION = 2
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
) -> Path:
    """Build (or reuse) the encoded cache of ``path``; returns its directory.

    ``split`` defaults to the seeded hash split (``SplitSpec(seed=seed)``).
    """
    path = Path(path)
    split = split or SplitSpec(seed=seed)
    out = Path(cache_dir) / cache_key(path, spec, split)
    if (out / "meta.json").is_file():
        return out
    t0 = time.perf_counter()
    res = read_raw(path, spec)
    skipped = check_bad_lines(path, res, skip=skip_bad_lines)
    lf = assign_splits(res.frame, split, source=str(path))
    n_train = lf.filter(pl.col("split") == 0).select(pl.len()).collect(engine="streaming").item()
    if n_train == 0:
        total = lf.select(pl.len()).collect(engine="streaming").item()
        what = (
            "no data lines"
            if total == 0
            else f"no training rows among its {total} rows ({split.method} split)"
        )
        raise MalformedLineError(f"{path}: {what}; expected {spec.format} lines with a label and features")
    encoder = FeatureEncoder.fit(lf.filter(pl.col("split") == 0), spec.fields)
    for warning in encoder.warnings():
        print(f"polyhead-ctr: {path}: {warning}")
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
        "skipped_lines": sum(skipped.values()),
        "skipped_by_reason": skipped,
        "split": asdict(split),
        "encoder": encoder.summary(),
        "seconds": time.perf_counter() - t0,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    tmp.rename(out)
    return out


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
    res = read_raw(path, spec, require_label=require_label)
    skipped = check_bad_lines(path, res, skip=skip_bad_lines)
    encoded = encoder.transform(res.frame)
    schema = encoded.collect_schema()
    cols = ["line", *[c for c in ("label", "id") if c in schema]]
    cols += [c for c in schema if c.startswith(("idx_", "val_"))]
    df = encoded.select(cols).collect(engine="streaming")
    if df.height == 0:
        raise MalformedLineError(f"{path}: no data lines to score; expected {spec.format} lines")
    return df, skipped
