"""Benchmark: CTR preprocessing against a pandas pipeline, and AutoInt training against DeepCTR-Torch.

    uv run --group bench python pipelines/bench/ctr.py --train-rows 0            # preprocessing, 1M rows
    uv run --group bench python pipelines/bench/ctr.py --steps '' --threads 1    # training only

Writes a generated Criteo-format file (``--rows``, default 1,000,000: ``polyhead.ctr.data.synthetic``'s
generator, written into ``--workdir``, not a committed file), then measures each preprocessing step in a
fresh subprocess (wall time of the step with its modules already imported; peak resident memory from
``VmHWM`` (``ru_maxrss`` off Linux), which counts the pages of a memory-mapped input file too):

- ``polyhead``: the package's preprocessing (``polyhead.ctr.data.prepare.preprocess``: validation, hash
  split, encoder fitted on the train rows, encoded Parquet cache); the reader it used is recorded;
- ``pandas + LabelEncoder``: the DeepCTR-Torch example pipeline (``pd.read_csv``, fill NA, a scikit-learn
  ``LabelEncoder`` per categorical column, ``MinMaxScaler`` on the dense ones);
- ``polars eager``: just loading the file as a DataFrame with ``pl.read_csv`` (what "the file loaded as a
  DataFrame" costs).

``--prep-repeats`` rounds alternate the order of the steps; the speed ratio (pandas seconds / polyhead
seconds), the CPU-time ratio (user + system seconds of all threads: the work done, which a shared machine's
load changes less than the wall time) and the memory ratio (polyhead peak / pandas peak) are computed per
round and their medians reported, with the load average before each step and the CPU model.

and, with ``--train-rows N`` (default 200k), the AutoInt training comparison on the same encoded data
(every field as a categorical index; embedding 16, 3 attention layers, 2 heads, Adam 1e-3, batch 1024,
``--epochs`` epochs on the 8/10 train split, AUC on the 1/10 test split):

- ``polyhead AutoInt``: ``polyhead.ctr`` through Lightning (no validation during the timed fit), with
  ``wide=True``, attention size 8, no output projection after the heads (``attn_out_proj=False``), no
  q/k/v biases and N(0, 0.05) projection weights (``attn_init_std=0.05``) to be the same model as
  DeepCTR's;
- ``DeepCTR-Torch AutoInt``: ``deepctr_torch.models.AutoInt`` with its own ``fit``/``predict``
  (``dnn_hidden_units=()``, i.e. AutoInt without the DNN; DeepCTR adds its linear part);
- ``DeepCTR + tuned malloc``: the same, with the glibc malloc thresholds that polyhead's trainers set
  (``polyhead.train.tune_cpu_allocator``), to show how much of the gap is the allocator and how much the
  model code (polyhead's attention runs on its fused CPU kernel, ``backend="auto"``).

Throughput is training rows per second of wall time in the fit call. ``--repeats`` rounds alternate
the order of the trainers (round ``r`` seeds both with ``--seed + r``, so the rounds also give the
seed-to-seed spread of the test AUC) and the median of the per-round ratios is reported (the load of a shared
machine changes between runs). ``--threads`` sets torch's threads in both (on an oversubscribed
machine 2 threads can be several times slower than 1). ``--precision auto`` (default) trains polyhead under
CPU bf16 autocast only where the CPU has native bf16 arithmetic (AVX512-BF16 / AMX; elsewhere bf16 is
emulated and slower than float32: 0.16x DeepCTR's rows/s on an AVX2 laptop), else float32; DeepCTR has no
such option. ``--backend`` picks polyhead's attention backend (``auto``: the fused CPU kernel chosen for this
machine, see ``polyhead.attention.cpu.choice``). ``--capability avx2`` runs both trainers with
``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` and ``MKL_ENABLE_INSTRUCTIONS=AVX2`` (PyTorch's own
kernels, polyhead's portable kernel, oneDNN's and MKL's matrix products in their AVX2 code: an AVX2-only
machine emulated on an AVX-512 one). Every result records the capability the run found. Prints a
table and writes JSON.

    uv run --group bench python pipelines/bench/ctr.py --steps '' --threads 1   # training only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _polyhead_imports() -> None:
    import polyhead.ctr.data.prepare  # noqa: F401


def _polyhead(path: str, cache: str) -> None:
    from polyhead.ctr.data.formats import criteo_spec
    from polyhead.ctr.data.prepare import preprocess

    out = preprocess(path, criteo_spec(), cache)
    meta = json.loads((out / "meta.json").read_text())
    print(f"reader: {meta['reader']}", file=sys.stderr)


def _polars_imports() -> None:
    import polars  # noqa: F401


def _polars_eager(path: str, cache: str) -> None:
    import polars as pl

    df = pl.read_csv(path, separator="\t", has_header=False, infer_schema_length=10000)
    print(f"dataframe estimated size {df.estimated_size() / 2**20:.0f} MB", file=sys.stderr)


def _pandas_imports() -> None:
    import pandas  # noqa: F401
    import sklearn.preprocessing  # noqa: F401


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


def peak_rss_mb(usage: resource.struct_rusage) -> float:
    """This process's peak resident memory: ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``.

    Linux carries ``ru_maxrss`` over ``fork`` + ``exec``, so a step started by a parent that once held more
    memory (the file generator) would report the parent's peak; ``VmHWM`` belongs to the new address space.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return usage.ru_maxrss / 1024


