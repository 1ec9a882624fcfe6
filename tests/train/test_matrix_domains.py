"""``polyhead matrix --budget tiny`` on real installed domains (bioie, cslr): the CI check of issue 18.

The fake-domain tests (``test_matrix.py``) cover the protocol's corners; this one runs the shipped domains'
own ``matrix_args["tiny"]`` through the real command, so a domain whose CLI, metric key or attention sites
drift out of the protocol fails here. Two domains with one-dimensional self-attention sites, three variants:
``halo`` needs a 2-D layout and must be reported as not applicable, never forced.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from polyhead.train.umbrella import main as polyhead_main

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("matrix_domains")]

DOMAINS = ("bioie", "cslr")
VARIANTS = ("mha", "moh", "halo")


def _matrix(out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    args = ["matrix", "--domains", ",".join(DOMAINS), "--variants", ",".join(VARIANTS), "--budget", "tiny"]
    try:
        polyhead_main([*args, "--out", str(out), "--in-process", "--wandb", "disabled"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().out[-4000:]
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix_domains")


def test_real_domains_run_and_resume(
    first_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(first_run)  # the domains' default caches (runs/<domain>/cache) stay in the tmp dir
    out = first_run / "matrix"
    _matrix(out, capsys)
    payload = json.loads((out / "matrix.json").read_text())
    rows = {(r["domain"], r["variant"]): r for r in payload["rows"]}
    for domain in DOMAINS:
        for variant in ("default", "mha", "moh"):
            row = rows[(domain, variant)]
            assert row["status"] == "ok", (domain, variant, row.get("errors"))
            assert math.isfinite(row["metric_mean"]), row
            cells = sorted((out / "cells/tiny" / domain / variant).glob("seed*/cell.json"))
            (cell,) = (json.loads(p.read_text()) for p in cells)
            assert cell["status"] == "ok"
            assert math.isclose(cell["result"]["metric"], row["metric_mean"])
            assert cell["result"]["cost"]["fit"]["attention_modules"] >= 1
            assert variant == "default" or variant in cell["result"]["cost"]["fit"]["variants"]
        halo = rows[(domain, "halo")]
        assert halo["status"] != "ok" and halo.get("reason"), halo
        assert not (out / "cells/tiny" / domain / "halo").exists()
    md = (out / "matrix.md").read_text()
    assert all(f"{d}" in md for d in DOMAINS)

    # resume: a cell whose process died before writing cell.json is run again, the others are reused
    lost = out / "cells/tiny/cslr/moh/seed0/cell.json"
    lost.unlink()
    logs = _matrix(out, capsys)
    assert "[matrix] bioie/mha/seed0: reused (ok)" in logs
    assert "[matrix] cslr/mha/seed0: reused (ok)" in logs
    assert "[matrix] cslr/moh/seed0: running ..." in logs
    assert json.loads(lost.read_text())["status"] == "ok"
