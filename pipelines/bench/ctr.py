"""Benchmark: CTR preprocessing, streaming memory and time against eager loading and a pandas pipeline.

    uv run --group bench python pipelines/bench/ctr.py [--rows 5000000]

Generates a Criteo-format file, then measures each step in a fresh subprocess (peak resident memory
from ``ru_maxrss``, wall time):

- ``polyhead``: the package's preprocessing (lazy scan, validation, split, encoder fit on train,
  encoded Parquet written with a streaming sink);
- ``polars eager``: just loading the file as a DataFrame with ``pl.read_csv`` (what "the file loaded as a
  DataFrame" costs);
- ``pandas + LabelEncoder``: the DeepCTR-Torch example pipeline (``pd.read_csv``, fill NA, a scikit-learn
  ``LabelEncoder`` per categorical column, ``MinMaxScaler`` on the dense ones).

Prints a table and writes JSON. The training-throughput comparison with DeepCTR-Torch's AutoInt is not
part of this script yet (deepctr-torch is not in the lock).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _polyhead(path: str, cache: str) -> None:
    from polyhead.ctr.data.formats import criteo_spec
    from polyhead.ctr.data.prepare import preprocess

    preprocess(path, criteo_spec(), cache)


def _polars_eager(path: str, cache: str) -> None:
    import polars as pl

    df = pl.read_csv(path, separator="\t", has_header=False, infer_schema_length=10000)
    print(f"dataframe estimated size {df.estimated_size() / 2**20:.0f} MB", file=sys.stderr)


def _pandas(path: str, cache: str) -> None:
    import pandas as pd
    from sklearn.preprocessing import LabelEncoder, MinMaxScaler

    dense = [f"I{i}" for i in range(1, 14)]
    sparse = [f"C{i}" for i in range(1, 27)]
    df = pd.read_csv(path, sep="\t", header=None, names=["label", *dense, *sparse])
    df[sparse] = df[sparse].fillna("-1")
    df[dense] = df[dense].fillna(0)
    for c in sparse:
        df[c] = LabelEncoder().fit_transform(df[c])
    df[dense] = MinMaxScaler(feature_range=(0, 1)).fit_transform(df[dense])


STEPS = {"polyhead": _polyhead, "polars eager": _polars_eager, "pandas + LabelEncoder": _pandas}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--workdir", default="runs/bench/ctr")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--out", default="runs/bench/ctr.json")
    ap.add_argument("--_step", nargs=3, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns._step:
        name, path, cache = ns._step
        t0 = time.perf_counter()
        STEPS[name](path, cache)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"step": name, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak}))
        return

    from polyhead.ctr.data.synthetic import generate_criteo

    work = Path(ns.workdir)
    data = work / f"criteo_{ns.rows}.tsv"
    if not data.is_file():
        t0 = time.perf_counter()
        generate_criteo(data, ns.rows, seed=0)
        print(f"generated {ns.rows} rows in {time.perf_counter() - t0:.0f}s")
    size_mb = data.stat().st_size / 2**20
    rows = []
    for name in ns.steps.split(","):
        cache = work / f"cache_{time.time_ns()}"
        res = subprocess.run(
            [sys.executable, __file__, "--_step", name, str(data), str(cache)], capture_output=True, text=True
        )
        if res.returncode != 0:
            rows.append({"step": name, "error": res.stderr.strip().splitlines()[-1]})
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["stderr"] = res.stderr.strip().splitlines()[-1:] if res.stderr.strip() else []
        rows.append(r)
    print(f"\nfile: {data} ({ns.rows} rows, {size_mb:.0f} MB)")
    print(f"{'step':<24}{'seconds':>10}{'peak RSS MB':>14}")
    for r in rows:
        if "error" in r:
            print(f"{r['step']:<24}  error: {r['error']}")
        else:
            print(f"{r['step']:<24}{r['seconds']:>10.1f}{r['peak_rss_mb']:>14.0f}  {' '.join(r['stderr'])}")
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": ns.rows, "file_mb": size_mb, "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