def cpu_model() -> str:
    """The CPU's model name and core count (from /proc/cpuinfo where there is one)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} logical cores"


def _encoded(cache: str) -> tuple:
    import polars as pl

    from polyhead.ctr.data.encoder import FeatureEncoder

    enc = FeatureEncoder.load(Path(cache) / "encoder.json")
    df = pl.read_parquet(Path(cache) / "data.parquet")
    return enc, df


def native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (oneDNN's check: AVX512-BF16 or AMX), as PyTorch is told
    to use it: an emulated AVX2 capability (``--capability avx2``) has none."""
    import torch

    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "SVE256"):
        return False
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _train_polyhead(cache: str, epochs: int, opts: dict) -> dict:
    import lightning.pytorch as lp
    import torch

    from polyhead.ctr.module import CTRDataModule, CTRModule

    torch.set_num_threads(opts["threads"])
    src = json.loads((Path(cache) / "meta.json").read_text())["source"]
    torch.manual_seed(opts["seed"])
    dm = CTRDataModule(data_path=src, cache_dir=str(Path(cache).parent))
    dm.setup("fit")
    # DeepCTR-Torch's AutoInt keeps the embedding width (attention size = 16 / 2 heads = 8), has no output
    # projection after the heads, no biases in its projections, draws their weights from N(0, 0.05) and always
    # adds a linear (first-order) logit: match all of it.
    model = CTRModule(
        model="autoint",
        attn_size=8,
        wide=True,
        attn_out_proj=False,  # DeepCTR's InteractingLayer concatenates the heads without W_o
        attn_init_std=0.05,
        attention={"name": "mha", "backend": opts["backend"], "qkv_bias": False},
        early_stop_patience=None,
        lr_patience=None,
    )
    precision = opts["precision"]
    if precision == "auto":
        precision = "bf16-mixed" if native_bf16() else "32-true"
    trainer = lp.Trainer(
        max_epochs=epochs,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir="/tmp",
    )
    from polyhead.attention import cpu

    cpu.choice()  # kernels compiled and auto's choice measured once per machine (then cached): not training time
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    seconds = time.perf_counter() - t0
    model.hparams.explain_batches = 0
    auc = trainer.test(model, datamodule=dm, verbose=False)[0]["test/auc"]
    rows = dm.splits["train"][0].shape[0] * epochs
    return {
        "fit_seconds": seconds,
        "rows_per_s": rows / seconds,
        "test_auc": auc,
        "precision": precision,
        "attention_backend": opts["backend"],
        "cpu_kernel": cpu.choice()["kernel"],
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": opts["threads"],
        "seed": opts["seed"],
    }


