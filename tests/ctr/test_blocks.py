"""The block reader (native parse of byte blocks) against the line-level reader, and the fallback to it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyhead.ctr.data import prepare
from polyhead.ctr.data.blocks import BlockReader, NotFastReadable
from polyhead.ctr.data.buckets import quantile_edges
from polyhead.ctr.data.counts import ValueCounter, value_counts
from polyhead.ctr.data.formats import DatasetSpec, FieldSpec, MalformedLineError, criteo_spec, read_raw
from polyhead.ctr.data.splits import SplitSpec
from polyhead.ctr.data.synthetic import generate_criteo


@pytest.fixture(scope="module")
def criteo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = generate_criteo(tmp_path_factory.mktemp("blocks") / "c.tsv", 3000, seed=3)
    with open(path, "ab") as f:
        f.write(b"\n \n")  # trailing blank lines: ignored by both readers
    return path


def _avazu_like(tmp_path: Path, n: int = 2000) -> Path:
    rng = np.random.default_rng(1)
    df = pl.DataFrame(
        {
            "id": [f"{k:x}" for k in rng.integers(0, 2**40, n)],
            "y": rng.integers(0, 2, n),
            "hour": [f"1410{d:02d}{h:02d}" for d, h in zip(rng.integers(21, 31, n), rng.integers(0, 24, n))],
            "site": [None if v == "-" else v for v in rng.choice(["a", "b", "c", "-"], n)],  # empty fields
            "x": rng.integers(0, 500, n),
            "part": rng.choice(["train", "Valid", "TEST"], n, p=[0.6, 0.2, 0.2]).tolist(),
        }
    )
    path = tmp_path / "a.csv"
    df.write_csv(path)
    return path


CSV_SPEC = DatasetSpec(
    "csv",
    "y",
    [FieldSpec("site", "categorical", min_count=1), FieldSpec("x", "numeric", min_count=2, integer=True)],
    id_column="id",
)


def _line_reader_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare.BlockReader, "open", classmethod(lambda cls, *a, **k: None))


@pytest.mark.parametrize("block_bytes", [4096, 1 << 20])
def test_blocks_read_the_same_rows_as_the_line_reader(criteo: Path, tmp_path: Path, block_bytes: int) -> None:
    reader = BlockReader.open(criteo, criteo_spec(), block_bytes=block_bytes)
    assert reader is not None
    got = pl.concat(list(reader))
    want = read_raw(criteo, criteo_spec()).frame.collect()
    assert got.schema == reader.schema == want.schema
    assert got.equals(want) and got.height == 3000
    for spec in (CSV_SPEC, DatasetSpec("csv", "y", CSV_SPEC.fields, split_column="part", time_column="hour")):
        path = _avazu_like(tmp_path)
        got = pl.concat(list(BlockReader.open(path, spec, block_bytes=block_bytes)))
        assert got.equals(read_raw(path, spec).frame.collect())


@pytest.mark.parametrize(
    "split",
    [SplitSpec(seed=5), SplitSpec(method="holdout_last", holdout_last=300), SplitSpec(method="time")],
)
def test_preprocess_blocks_equal_the_line_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: SplitSpec
) -> None:
    path = _avazu_like(tmp_path)
    spec = DatasetSpec("csv", "y", CSV_SPEC.fields, id_column="id", time_column="hour")
    if split.method != "time":
        spec = CSV_SPEC
    fast = prepare.preprocess(path, spec, tmp_path / "fast", split=split, block_bytes=8192)
    meta = json.loads((fast / "meta.json").read_text())
    assert meta["reader"] == "blocks"
    _line_reader_only(monkeypatch)
    slow = prepare.preprocess(path, spec, tmp_path / "slow", split=split)
    slow_meta = json.loads((slow / "meta.json").read_text())
    assert slow_meta["reader"] == "lines" and slow_meta["rows"] == meta["rows"]
    assert (fast / "encoder.json").read_text() == (slow / "encoder.json").read_text()
    assert pl.read_parquet(fast / "data.parquet").equals(pl.read_parquet(slow / "data.parquet"))


def test_criteo_cache_from_blocks_equals_line_reader(
    criteo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = prepare.preprocess(criteo, criteo_spec(min_count=2), tmp_path / "fast", block_bytes=50_000)
    _line_reader_only(monkeypatch)
    slow = prepare.preprocess(criteo, criteo_spec(min_count=2), tmp_path / "slow")
    assert (fast / "encoder.json").read_text() == (slow / "encoder.json").read_text()
    assert pl.read_parquet(fast / "data.parquet").equals(pl.read_parquet(slow / "data.parquet"))


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("1\t5\t3", "expected 40 fields, found 3"),  # short line: only the separator count shows it
        ("2" + "\t" * 39, "label 'label' must be 0 or 1, got '2'"),
        ("1\t 5" + "\t" * 38, "field 'I1' must be numeric, got ' 5'"),  # natively parsed as 5
        ("1\t3.5" + "\t" * 38, "field 'I1' must be an integer, got '3.5'"),
        ("", "empty line"),
    ],
)
def test_a_bad_block_goes_to_the_line_reader_which_names_the_line(
    criteo: Path, tmp_path: Path, bad_line: str, message: str
) -> None:
    lines = criteo.read_text().rstrip("\n ").split("\n")[:600]
    lines[299] = bad_line
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join(lines) + "\n")
    reader = BlockReader.open(path, criteo_spec(), block_bytes=4096)
    with pytest.raises(NotFastReadable):
        list(reader)
    with pytest.raises(MalformedLineError, match=rf"{path}: line 300: {message}"):
        prepare.preprocess(path, criteo_spec(), tmp_path / "c", block_bytes=4096)
    out = prepare.preprocess(path, criteo_spec(), tmp_path / "c", block_bytes=4096, skip_bad_lines=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["reader"] == "lines" and meta["skipped_lines"] == 1 and sum(meta["rows"].values()) == 599


def test_value_counts_and_weighted_quantiles_match_the_expanded_values() -> None:
    rng = np.random.default_rng(0)
    x = np.round(rng.lognormal(2, 1.5, 5000)).astype(np.float64)
    x[rng.random(5000) < 0.5] = 0.0  # a point mass
    frame = pl.DataFrame({"x": x, "c": rng.choice(["a", "b", None], 5000).tolist()})
    counter = ValueCounter(["x", "c"])
    for start in range(0, 5000, 700):
        counter.add(frame.slice(start, 700), where=pl.col("x") >= 0)
    merged = counter.result()
    whole = value_counts(frame, ["x", "c"])
    for name in ("x", "c"):
        assert merged[name].sort("value").equals(whole[name].sort("value"))
    assert merged["c"]["len"].sum() == frame["c"].null_count() * 0 + frame["c"].drop_nulls().len()
    vc = merged["x"].sort("value")
    for q in (4, 10, 32):
        assert quantile_edges(vc["value"].to_numpy(), q, vc["len"].to_numpy()) == quantile_edges(x, q)


@pytest.mark.parametrize("method", ["log", "quantile"])
def test_numeric_index_matches_the_bucket_formula(method: str) -> None:
    from polyhead.ctr.data.buckets import numeric_bucket_expr
    from polyhead.ctr.data.encoder import MISSING, OOV, FeatureEncoder

    rng = np.random.default_rng(2)
    train = np.round(rng.lognormal(2, 2, 4000))
    x = np.concatenate([train[:500], [-3.0, -0.5, 0.0, 1.5, 2.0, 2.5, 3.0, 65535.0, 65536.0, 1e12]])
    values = [None if i % 17 == 0 else float(v) for i, v in enumerate(x)]
    spec = FieldSpec("n", "numeric", min_count=3, numeric_mode=method)
    enc = FeatureEncoder.fit(pl.LazyFrame({"n": train}), [spec])
    got = enc.transform(pl.LazyFrame({"n": values}, schema={"n": pl.Float64})).collect()["idx_n"].to_list()
    f = enc.fields[0]
    labels = pl.DataFrame({"n": values}, schema={"n": pl.Float64}).select(
        numeric_bucket_expr("n", f.bucketing, f.boundaries).alias("n")
    )["n"]
    want = [
        MISSING if v is None else (f.vocab.index(b) + 2 if b in f.vocab else OOV)
        for v, b in zip(values, labels)
    ]
    assert got == want and len(set(want)) > 5


def test_predict_reads_unlabeled_criteo_in_blocks_as_the_line_reader(
    criteo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyhead.ctr.data.encoder import FeatureEncoder

    out = prepare.preprocess(criteo, criteo_spec(min_count=2), tmp_path / "c", block_bytes=50_000)
    enc = FeatureEncoder.load(out / "encoder.json")
    unlabeled = tmp_path / "test.txt"  # Criteo's test format: the 39 feature columns, no label
    lines = criteo.read_text().rstrip("\n ").split("\n")
    unlabeled.write_text("\n".join(line.split("\t", 1)[1] for line in lines) + "\n")
    fast, skipped = prepare.transform_file(unlabeled, criteo_spec(min_count=2), enc)
    assert "label" not in fast.columns and fast.height == 3000 and skipped == {}
    _line_reader_only(monkeypatch)
    slow, _ = prepare.transform_file(unlabeled, criteo_spec(min_count=2), enc)
    assert fast.equals(slow)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_avazu_cache_from_blocks_equals_line_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eol: str
) -> None:
    """Avazu through the single parse: ``hour`` is read as text (time column, rewritten to the hour of day)
    and cast to its categorical codes after; the other fields are parsed straight into codes."""
    from polyhead.ctr.data.spec import AVAZU_CATEGORICAL, avazu_spec

    rng = np.random.default_rng(7)
    n = 1500
    cols: dict[str, list] = {
        "id": [f"{k:x}" for k in rng.integers(0, 2**40, n)],
        "click": rng.integers(0, 2, n),
    }
    for c in AVAZU_CATEGORICAL:
        if c == "hour":
            cols[c] = [f"1410{d:02d}{h:02d}" for d, h in zip(rng.integers(21, 31, n), rng.integers(0, 24, n))]
        else:
            card = int(rng.integers(2, 60))
            cols[c] = [None if v == 0 else f"{c}_{v}" for v in rng.integers(0, card, n)]
    path = tmp_path / "train.csv"
    text = pl.DataFrame(cols).write_csv(quote_style="never")
    path.write_text(text.replace("\n", eol))
    spec = avazu_spec(min_count=2, time_column="hour")
    split = SplitSpec(method="time")
    fast = prepare.preprocess(path, spec, tmp_path / "fast", split=split, block_bytes=16_384)
    assert json.loads((fast / "meta.json").read_text())["reader"] == "blocks"
    _line_reader_only(monkeypatch)
    slow = prepare.preprocess(path, spec, tmp_path / "slow", split=split)
    assert (fast / "encoder.json").read_text() == (slow / "encoder.json").read_text()
    got, want = pl.read_parquet(fast / "data.parquet"), pl.read_parquet(slow / "data.parquet")
    assert got.equals(want) and got["idx_hour"].n_unique() > 20


def test_numeric_index_with_bucket_numbers_too_spread_for_a_table() -> None:
    """Log buckets of large negative values (floor(x) for x <= 2) spread the bucket numbers over more than
    the table range: the hash lookup takes over, with the same indices."""
    from polyhead.ctr.data.encoder import MAX_TABLE, MISSING, OOV, FeatureEncoder

    rng = np.random.default_rng(4)
    train = np.concatenate([np.full(20, -3.0 * MAX_TABLE), rng.integers(0, 50, 400).astype(np.float64)])
    spec = FieldSpec("n", "numeric", min_count=3, numeric_mode="log")
    enc = FeatureEncoder.fit(pl.LazyFrame({"n": train}), [spec])
    f = enc.fields[0]
    assert f.bucketing == "log" and str(int(-3 * MAX_TABLE)) in f.vocab
    values = [None, -3.0 * MAX_TABLE, -7.0 * MAX_TABLE, 0.0, 5.0, 49.0, 1e9]
    got = enc.transform(pl.LazyFrame({"n": values}, schema={"n": pl.Float64})).collect()["idx_n"].to_list()
    assert got[0] == MISSING and got[1] == f.vocab.index(str(int(-3 * MAX_TABLE))) + 2
    assert got[2] == OOV and got[6] == OOV and all(g >= 2 for g in got[3:6])
