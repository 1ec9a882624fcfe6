"""``polyhead.train.domains.measured_results``: the full-config figures a domain ships as data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from polyhead.train.domains import measured_results


@pytest.mark.parametrize(
    ("package", "keys"),
    [
        ("polyhead.ctr", {"autoint+", "dnn", "autoint"}),
        ("polyhead.cslr", {"signer_independent/conformer", "unseen_sentences/msft"}),
        ("polyhead.speech", {"joint"}),
    ],
)
def test_shipped_results_parse(package: str, keys: set[str]) -> None:
    rows = measured_results(package)
    assert keys <= set(rows)
    for r in rows.values():
        assert isinstance(r.value, float) and r.source


def _package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: object) -> str:
    pkg = tmp_path / "fake_results_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "results.json").write_text(json.dumps(payload))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_results_pkg", None)
    return "fake_results_pkg"


def test_values_and_sources_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _package(tmp_path, monkeypatch, {"rows": {"m": {"value": 3, "source": "table 1"}}})
    (row,) = measured_results(name).values()
    assert (row.value, row.source) == (3.0, "table 1")


@pytest.mark.parametrize("row", [{"value": "0.7", "source": "s"}, {"value": 0.7}, {"source": "s"}])
def test_a_bad_row_names_file_and_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: dict) -> None:
    name = _package(tmp_path, monkeypatch, {"rows": {"broken": row}})
    with pytest.raises(ValueError, match=r"results\.json: row 'broken'"):
        measured_results(name)


def test_no_results_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _package(tmp_path, monkeypatch, {"rows": {}})
    (tmp_path / name / "results.json").unlink()
    with pytest.raises(FileNotFoundError):
        measured_results(name)
