"""Cost and attention statistics of one run, written to ``<run dir>/cost.json`` (used by ``polyhead matrix``).

Add it to any polyhead CLI run with ``--trainer.callbacks+=polyhead.train.cost.CostStats``. It records:

- ``fit``: parameter counts (all and inside polyhead attention modules), time per training batch
  (median and mean after the first ``warmup`` batches, which include lazy initialisation and kernel
  builds), training throughput in samples/s over the same batches (batch size as Lightning extracts it),
  the number of batches, and the peak memory of training: the process's peak RSS since ``on_train_start``
  (Linux: ``/proc/self/clear_refs`` resets the high-water mark, ``VmHWM`` reads it; elsewhere the
  lifetime ``ru_maxrss``) and on CUDA ``torch.cuda.max_memory_allocated``.
- ``test``: attention entropy (Shannon, nats, and divided by ``log S``) and mean attention distance per
  head of every polyhead attention module on the first test batch of the trained model
  (:func:`polyhead.attention.analysis.attention_entropy` / ``attention_distance``; distances in grid
  cells when the module was called with ``shape=(H, W)``, else in positions; only for self-attention).

The weights are taken with a sink chained in front of any sink already set on the module (a domain's
``test_step`` may itself run :func:`~polyhead.attention.analysis.capture_attention`), so both receive
them; statistics are reduced per call at once and the maps are not kept.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.data import extract_batch_size

from polyhead.attention.analysis import attention_distance, attention_entropy, attention_modules

COST_FILE = "cost.json"


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_ok: bool) -> tuple[float, str]:
    if reset_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "VmHWM since train start"
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kB on Linux, bytes on macOS.
    return (kb / 1024 / 1024 if sys.platform == "darwin" else kb / 1024), "ru_maxrss of the process"


class _AttentionStats:
    """Per-module running sums of per-head entropy, normalised entropy and distance."""

    def __init__(self) -> None:
        self.modules: dict[str, dict[str, Any]] = {}

    def add(self, name: str, weights: torch.Tensor, *, is_self: bool, shape: Any) -> None:
        w = weights.detach().float()
        S = w.shape[-1]
        ent = attention_entropy(w).double()
        rec = self.modules.setdefault(
            name,
            {"kind": "self" if is_self else "cross", "calls": 0, "entropy": 0.0, "entropy_norm": 0.0},
        )
        rec["calls"] += 1
        rec["entropy"] = rec["entropy"] + ent
        rec["entropy_norm"] = rec["entropy_norm"] + ent / max(math.log(S), 1e-12)
        if is_self and w.shape[-2] == S:
            grid = None
            if shape is not None and len(shape) == 2 and int(shape[0]) * int(shape[1]) == S:
                grid = (int(shape[0]), int(shape[1]))
            dist = attention_distance(w, grid).double()
            rec["distance"] = rec.get("distance", 0.0) + dist
            rec["distance_unit"] = "grid cells" if grid is not None else "positions"

    def summary(self) -> dict[str, Any]:
        per_module: dict[str, Any] = {}
        for name, rec in self.modules.items():
            n = rec["calls"]
            out = {"kind": rec["kind"], "calls": n}
            for key in ("entropy", "entropy_norm", "distance"):
                if key in rec:
                    out[key] = [float(v) for v in rec[key] / n]
            if "distance_unit" in rec:
                out["distance_unit"] = rec["distance_unit"]
            per_module[name] = out

        def mean(kind: str, key: str) -> float | None:
            vals = [v for m in per_module.values() if m["kind"] == kind for v in m.get(key, [])]
            return float(statistics.fmean(vals)) if vals else None

        return {
            "attn_entropy": mean("self", "entropy"),
            "attn_entropy_norm": mean("self", "entropy_norm"),
            "attn_distance": mean("self", "distance"),
            "cross_entropy": mean("cross", "entropy"),
            "cross_entropy_norm": mean("cross", "entropy_norm"),
            "modules": per_module,
        }


class CostStats(Callback):
    """Write training cost and trained-model attention statistics to ``<run dir>/cost.json``.

    Args:
        warmup: training batches left out of the time and throughput figures (at least one batch is
            always kept).
        attention_batches: test batches whose attention maps are reduced to statistics.
    """

    def __init__(self, *, warmup: int = 2, attention_batches: int = 1) -> None:
        super().__init__()
        if warmup < 0 or attention_batches < 0:
            raise ValueError(f"warmup and attention_batches must be >= 0, got {warmup}, {attention_batches}")
        self.warmup = warmup
        self.attention_batches = attention_batches
        self._times: list[float] = []
        self._sizes: list[int | None] = []
        self._t0 = 0.0
        self._fit: dict[str, Any] = {}
        self._rss_reset = False
        self._hooks: list[Any] = []
        self._stats = _AttentionStats()

    # ---- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _sync(trainer: pl.Trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)

    @staticmethod
    def _write(trainer: pl.Trainer, section: str, data: dict[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        run_dir = getattr(trainer, "polyhead_run_dir", None) or trainer.default_root_dir
        path = Path(run_dir) / COST_FILE
        payload = json.loads(path.read_text()) if path.is_file() else {}
        payload[section] = data
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, path)

    # ---- fit --------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        attn = attention_modules(pl_module)
        attn_params = {id(p): p.numel() for m in attn.values() for p in m.parameters()}
        self._fit = {
            "params": int(sum(p.numel() for p in pl_module.parameters())),
            "attention_params": int(sum(attn_params.values())),
            "attention_modules": len(attn),
            "variants": sorted({type(m).variant_name for m in attn.values()}),
            "device": str(trainer.strategy.root_device),
            "torch_threads": torch.get_num_threads(),
        }
        self._times, self._sizes = [], []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rss_reset = _reset_peak_rss()
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
        self._train_t0 = time.perf_counter()

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, *_: Any
    ) -> None:
        self._sync(trainer)
        self._t0 = time.perf_counter()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._sync(trainer)
        self._times.append(time.perf_counter() - self._t0)
        try:
            self._sizes.append(int(extract_batch_size(batch)))
        except Exception:  # a batch Lightning cannot size (custom objects): throughput is left out
            self._sizes.append(None)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = len(self._times)
        skip = min(self.warmup, max(n - 1, 0))
        times, sizes = self._times[skip:], self._sizes[skip:]
        peak_mb, source = _peak_rss_mb(self._rss_reset)
        fit = dict(self._fit)
        fit.update(
            {
                "batches": n,
                "timed_batches": len(times),
                "step_ms_median": 1e3 * statistics.median(times) if times else None,
                "step_ms_mean": 1e3 * statistics.fmean(times) if times else None,
                "throughput": (sum(s for s in sizes if s is not None) / sum(times))
                if times and None not in sizes
                else None,
                "train_wall_s": time.perf_counter() - self._train_t0,
                "peak_rss_mb": peak_mb,
                "peak_rss_source": source,
                "cuda_peak_mb": (
                    torch.cuda.max_memory_allocated(trainer.strategy.root_device) / 2**20
                    if trainer.strategy.root_device.type == "cuda"
                    else None
                ),
            }
        )
        self._write(trainer, "fit", fit)

    # ---- test: attention statistics of the trained model -------------------------------------------
    def _attach(self, pl_module: pl.LightningModule) -> None:
        stats = self._stats

        def pre_hook(module: Any, args: tuple, kwargs: dict) -> None:
            context = args[1] if len(args) > 1 else kwargs.get("context")
            prev = module._capture_sink
            name = module._polyhead_cost_name

            def sink(mod: Any, weights: torch.Tensor | None) -> None:
                if weights is not None:
                    stats.add(name, weights, is_self=context is None, shape=kwargs.get("shape"))
                if prev is not None:
                    prev(mod, weights)

            module._polyhead_cost_prev = prev
            module._capture_sink = sink

        def post_hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            module._capture_sink = module._polyhead_cost_prev

        for name, module in attention_modules(pl_module).items():
            m: Any = module  # plain attributes on the module, not parameters or buffers
            m._polyhead_cost_name = name
            self._hooks.append(m.register_forward_pre_hook(pre_hook, with_kwargs=True))
            self._hooks.append(m.register_forward_hook(post_hook, with_kwargs=True, always_call=True))

    def _detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stats = _AttentionStats()

    def on_test_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx == 0 and batch_idx < self.attention_batches:
            self._attach(pl_module)

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._detach()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._detach()
        summary = self._stats.summary()
        summary["test_batches_analysed"] = self.attention_batches
        self._write(trainer, "test", summary)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._detach()
