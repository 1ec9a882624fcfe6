"""Read an offline W&B run back from its ``.wandb`` transaction log: config, metrics history, summary.

An offline run writes every record (config updates, history rows, summary, files) to
``wandb/offline-run-<time>-<id>/run-<id>.wandb``; this reader scans that log with W&B's own record
reader so tests and reports can assert on exactly what was logged, without a server.

A polyhead run directory holds several offline segments of one run id (one per process, and one per
flush, see :mod:`polyhead.train.wandb_logger`). They are read in time order as one run; a value that a
later segment logs again for the same key and ``trainer/global_step`` (the steps a killed process logged
after its last checkpoint, which the resumed process trains and logs again) replaces the earlier one.

W&B has no public API for reading offline runs: this uses its record reader
(``wandb.sdk.internal.datastore``) and protobuf records (``wandb.proto``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OfflineRun:
    """What an offline run logged.

    Attributes:
        path: the ``.wandb`` file(s) read, oldest first (a resumed run has one per process).
        run_id: the W&B run id.
        config: the final config (all updates applied).
        history: logged rows in order, each a dict of key -> value (with ``_step`` when W&B set it).
        summary: the final summary (last value of each metric plus explicit summary updates).
    """

    path: list[Path]
    run_id: str
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def metric(self, key: str) -> list[Any]:
        """All logged values of ``key`` in order."""
        return [row[key] for row in self.history if key in row]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


_STEP = "trainer/global_step"


def _merge_segment(history: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Append a later segment's rows; its values replace the same (step, key) of earlier segments."""
    later: dict[Any, set[str]] = {}
    for row in rows:
        if _STEP in row:
            later.setdefault(row[_STEP], set()).update(k for k in row if not k.startswith("_") and k != _STEP)
    if later:
        kept = []
        for row in history:
            replaced = later.get(row.get(_STEP), set()) if _STEP in row else set()
            if replaced:
                row = {k: v for k, v in row.items() if k not in replaced}
                if not any(not k.startswith("_") and k not in (_STEP, "epoch") for k in row):
                    continue
            kept.append(row)
        history[:] = kept
    history.extend(rows)


def _read_file(path: Path, run: OfflineRun) -> None:
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal.datastore import DataStore

    ds = DataStore()
    ds.open_for_scan(str(path))
    rows: list[dict[str, Any]] = []
    while True:
        data = ds.scan_data()
        if data is None:
            break
        rec = pb.Record()  # type: ignore[attr-defined]  # generated protobuf class, absent from the stubs
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            rows.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "config":
            for i in rec.config.update:
                value = json.loads(i.value_json)
                run.config[_key(i)] = value.get("value", value) if isinstance(value, dict) else value
            for i in rec.config.remove:
                run.config.pop(_key(i), None)
        elif kind == "summary":
            for i in rec.summary.update:
                run.summary[_key(i)] = json.loads(i.value_json)
            for i in rec.summary.remove:
                run.summary.pop(_key(i), None)
        elif kind == "run" and not run.run_id:
            run.run_id = rec.run.run_id
    _merge_segment(run.history, rows)


def read_offline_run(path: str | Path) -> OfflineRun:
    """Read the offline W&B run stored under ``path``.

    ``path`` may be a polyhead run directory (all ``wandb/offline-run-*`` folders in it are read in time
    order, so a resumed run or a later ``test`` adds to the same run), one ``offline-run-*`` folder, or a
    ``.wandb`` file.
    """
    p = Path(path)
    if p.is_file():
        files = [p]
    else:
        folders = sorted(p.glob("wandb/offline-run-*")) or sorted(p.glob("offline-run-*")) or [p]
        files = [f for d in folders for f in sorted(d.glob("*.wandb"))]
    if not files:
        raise FileNotFoundError(f"no offline W&B run (*.wandb) found under {p}")
    run = OfflineRun(path=files, run_id="")
    for f in files:
        _read_file(f, run)
    explicit = run.summary
    run.summary = {}
    for row in run.history:
        run.summary.update({k: v for k, v in row.items() if not k.startswith("_")})
    run.summary.update(explicit)
    return run