def _train_deepctr(cache: str, epochs: int, opts: dict) -> dict:
    import numpy as np
    import torch
    from deepctr_torch.inputs import SparseFeat
    from deepctr_torch.models import AutoInt
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(opts["threads"])
    torch.manual_seed(opts["seed"])
    enc, df = _encoded(cache)
    cols = [SparseFeat(f.name, vocabulary_size=f.size, embedding_dim=16) for f in enc.fields]
    train, test = df.filter(df["split"] == 0), df.filter(df["split"] == 2)

    def inputs(part) -> dict:
        return {f.name: part[f"idx_{f.name}"].to_numpy().astype(np.int64) for f in enc.fields}

    model = AutoInt(
        cols,
        cols,
        att_layer_num=3,
        att_head_num=2,
        att_res=True,
        dnn_hidden_units=(),
        task="binary",
        device="cpu",
        seed=opts["seed"],  # DeepCTR seeds torch itself in the constructor (default 1024)
    )
    model.compile("adam", "binary_crossentropy")
    t0 = time.perf_counter()
    model.fit(
        inputs(train), train["label"].to_numpy().astype(np.float32), batch_size=1024, epochs=epochs, verbose=0
    )
    seconds = time.perf_counter() - t0
    pred = model.predict(inputs(test), 1024)
    return {
        "fit_seconds": seconds,
        "rows_per_s": train.height * epochs / seconds,
        "test_auc": float(roc_auc_score(test["label"].to_numpy(), pred)),
        "precision": "32-true",
        "capability": torch.backends.cpu.get_cpu_capability(),
        "threads": opts["threads"],
        "seed": opts["seed"],
    }


def _train_deepctr_tuned(cache: str, epochs: int, opts: dict) -> dict:
    """DeepCTR-Torch with the glibc malloc thresholds polyhead's trainers set (the allocator's share of the gap)."""
    from polyhead.train import tune_cpu_allocator

    tune_cpu_allocator()
    return _train_deepctr(cache, epochs, opts)


def _opt_args(opts: dict) -> list[str]:
    return [
        "--precision",
        opts["precision"],
        "--backend",
        opts["backend"],
        "--threads",
        str(opts["threads"]),
        "--seed",
        str(opts["seed"]),
    ]


