"""User splits (column, time, holdout_last, hash) with the encoder fitted on train rows only; numeric
bucketing that never collapses a field."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from polyhead.ctr.data.buckets import quantile_edges
from polyhead.ctr.data.encoder import FeatureEncoder
from polyhead.ctr.data.formats import DatasetSpec, FieldSpec, MalformedLineError
from polyhead.ctr.data.prepare import preprocess
from polyhead.ctr.data.splits import SplitSpec


def _csv(tmp_path: Path, n: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    df = pl.DataFrame(
        {
            "y": rng.integers(0, 2, n),
            "item": [f"i{k}" for k in range(n)],  # a value per row: the vocabulary shows which rows fitted it
            "ts": rng.permutation(n),
            "part": rng.choice(["train", "Valid", "TEST"], n, p=[0.6, 0.2, 0.2]),
        }
    )
    path = tmp_path / "d.csv"
    df.write_csv(path)
    return path


SPEC = DatasetSpec("csv", "y", [FieldSpec("item", "categorical", min_count=1)])


def _rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "data.parquet").sort("line")


def test_split_column_and_encoder_fitted_on_train_rows_only(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    spec = DatasetSpec("csv", "y", SPEC.fields, split_column="part")
    out = preprocess(path, spec, tmp_path / "c", split=SplitSpec(method="column"))
    rows = _rows(out)
    raw = pl.read_csv(path)
    want = raw["part"].str.to_lowercase().replace_strict({"train": 0, "valid": 1, "test": 2}).to_list()
    assert rows["split"].to_list() == want
    vocab = set(FeatureEncoder.load(out / "encoder.json").fields[0].vocab)
    assert vocab == set(raw.filter(pl.col("part") == "train")["item"])
    bad = tmp_path / "bad.csv"
    bad.write_text("y,item,part\n1,a,train\n0,b,holdout\n")
    with pytest.raises(MalformedLineError, match="line 3: split column 'part' must be train"):
        preprocess(bad, spec, tmp_path / "c", split=SplitSpec(method="column"))


def test_time_split_trains_on_the_past(tmp_path: Path) -> None:
    path = _csv(tmp_path, n=300)
    spec = DatasetSpec("csv", "y", SPEC.fields, time_column="ts")
    out = preprocess(
        path, spec, tmp_path / "c", split=SplitSpec(method="time", val_fraction=0.2, test_fraction=0.1)
    )
    rows = _rows(out).join(pl.read_csv(path).with_row_index("line", offset=2), on="line")
    by = {k: rows.filter(pl.col("split") == k)["ts"] for k in (0, 1, 2)}
    assert by[0].max() < by[1].min() and by[1].max() < by[2].min()  # past -> future
    assert [len(by[k]) for k in (0, 1, 2)] == [210, 60, 30]
    vocab = set(FeatureEncoder.load(out / "encoder.json").fields[0].vocab)
    assert vocab == set(rows.filter(pl.col("split") == 0)["item"])


def test_holdout_last_and_hash_default(tmp_path: Path) -> None:
    path = _csv(tmp_path, n=100)
    out = preprocess(path, SPEC, tmp_path / "c", split=SplitSpec(method="holdout_last", holdout_last=15))
    assert _rows(out)["split"].to_list() == [0] * 70 + [1] * 15 + [2] * 15
    with pytest.raises(ValueError, match="nothing is left to train on"):
        preprocess(path, SPEC, tmp_path / "c", split=SplitSpec(method="holdout_last", holdout_last=50))
    hashed = _rows(preprocess(path, SPEC, tmp_path / "c"))["split"]
    assert hashed.n_unique() == 3 and (hashed == 0).sum() > 60
    with pytest.raises(ValueError, match="choose one way to split the data"):
        SplitSpec.from_options(seed=0, split_column="part", time_column=None, holdout_last=5)


def test_narrow_numeric_field_gets_quantile_buckets_not_one_log_bucket(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 2000
    years = rng.integers(1922, 1999, n)
    counts = np.floor(np.exp(rng.uniform(0, 9, n)))  # spread over orders of magnitude: log buckets suit it
    path = tmp_path / "movies.csv"
    pl.DataFrame({"y": rng.integers(0, 2, n), "release_year": years, "views": counts}).write_csv(path)
    assert len({math.floor(math.log(y) ** 2) for y in years}) == 1  # the Criteo transform collapses it
    spec = DatasetSpec(
        "csv", "y", [FieldSpec("release_year", "numeric", 1), FieldSpec("views", "numeric", 1)]
    )
    out = preprocess(path, spec, tmp_path / "c")
    enc = FeatureEncoder.load(out / "encoder.json")
    year, views = enc.fields
    assert year.bucketing == "quantile" and year.log_buckets == 1 and len(year.vocab) >= 16
    assert views.bucketing == "log" and len(views.vocab) >= 8
    summary = {r["field"]: r for r in json.loads((out / "meta.json").read_text())["encoder"]}
    assert summary["release_year"]["numeric"] == "quantile" and summary["release_year"]["log_buckets"] == 1
    # Bucket i holds the values with exactly i edges <= x.
    edges = np.array(year.boundaries)
    idx = _rows(out).join(pl.read_csv(path).with_row_index("line", offset=2), on="line")
    want = [year.vocab.index(f"q{int((edges <= v).sum())}") + 2 for v in idx["release_year"]]
    assert idx["idx_release_year"].to_list() == want
    # Forcing log buckets reproduces the collapse (and the encoder warns about it).
    forced = DatasetSpec("csv", "y", [FieldSpec("release_year", "numeric", 1, numeric_mode="log")])
    enc_log = FeatureEncoder.load(preprocess(path, forced, tmp_path / "c") / "encoder.json")
    assert len(enc_log.fields[0].vocab) == 1 and enc_log.warnings()


def test_quantile_edges_keep_a_point_mass_field_spread() -> None:
    x = np.array([0.0] * 900 + list(range(1, 101)), dtype=float)  # 90% zeros: row quantiles all 0
    edges = quantile_edges(x, 10)
    assert edges == sorted(set(edges)) and min(edges) > 0.0 and len(edges) >= 5
    assert quantile_edges(np.array([0.0] * 90 + [1.0, 2.0, 3.0]), 10) == [1.0, 2.0, 3.0]  # one per value
    assert quantile_edges(np.array([5.0] * 10), 8) == []
    y = np.random.default_rng(0).normal(size=10_000)
    counts = np.bincount(np.searchsorted(quantile_edges(y, 10), y, side="right"))
    assert len(counts) == 10 and counts.min() > 900  # equal-mass buckets on continuous data
