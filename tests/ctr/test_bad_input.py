"""Bad CTR input: empty, binary and non-UTF-8 files, non-integer counts, quoted CSV fields, trailing blank
lines, unlabeled files read for predict."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest

from polyhead.ctr.data.formats import (
    DatasetSpec,
    FieldSpec,
    MalformedLineError,
    avazu_spec,
    criteo_spec,
    read_raw,
    trailing_blank_lines,
)
from polyhead.ctr.data.prepare import preprocess, transform_file


def _line(label: str | None = "1", ints: list[str] | None = None, cat: str = "a") -> str:
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = [f"{cat}{i}" for i in range(26)]
    return "\t".join(([label] if label is not None else []) + ints + cats)


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.txt"
    f.write_bytes(b"")
    with pytest.raises(MalformedLineError, match=rf"{f}: the file is empty \(0 bytes\)"):
        preprocess(f, criteo_spec(), tmp_path / "cache")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n  \n")
    with pytest.raises(MalformedLineError, match=rf"{blank}: no data lines"):
        preprocess(blank, criteo_spec(), tmp_path / "cache")
    header_only = tmp_path / "h.csv"
    header_only.write_text("id,click," + ",".join(avazu_spec().names) + "\n")
    with pytest.raises(MalformedLineError, match="no data lines"):
        preprocess(header_only, avazu_spec(), tmp_path / "cache")


def test_binary_and_non_utf8_files_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(_line().encode() + b"\n" + bytes(range(256)) * 4)
    with pytest.raises(MalformedLineError, match=rf"{f}: line 2: binary data \(a NUL byte"):
        preprocess(f, criteo_spec(), tmp_path / "cache")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes((_line() + "\n" + _line(cat="caf\xe9") + "\n").encode("latin-1"))
    with pytest.raises(MalformedLineError, match=rf"{latin}: line 2: not UTF-8 text"):
        preprocess(latin, criteo_spec(), tmp_path / "cache")


def test_non_integer_counts_are_malformed(tmp_path: Path) -> None:
    f = tmp_path / "floats.txt"
    lines = [
        _line(),
        _line(ints=["3.5", *map(str, range(12))]),
        _line(ints=["1", "1e9", *map(str, range(11))]),
    ]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        MalformedLineError, match=r"line 2: field 'I1' must be an integer, got '3.5' \(and 1 more"
    ):
        preprocess(f, criteo_spec(min_count=1), tmp_path / "cache")
    bad = read_raw(f, criteo_spec()).bad.collect()
    assert bad["line"].to_list() == [2, 3] and "'I2' must be an integer, got '1e9'" in bad["reason"][1]
    # A spec-described numeric field without integer=True takes floats.
    csv = tmp_path / "f.csv"
    csv.write_text("y,x\n1,3.5\n0,1e9\n")
    spec = DatasetSpec("csv", "y", [FieldSpec("x", "numeric")])
    assert read_raw(csv, spec).frame.collect()["x"].to_list() == [3.5, 1e9]


def test_trailing_blank_lines_are_ignored_inner_ones_are_not(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("\n".join([_line()] * 30) + "\n\n \r\n")
    assert trailing_blank_lines(f) == 2
    out = preprocess(f, criteo_spec(min_count=1), tmp_path / "cache")
    meta = json.loads((out / "meta.json").read_text())
    assert sum(meta["rows"].values()) == 30 and meta["skipped_lines"] == 0
    g = tmp_path / "inner.txt"
    g.write_text(_line() + "\n\n" + _line() + "\n\n")
    with pytest.raises(MalformedLineError, match=r"line 2: empty line;"):
        preprocess(g, criteo_spec(), tmp_path / "cache")


def test_quoted_csv_fields(tmp_path: Path) -> None:
    f = tmp_path / "q.csv"
    f.write_text('label,title,n\n1,"Hello, world",3\n0,plain,4\n1,"say ""hi""",5\n0,"",6\n1,"bad"quote,7\n')
    spec = DatasetSpec("csv", "label", [FieldSpec("title", "categorical"), FieldSpec("n", "numeric")])
    res = read_raw(f, spec)
    good = res.frame.collect()
    assert good["title"].to_list() == ["Hello, world", "plain", 'say "hi"', None]
    assert good["n"].to_list() == [3.0, 4.0, 5.0, 6.0] and good["line"].to_list() == [2, 3, 4, 5]
    bad = res.bad.collect()
    assert bad["line"].to_list() == [6] and "quote" in bad["reason"][0]


