"""Benchmark: relation-model throughput on CPU and the cost of PyG graph batching vs dense padded adjacency.

    uv run python pipelines/bench/bioie.py                    # both parts, JSON to runs/bench/bioie.json
    uv run python pipelines/bench/bioie.py --threads 2 --steps 10

1. Training and inference candidates/s (one candidate = one sentence with a marked pair) for AGGCN, C-GCN
   (dense and PyG graph layers) and the Transformer on generated abstracts, batch 50.
2. Graph batching at sentence lengths 20-150: batch construction plus two GCN layers forward + backward over
   random dependency trees (each token's head drawn among the earlier tokens; lengths within a batch vary
   +-50% around the nominal one), dense padded ``(B, L, L)`` adjacency + ``bmm`` vs a PyG ``edge_index``
   built with ``Batch.from_data_list`` + ``scatter``; reported as the ratio PyG time / dense time.

Times are medians of repeated runs; ratios are computed within one run (never absolute-time assertions).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from polyhead.bioie.data.encoding import Encoder, collate
from polyhead.bioie.data.generator import generate_split
from polyhead.bioie.data.graphs import batch_edge_index, dense_adjacency
from polyhead.bioie.models import build_model
from polyhead.bioie.models.gcn import GraphConv


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_throughput(steps: int, batch: int) -> list[dict]:
    _, _, examples = generate_split("train", 120, seed=0)
    enc = Encoder.build(examples)
    items = [enc.encode(e) for e in examples]
    sizes = {
        "words": len(enc.words),
        "pos": len(enc.pos),
        "ner": len(enc.ner),
        "positions": 2 * enc.max_position + 1,
    }
    rows = []
    configs = [("aggcn", {}, "dense"), ("tree_gcn", {"graph": "dense"}, "dense"), ("tree_gcn", {"graph": "pyg"}, "pyg"),
               ("transformer", {"heads": 4}, "dense")]  # fmt: skip
    for name, kw, graph in configs:
        torch.manual_seed(0)
        model = build_model(name, vocab_sizes=sizes, num_classes=len(enc.relations), **kw)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = [collate(items[i * batch : (i + 1) * batch], graph=graph) for i in range(steps)]

        def train(model=model, batches=batches, opt=opt) -> None:  # bound now, not at call time
            model.train()
            for b in batches:
                loss = torch.nn.functional.cross_entropy(model(b), b["labels"])
                opt.zero_grad()
                loss.backward()
                opt.step()

        @torch.no_grad()
        def infer(model=model, batches=batches) -> None:
            model.eval()
            for b in batches:
                model(b)

        n = steps * batch
        t_train, t_infer = _median_time(train, 3), _median_time(infer, 3)
        label = f"{name}" + (f" ({kw['graph']})" if "graph" in kw else "")
        rows.append({"model": label, "train_per_s": n / t_train, "infer_per_s": n / t_infer,
                     "params": sum(p.numel() for p in model.parameters())})  # fmt: skip
        print(f"{label:20s} train {n / t_train:8.1f}/s  inference {n / t_infer:8.1f}/s", flush=True)
    return rows


def random_trees(rng: np.random.Generator, batch: int, length: int) -> tuple[list[np.ndarray], list[int]]:
    lengths = rng.integers(max(2, length // 2), int(length * 1.5) + 1, size=batch).tolist()
    edges = []
    for n in lengths:
        child = np.arange(1, n)
        head = (rng.random(n - 1) * child).astype(np.int64)  # a head among the earlier tokens
        edges.append(np.stack([child, head]))
    return edges, lengths


def graph_batching(lengths: list[int], batch: int, dim: int, repeats: int) -> list[dict]:
    rng = np.random.default_rng(0)
    layers = [GraphConv(in_dim=dim, out_dim=dim) for _ in range(2)]
    rows = []
    for length in lengths:
        edges, lens = random_trees(rng, batch, length)
        max_len = max(lens)
        x = torch.randn(batch, max_len, dim, requires_grad=True)

        def dense(edges=edges, lens=lens, max_len=max_len, x=x) -> None:
            adj = dense_adjacency(edges, lens, max_len)
            h = x
            for layer in layers:
                h = layer(h, adj=adj)
            h.sum().backward()

        def pyg(edges=edges, max_len=max_len, x=x) -> None:
            ei = batch_edge_index(edges, max_len)
            h = x
            for layer in layers:
                h = layer(h, edge_index=ei)
            h.sum().backward()

        t_dense, t_pyg = _median_time(dense, repeats), _median_time(pyg, repeats)
        rows.append({"length": length, "max_len": max_len, "dense_ms": 1e3 * t_dense, "pyg_ms": 1e3 * t_pyg,
                     "pyg_over_dense": t_pyg / t_dense})  # fmt: skip
        print(f"L={length:4d} (max {max_len:3d})  dense {1e3 * t_dense:7.2f} ms  pyg {1e3 * t_pyg:7.2f} ms  "
              f"ratio pyg/dense {t_pyg / t_dense:5.2f}", flush=True)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="batches per timed pass (throughput)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--lengths", default="20,40,80,150")
    ap.add_argument("--dim", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="runs/bench/bioie.json")
    ns = ap.parse_args()
    torch.set_num_threads(ns.threads)
    print(f"torch {torch.__version__}, {ns.threads} thread(s)")
    result = {
        "threads": ns.threads,
        "throughput": model_throughput(ns.steps, ns.batch),
        "graph_batching": graph_batching([int(v) for v in ns.lengths.split(",")], 32, ns.dim, ns.repeats),
    }
    out = Path(ns.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