STEPS = {"polyhead": _polyhead, "pandas + LabelEncoder": _pandas, "polars eager": _polars_eager}
STEP_IMPORTS = {
    "polyhead": _polyhead_imports,
    "pandas + LabelEncoder": _pandas_imports,
    "polars eager": _polars_imports,
}
TRAINERS = {
    "polyhead AutoInt": _train_polyhead,
    "DeepCTR-Torch AutoInt": _train_deepctr,
    "DeepCTR + tuned malloc": _train_deepctr_tuned,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument(
        "--prep-repeats", type=int, default=3, help="rounds of the preprocessing steps (alternating order)"
    )
    ap.add_argument("--workdir", default="runs/bench/ctr")
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--out", default="runs/bench/ctr.json")
    ap.add_argument(
        "--train-rows", type=int, default=200_000, help="rows for the training comparison (0: skip)"
    )
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument(
        "--precision",
        default="auto",
        help="Lightning precision of the polyhead trainer; auto: bf16-mixed only with native bf16 arithmetic "
        "(DeepCTR-Torch always trains in float32)",
    )
    ap.add_argument(
        "--capability",
        default=None,
        help="ATEN_CPU_CAPABILITY for the training subprocesses (e.g. avx2: emulate an AVX2-only CPU)",
    )
    ap.add_argument("--backend", default="auto", help="functional.attention backend of polyhead's mha")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each training subprocess")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the training comparison")
    ap.add_argument(
        "--seed",
        type=int,
        default=0,
        help="round r seeds both trainers' initialisation and batch order with seed + r (same data and split)",
    )
    ap.add_argument("--_step", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_train", nargs=3, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    opts = {"precision": ns.precision, "backend": ns.backend, "threads": ns.threads, "seed": ns.seed}
    if ns._train:
        name, cache, epochs = ns._train
        print(json.dumps({"trainer": name, **TRAINERS[name](cache, int(epochs), opts)}))
        return
    if ns._step:
        name, path, cache = ns._step
        STEP_IMPORTS[name]()  # not timed: the interpreter and library start-up are the same for any file
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        STEPS[name](path, cache)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
        print(
            json.dumps(
                {
                    "step": name,
                    "seconds": time.perf_counter() - t0,
                    "cpu_seconds": cpu,  # user + system, all threads: the work, whatever the machine's load
                    "peak_rss_mb": peak_rss_mb(r1),
                }
            )
        )
        return

    from polyhead.ctr.data.synthetic import GENERATOR_VERSION, generate_criteo

    work = Path(ns.workdir)
    steps = [s for s in ns.steps.split(",") if s]  # --steps '' runs only the training comparison
    data = work / f"criteo_v{GENERATOR_VERSION}_{ns.rows}.tsv"
    if steps and not data.is_file():
        t0 = time.perf_counter()
        generate_criteo(data, ns.rows, seed=0)
        print(f"generated {ns.rows} rows in {time.perf_counter() - t0:.0f}s")
    size_mb = data.stat().st_size / 2**20 if steps else 0.0
    rows = []
    for rnd in range(ns.prep_repeats if steps else 0):
        for name in steps if rnd % 2 == 0 else steps[::-1]:
            cache = work / f"cache_{time.time_ns()}"
            load = os.getloadavg()[0]
            res = subprocess.run(
                [sys.executable, __file__, "--_step", name, str(data), str(cache)],
                capture_output=True,
                text=True,
            )
            shutil.rmtree(cache, ignore_errors=True)
            if res.returncode != 0:
                rows.append({"step": name, "round": rnd, "error": res.stderr.strip().splitlines()[-1]})
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r["stderr"] = res.stderr.strip().splitlines()[-1:] if res.stderr.strip() else []
            rows.append({**r, "round": rnd, "load_avg_1min": load})
    prep: dict = {}
    if steps:
        print(f"\nfile: {data} ({ns.rows} rows, {size_mb:.0f} MB); {cpu_model()}")
        print(f"{'round':<6}{'step':<24}{'seconds':>10}{'CPU s':>8}{'peak RSS MB':>14}{'load':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['round']:<6}{r['step']:<24}  error: {r['error']}")
        else:
            print(
                f"{r['round']:<6}{r['step']:<24}{r['seconds']:>10.2f}{r['cpu_seconds']:>8.2f}{r['peak_rss_mb']:>14.0f}"
                f"{r['load_avg_1min']:>7.1f}  {' '.join(r['stderr'])}"
            )
    speed, cpu_ratio, memory = [], [], []
    for rnd in range(ns.prep_repeats):
        by = {r["step"]: r for r in rows if r["round"] == rnd and "error" not in r}
        if "polyhead" in by and "pandas + LabelEncoder" in by:
            ours, theirs = by["polyhead"], by["pandas + LabelEncoder"]
            speed.append(theirs["seconds"] / ours["seconds"])
            cpu_ratio.append(theirs["cpu_seconds"] / ours["cpu_seconds"])
            memory.append(ours["peak_rss_mb"] / theirs["peak_rss_mb"])
    if speed:
        prep = {
            "speedup_vs_pandas": speed,
            "median_speedup_vs_pandas": statistics.median(speed),
            "cpu_time_ratio_vs_pandas": cpu_ratio,
            "median_cpu_time_ratio_vs_pandas": statistics.median(cpu_ratio),
            "memory_ratio_vs_pandas": memory,
            "median_memory_ratio_vs_pandas": statistics.median(memory),
        }
        print(
            "polyhead vs pandas + LabelEncoder per round: "
            + ", ".join(f"{x:.2f}x faster at {m:.2f} of its peak RSS" for x, m in zip(speed, memory))
            + f"; median {prep['median_speedup_vs_pandas']:.2f}x, {prep['median_memory_ratio_vs_pandas']:.2f}; "
            f"CPU time (user + system): pandas / polyhead median {prep['median_cpu_time_ratio_vs_pandas']:.2f}"
        )
    training: list[dict] = []
    summary: dict = {}
    if ns.train_rows:
        from polyhead.ctr.data.formats import criteo_spec
        from polyhead.ctr.data.prepare import preprocess

        tdata = work / f"criteo_v{GENERATOR_VERSION}_{ns.train_rows}.tsv"
        if not tdata.is_file():
            generate_criteo(tdata, ns.train_rows, seed=0)
        cache = preprocess(tdata, criteo_spec(), work / "train_cache")
        # Rounds alternate the order of the trainers; on a shared machine the load changes from
        # minute to minute, so each round's ratio compares runs made back to back.
        for rnd in range(ns.repeats):
            names = list(TRAINERS) if rnd % 2 == 0 else list(TRAINERS)[::-1]
            for name in names:
                ropts = {**opts, "seed": ns.seed + rnd}
                env = dict(os.environ)
                if ns.capability:  # ATen's kernels, oneDNN's and MKL's matrix products all limited to it
                    env.update(
                        ATEN_CPU_CAPABILITY=ns.capability,
                        ONEDNN_MAX_CPU_ISA=ns.capability.upper(),
                        MKL_ENABLE_INSTRUCTIONS=ns.capability.upper(),
                    )
                res = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--_train",
                        name,
                        str(cache),
                        str(ns.epochs),
                        *_opt_args(ropts),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if res.returncode != 0:
                    training.append(
                        {"trainer": name, "round": rnd, "error": res.stderr.strip().splitlines()[-1]}
                    )
                else:
                    training.append({**json.loads(res.stdout.strip().splitlines()[-1]), "round": rnd})
        print(
            f"\nAutoInt training, {ns.train_rows} generated rows, {ns.epochs} epoch(s), {ns.threads} thread(s)"
        )
        print(f"{'round':<6}{'trainer':<24}{'fit s':>8}{'rows/s':>10}{'test AUC':>10}  precision, capability")
        for r in training:
            if "error" in r:
                print(f"{r['round']:<6}{r['trainer']:<24}  error: {r['error']}")
            else:
                print(
                    f"{r['round']:<6}{r['trainer']:<24}{r['fit_seconds']:>8.1f}{r['rows_per_s']:>10.0f}"
                    f"{r['test_auc']:>10.4f}  {r['precision']}, {r['capability']}"
                )
        baselines = {name: [] for name in TRAINERS if name != "polyhead AutoInt"}  # per-round ratios
        for rnd in range(ns.repeats):
            by = {r["trainer"]: r for r in training if r["round"] == rnd and "error" not in r}
            if "polyhead AutoInt" in by:
                for name, rs in baselines.items():
                    if name in by:
                        rs.append(by["polyhead AutoInt"]["rows_per_s"] / by[name]["rows_per_s"])
        ratios, tuned_ratios = baselines["DeepCTR-Torch AutoInt"], baselines["DeepCTR + tuned malloc"]
        for name, rs in baselines.items():
            if rs:
                print(
                    f"throughput ratio polyhead / {name} per round: "
                    + ", ".join(f"{x:.2f}" for x in rs)
                    + f"; median {statistics.median(rs):.2f}"
                )
        aucs = {
            name: [r["test_auc"] for r in training if r["trainer"] == name and "error" not in r]
            for name in TRAINERS
        }
        for name, a in aucs.items():
            if a:
                sd = statistics.stdev(a) if len(a) > 1 else 0.0
                print(f"{name}: test AUC mean {statistics.mean(a):.4f}, sd {sd:.4f} over {len(a)} seed(s)")
        summary = {
            "ratios": ratios,
            "median_ratio": statistics.median(ratios) if ratios else None,
            "ratios_vs_tuned_malloc": tuned_ratios,
            "median_ratio_vs_tuned_malloc": statistics.median(tuned_ratios) if tuned_ratios else None,
            "test_auc": aucs,
        }
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "rows": ns.rows,
        "file_mb": size_mb,
        "cpu": cpu_model(),
        "results": rows,
        **prep,
        "training": training,
        **summary,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