def test_gzip_and_crlf_input(tmp_path: Path) -> None:
    f = tmp_path / "t.txt.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("\r\n".join([_line()] * 12) + "\r\n")
    out = preprocess(f, criteo_spec(min_count=1), tmp_path / "cache")
    assert sum(json.loads((out / "meta.json").read_text())["rows"].values()) == 12


def test_skip_bad_lines_counts_by_reason(tmp_path: Path) -> None:
    f = tmp_path / "mixed.txt"
    f.write_text(
        "\n".join([_line()] * 20 + [_line(ints=["2.5", *map(str, range(12))]), _line(label="x")]) + "\n"
    )
    out = preprocess(f, criteo_spec(min_count=1), tmp_path / "cache", skip_bad_lines=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped_by_reason"] == {
        "field 'I1' must be an integer": 1,
        "label 'label' must be 0 or 1": 1,
    }


def test_unlabeled_criteo_and_avazu_test_files(tmp_path: Path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("\n".join(_line(label=str(i % 2)) for i in range(50)) + "\n")
    spec = criteo_spec(min_count=1)
    from polyhead.ctr.data.encoder import FeatureEncoder

    enc = FeatureEncoder.load(preprocess(train, spec, tmp_path / "cache") / "encoder.json")
    test = tmp_path / "test.txt"  # Criteo's test format: 39 columns, no label
    test.write_text("\n".join(_line(label=None) for _ in range(7)) + "\n")
    with pytest.raises(MalformedLineError, match="line 1: expected 40 fields, found 39"):
        preprocess(test, spec, tmp_path / "cache")  # training needs labels
    df, _ = transform_file(test, spec, enc)
    assert df.height == 7 and "label" not in df.columns and df["line"].to_list() == list(range(1, 8))
    assert df["idx_C1"].to_list() == [2] * 7  # "a0" is in the vocabulary
    # Avazu's test file: no click column; ids kept.
    names = avazu_spec().names
    head = "id,click,hour," + ",".join(n for n in names if n != "hour")
    rows = [f"{i},{i % 2},14102100," + ",".join(f"v{j}" for j in range(len(names) - 1)) for i in range(40)]
    av = tmp_path / "avazu.csv"
    av.write_text(head + "\n" + "\n".join(rows) + "\n")
    aspec = avazu_spec(min_count=1)
    aenc = FeatureEncoder.load(preprocess(av, aspec, tmp_path / "cache") / "encoder.json")
    avtest = tmp_path / "avazu_test.csv"
    avtest.write_text(
        "id,hour,"
        + ",".join(n for n in names if n != "hour")
        + "\n"
        + "\n".join(f"1000{i},14103100," + ",".join(f"v{j}" for j in range(len(names) - 1)) for i in range(5))
        + "\n"
    )
    adf, _ = transform_file(avtest, aspec, aenc)
    assert adf["id"].to_list() == [f"1000{i}" for i in range(5)] and "label" not in adf.columns
    assert adf["idx_hour"].to_list() == [2] * 5  # hour of day "00", seen in training


def test_parquet_with_a_schema_labeled_or_not(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    pl.DataFrame({"uid": ["u1", "u2", "u3"], "x": [1.0, 2.0, None], "c": ["a", "b", "a"]}).write_parquet(p)
    spec = DatasetSpec("parquet", "y", [FieldSpec("x", "numeric"), FieldSpec("c", "categorical")], "uid")
    with pytest.raises(MalformedLineError, match=r"lacks column\(s\) \['y'\]"):
        read_raw(p, spec)
    res = read_raw(p, spec, require_label=False)
    assert not res.labeled and res.frame.collect()["id"].to_list() == ["u1", "u2", "u3"]
