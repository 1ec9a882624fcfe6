"""CTR data: reader validation, encoder (OOV, min_count, missing, log buckets), split, cache, generator."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from polyhead.ctr.data.encoder import MISSING, OOV, FeatureEncoder
from polyhead.ctr.data.formats import FieldSpec, MalformedLineError, criteo_spec, read_raw
from polyhead.ctr.data.prepare import preprocess, transform_file
from polyhead.ctr.data.splits import hash_split
from polyhead.ctr.data.synthetic import generate_criteo


def _criteo_line(label: str = "1", ints: list[str] | None = None, cats: list[str] | None = None) -> str:
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else [f"{i:08x}" for i in range(26)]
    return "\t".join([label, *ints, *cats])


def test_malformed_lines_fail_with_file_and_line(tmp_path: Path) -> None:
    good = _criteo_line()
    lines = [
        good,
        good,
        "",  # line 3: empty
        "\t".join(good.split("\t")[:30]),  # line 4: wrong column count
        _criteo_line(ints=["x1", *[str(i) for i in range(12)]]),  # line 5: non-numeric integer field
        good,
        _criteo_line(label="7"),  # line 7: bad label
    ]
    f = tmp_path / "bad.txt"
    f.write_text("\n".join(lines) + "\n")
    spec = criteo_spec(min_count=1)
    with pytest.raises(MalformedLineError, match=rf"{f}: line 3: empty line \(and 3 more"):
        preprocess(f, spec, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*/meta.json"))
    # With skipping: every bad line counted and reported, the good ones kept.
    out = preprocess(f, spec, tmp_path / "cache", skip_bad_lines=True)
    import json

    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped_lines"] == 4
    assert sum(meta["rows"].values()) == 3
    res = read_raw(f, spec)
    bad = res.bad.collect()
    assert bad["line"].to_list() == [3, 4, 5, 7]
    reasons = bad["reason"].to_list()
    assert "expected 40 fields, found 30" in reasons[1] and "'I1' must be numeric, got 'x1'" in reasons[2]


def test_encoder_oov_min_count_missing_and_log_buckets() -> None:
    train = pl.LazyFrame(
        {
            "c": ["a"] * 5 + ["b"] * 3 + ["c"] * 1 + [None],
            "n": [0.0, 1.0, 2.0, 3.0, 10.0, 100.0, None, 3.0, 3.0, 10.0],
        }
    )
    enc = FeatureEncoder.fit(
        train,
        [
            FieldSpec("c", "categorical", min_count=3),
            FieldSpec("n", "numeric", min_count=1, numeric_mode="log"),
        ],
    )
    assert enc.fields[0].vocab == ["a", "b"]  # "c" seen once < min_count 3; ordered by frequency
    test = pl.LazyFrame({"c": ["a", "b", "c", "zzz", None], "n": [3.0, 10.0, None, 100.0, -1.0]})
    out = enc.transform(test).collect()
    assert out["idx_c"].to_list() == [2, 3, OOV, OOV, MISSING]
    # floor(ln(x)^2) for x > 2: 3 -> 1, 10 -> 5, 100 -> 21; floor(x) otherwise; missing -> 0.
    assert math.floor(math.log(10) ** 2) == 5 and math.floor(math.log(100) ** 2) == 21
    vocab_n = enc.fields[1].vocab
    expected = [vocab_n.index(v) + 2 if v in vocab_n else OOV for v in ["1", "5", None, "21", "-1"]]
    expected[2] = MISSING
    assert out["idx_n"].to_list() == expected
    assert "-1" not in vocab_n  # never seen in train -> OOV


def test_split_is_seeded_and_reproducible() -> None:
    lf = pl.LazyFrame({"line": list(range(1, 20001))}).with_columns(pl.col("line").cast(pl.UInt32))
    a = lf.with_columns(hash_split(3)).collect()["split"]
    b = lf.with_columns(hash_split(3)).collect()["split"]
    c = lf.with_columns(hash_split(4)).collect()["split"]
    assert a.to_list() == b.to_list() and a.to_list() != c.to_list()
    frac = [(a == i).mean() for i in range(3)]
    assert abs(frac[0] - 0.8) < 0.02 and abs(frac[1] - 0.1) < 0.02 and abs(frac[2] - 0.1) < 0.02


def test_generated_data_cache_and_unseen_categories(tmp_path: Path) -> None:
    f = generate_criteo(tmp_path / "gen.tsv", 20_000, seed=1)
    first = f.read_text().splitlines()[0].split("\t")
    assert len(first) == 40 and first[0] in ("0", "1")
    spec = criteo_spec()
    out = preprocess(f, spec, tmp_path / "cache")
    assert preprocess(f, spec, tmp_path / "cache") == out  # cache hit: same key
    df = pl.read_parquet(out / "data.parquet")
    assert df.height == 20_000 and 0.1 < df["label"].mean() < 0.6
    enc = FeatureEncoder.load(out / "encoder.json")
    # A new file whose categories were never seen: everything OOV (or missing), nothing dropped.
    new = tmp_path / "new.tsv"
    new.write_text(_criteo_line(cats=["deadbeef"] * 25 + [""]) + "\n")
    enc_df, skipped = transform_file(new, spec, enc)
    assert enc_df.height == 1 and skipped == {}
    assert enc_df.select([f"idx_C{i}" for i in range(1, 26)]).row(0) == (OOV,) * 25
    assert enc_df["idx_C26"][0] == MISSING


def test_generator_true_logits_match_the_written_labels(tmp_path: Path) -> None:
    """``true_effects`` reproduces the logit behind every written line (across chunk boundaries) and its
    parts, so it scores far above chance on the labels, and the planted interactions carry more of it than
    the first-order effects (a model must learn interactions)."""
    import numpy as np
    import torch
    from torchmetrics.functional.classification import binary_auroc

    from polyhead.ctr.data.synthetic import sample_chunk, true_effects

    f = generate_criteo(tmp_path / "gen.tsv", 12_000, seed=5, chunk_rows=5_000)
    labels = pl.read_csv(f, separator="\t", has_header=False, columns=[0])[:, 0].to_numpy()
    effects = true_effects(12_000, seed=5, chunk_rows=5_000)
    logit = effects.pop("logit")
    parts = sample_chunk(5, 0, 5_000)
    assert np.array_equal(labels[:5_000], parts["label"]) and np.allclose(logit[:5_000], parts["logit"])
    assert sorted(effects) == ["main", "pair:C10xC14", "pair:C1xC2", "pair:C3xC8", "pair:C5xI4", "triple"]
    assert np.allclose(sum(effects.values()) - 1.2, logit)
    assert binary_auroc(torch.from_numpy(logit), torch.from_numpy(labels).long()).item() > 0.8
    inter = parts["logit"] - parts["logit_main"] + 1.2
    assert inter.var() > 3 * parts["logit_main"].var()


def test_effect_recovery_reads_the_gain_of_each_effect() -> None:
    """A logit built from known effects at known gains (one left out, plus noise): the fit returns those
    gains, and r2 is the share of the logit's variance they explain."""
    import numpy as np

    from polyhead.ctr.explain import effect_recovery

    rng = np.random.default_rng()
    n = 50_000
    effects = {
        "main": rng.normal(0, 1, n),
        "pair:AxB": rng.normal(0, 1.3, n),
        "triple": rng.normal(0, 0.7, n),
    }
    gains = {"main": rng.uniform(0.2, 1.0), "pair:AxB": 0.0, "triple": rng.uniform(0.2, 1.0)}
    signal = sum(g * effects[k] for k, g in gains.items())
    noise = rng.normal(0, 0.5, n)
    got = effect_recovery(0.3 + signal + noise, effects)
    for k, g in gains.items():
        assert got[k] == pytest.approx(g, abs=0.02)
    assert got["r2"] == pytest.approx(signal.var() / (signal + noise).var(), abs=0.02)
    exact = effect_recovery(-1.0 + 0.5 * effects["main"], {"main": effects["main"]})
    assert exact["main"] == pytest.approx(0.5, abs=1e-9) and exact["r2"] == pytest.approx(1.0, abs=1e-9)


def test_generator_integer_effects_are_smooth_in_log_count() -> None:
    """I4's interaction factors vary smoothly with log(1 + x), so the log buckets of the standard
    Criteo transform lose little of the C5xI4 interaction (version 1 gave each raw value its own factor)."""
    import numpy as np

    from polyhead.ctr.data.synthetic import INT_CLIP, _smooth_table

    table = _smooth_table(np.random.default_rng(0), 4)
    assert table.shape == (INT_CLIP + 2, 4)
    steps = np.abs(np.diff(table[: INT_CLIP + 1], axis=0)).max(1)
    assert steps[20:].max() < 0.25 * np.abs(table[: INT_CLIP + 1]).max()
