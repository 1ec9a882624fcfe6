"""The umbrella `polyhead` command: list and demo, with and without installed domains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhead.train import umbrella
from polyhead.train.domains import DemoRow, Domain, DomainEntry


def _entry(name: str, quick) -> DomainEntry:
    return DomainEntry(
        name, f"polyhead-{name}", "0.1.0", Domain(name=name, title=f"{name} task", quick=quick), None
    )


def test_list_and_demo_without_domains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(umbrella, "discover_domains", lambda: [])
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["list"])
    assert exc.value.code == 0
    assert "No polyhead domain package is installed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["demo", "--out", str(tmp_path)])
    assert exc.value.code == 0
    assert "nothing to demo" in capsys.readouterr().out


def test_demo_runs_each_domain_and_summarises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    calls: list[Path] = []

    def quick_ok(out: Path) -> list[DemoRow]:
        calls.append(out)
        return [DemoRow("alpha", "AutoInt", "generated", "auc", 0.7812, "LR", 0.7011, 12.0)]

    def quick_broken(out: Path) -> list[DemoRow]:
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(
        umbrella, "discover_domains", lambda: [_entry("alpha", quick_ok), _entry("beta", quick_broken)]
    )
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["demo", "--out", str(tmp_path)])
    assert exc.value.code == 1  # one domain failed, the other still reported
    out = capsys.readouterr().out
    assert calls == [tmp_path / "alpha"]
    for text in ("AutoInt", "0.7812", "0.7011", "beta failed", "synthetic failure"):
        assert text in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"][0]["value"] == pytest.approx(0.7812)
    assert "beta" in summary["failures"]


def test_list_shows_installed_workspace_domains(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        umbrella.main(["list"])
    out = capsys.readouterr().out
    assert "installed polyhead domains" in out
