"""The umbrella `polyhead` command: list and demo, with and without installed domains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhead.train import umbrella
from polyhead.train.domains import DemoRow, Domain, DomainEntry


def _entry(name: str, quick, **kw) -> DomainEntry:
    return DomainEntry(
        name, f"polyhead-{name}", "0.1.0", Domain(name=name, title=f"{name} task", quick=quick, **kw), None
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


class _Clock:
    """A monotonic clock that advances 10 s per reading: wall times and budgets become deterministic."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 10.0
        return self.t


def test_demo_protocol_on_fake_domains(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    calls: list[str] = []

    def ok(name: str, **row):
        def quick(out: Path) -> list[DemoRow]:
            calls.append(name)
            assert out.name == name and out.parent in (tmp_path, tmp_path / "full")
            return [DemoRow(name, "Paper", "gen", "WER", 0.2, "Base", 0.3, 5.0, **row)]

        return quick

    def exits(name: str, code):
        def quick(out: Path) -> list[DemoRow]:
            calls.append(name)
            raise SystemExit(code)

        return quick

    def raises(out: Path) -> list[DemoRow]:
        calls.append("eps")
        raise RuntimeError("synthetic failure")

    def full(out: Path) -> list[DemoRow]:
        calls.append("a-full")
        return [DemoRow("a", "Paper", "full data", "auc", 0.8, "Base", 0.7, 99.0)]

    a_row = {"higher_is_better": False, "full_value": 0.0512, "full_source": "README table, 100 epochs"}
    entries = [
        _entry("a", ok("a", **a_row), budget_s=25.0, full=full),
        _entry("b", exits("b", 2)),
        _entry("c", exits("c", 130)),
        _entry("d", exits("d", 143)),
        _entry("eps", raises),
        _entry("z", ok("z", note="the paper's model trails its baseline at this budget"), budget_s=5.0),
        DomainEntry("broken", "polyhead-broken", "0.1.0", None, "ImportError: no module"),
    ]
    monkeypatch.setattr(umbrella, "discover_domains", lambda: entries)
    monkeypatch.setattr(umbrella.time, "monotonic", _Clock())
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["demo", "--out", str(tmp_path)])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    # Every domain ran, in order, whatever the ones before it did.
    assert calls == ["a", "b", "c", "d", "eps", "z"]
    # A progress line before and after each domain, with its budget.
    assert "polyhead demo [1/7] a: quick pipeline, budget 25 s" in out
    assert "polyhead demo [1/7] a: done in 10 s (within budget)" in out
    assert "polyhead demo [2/7] b: quick pipeline, budget 150 s" in out
    assert "polyhead demo [2/7] b: failed after 10 s: configuration error (exit code 2)" in out
    assert "c: failed after 10 s: interrupted (exit code 130)" in out
    assert "d: failed after 10 s: terminated (exit code 143)" in out
    assert "z: done in 10 s (over budget by 5 s)" in out
    assert "[7/7] broken: not loadable: ImportError" in out
    # The table: direction, the comparison in that direction, the full-config figure, its source, the note.
    assert "WER ↓" in out and "better" in out and "0.0512" in out
    assert "full config of a Paper: README table, 100 epochs" in out
    assert "note on z Paper: the paper's model trails its baseline at this budget" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "quick"
    status = {d["domain"]: (d["status"], d.get("exit_code")) for d in summary["domains"]}
    assert status == {
        "a": ("ok", None),
        "b": ("failed", 2),
        "c": ("failed", 130),
        "d": ("failed", 143),
        "eps": ("failed", None),
        "z": ("ok", None),
        "broken": ("broken", None),
    }
    by = {d["domain"]: d for d in summary["domains"]}
    assert by["a"]["budget_s"] == 25.0 and by["a"]["over_budget"] is False and by["z"]["over_budget"] is True
    assert [r["domain"] for r in summary["rows"]] == ["a", "z"]
    assert summary["rows"][0]["full_value"] == pytest.approx(0.0512)
    assert set(summary["failures"]) == {"b", "c", "d", "eps", "broken"}

    # --full runs Domain.full where there is one, the quick pipeline (with a line saying so) elsewhere.
    calls.clear()
    monkeypatch.setattr(umbrella, "discover_domains", lambda: entries[:1] + entries[5:6])
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["demo", "--out", str(tmp_path / "full"), "--full"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert calls == ["a-full", "z"]
    assert "a: full pipeline, no time budget (full configs)" in out
    assert "z: has no full configuration; running its quick pipeline" in out
    assert json.loads((tmp_path / "full" / "summary.json").read_text())["mode"] == "full"


def test_demo_keeps_results_when_interrupted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    def first(out: Path) -> list[DemoRow]:
        return [DemoRow("a", "M", "d", "auc", 0.9, "B", 0.8, 1.0)]

    def ctrl_c(out: Path) -> list[DemoRow]:
        raise KeyboardInterrupt

    def never(out: Path) -> list[DemoRow]:
        raise AssertionError("must not run after an interrupt")

    monkeypatch.setattr(
        umbrella, "discover_domains", lambda: [_entry("a", first), _entry("b", ctrl_c), _entry("c", never)]
    )
    with pytest.raises(SystemExit) as exc:
        umbrella.main(["demo", "--out", str(tmp_path)])
    assert exc.value.code == 130
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["domain"] for r in summary["rows"]] == ["a"]
    assert [d["domain"] for d in summary["domains"]] == ["a", "b"]
