"""Packaging: every domain's wheel, with polyhead-train and polyhead-attention, installed alone into a fresh
virtual environment, once under the lock's versions and once resolved freshly from the index.

Each installation must bring no other domain's third-party dependencies, answer ``polyhead-<domain>
--help``, show the domain in ``polyhead list`` and run a tiny ``fit`` then ``test`` (the domain's
``matrix_args["tiny"]``) that writes metrics.json with the domain's metric. The wheels carry the LICENSE
and ``py.typed``. Slow (each case installs torch: hard links from uv's cache, no download, but still tens
of thousands of files); the wheels are built once per test session, shared between pytest-xdist workers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("ctr", "cslr", "speech", "bioie", "face", "lowlight")
PACKAGES = ("attention", "train", *DOMAINS)


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required for the packaging tests (ci/setup installs it)")
    return uv


def _env(venv: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")
    }
    env.update(UV_PYTHON_DOWNLOADS="never", OMP_NUM_THREADS="2", POLYHEAD_TRACEBACK="1")
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900
) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {res.returncode}\n--- stdout\n{res.stdout[-4000:]}\n--- stderr\n{res.stderr[-6000:]}"
        )
    return res.stdout


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """package name -> its wheel, built once for all pytest-xdist workers of the session."""
    # Under pytest-xdist each worker's base directory sits inside the session's one (pytest-N/popen-gwK);
    # without it the base directory is the session's own.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    dist = shared / "polyhead-wheels"
    with FileLock(str(shared / "polyhead-wheels.lock")):
        if not (dist / "done").exists():
            shutil.rmtree(dist, ignore_errors=True)
            _run([_uv(), "build", "--all-packages", "--wheel", "-o", str(dist)], cwd=ROOT, env=_env())
            (dist / "done").write_text("")
    found = {p.name.split("-")[0].removeprefix("polyhead_"): p for p in dist.glob("polyhead_*.whl")}
    assert sorted(found) == sorted(PACKAGES), sorted(found)
    return found


@pytest.fixture(scope="session")
def lock_constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lock's versions of every third-party package, as a constraints file."""
    exported = _run(
        [_uv(), "export", "--frozen", "--no-hashes", "--all-packages", "--no-emit-workspace", "--no-dev"],
        cwd=ROOT,
        env=_env(),
    )
    path = tmp_path_factory.mktemp("lock") / "constraints.txt"
    path.write_text(exported)
    return path


def _project(pkg: str) -> dict:
    return tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _third_party(pkg: str, *, extras: bool) -> set[str]:
    project = _project(pkg)
    reqs = list(project.get("dependencies", []))
    if extras:
        reqs += [r for items in project.get("optional-dependencies", {}).values() for r in items]
    names = {Requirement(r).name for r in reqs}
    return {n for n in names if not n.startswith("polyhead-")}


def _foreign_dependencies(domain: str) -> set[str]:
    """Third-party distributions other domains (extras included) require and this one does not."""
    own = (
        _third_party(domain, extras=True)
        | _third_party("train", extras=True)
        | _third_party("attention", extras=True)
    )
    return {n for d in DOMAINS if d != domain for n in _third_party(d, extras=True)} - own


def _venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    _run([_uv(), "venv", "--python", "3.11", str(venv)], env=_env())
    return venv


_PROBE = """
import json, importlib.metadata as md
from packaging.requirements import Requirement
out = {}
for d in md.distributions():
    reqs = []
    for r in d.requires or []:
        req = Requirement(r)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            reqs.append(req.name.lower().replace("_", "-"))
    out[d.metadata["Name"].lower().replace("_", "-")] = {"version": d.version, "requires": reqs}
print(json.dumps(out))
"""


def _installed(venv: Path) -> dict[str, dict]:
    """name -> {"version", "requires" (names, markers evaluated, no extras)} of every installed distribution."""
    out = _run([str(venv / "bin" / "python"), "-c", _PROBE])
    return json.loads(out.strip().splitlines()[-1])


def _foreign_present(dists: dict[str, dict], foreign: set[str]) -> set[str]:
    """Other domains' dependencies that are installed only because of other foreign packages (a package
    that a shared dependency needs, such as pillow for matplotlib, is not foreign here)."""
    present = set(dists) & foreign
    legit_requirers = {n for n in dists if n not in present}
    needed = {r for n in legit_requirers for r in dists[n]["requires"]}
    return present - needed


def _locked_versions(constraints: Path) -> dict[str, str]:
    versions = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            req = Requirement(line.split(";")[0].strip())
            versions[req.name.lower()] = next(iter(req.specifier)).version
    return versions


@pytest.mark.slow
def test_wheels_carry_license_py_typed_and_pinned_requirements(wheels: dict[str, Path]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for pkg, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            assert f"{info}/licenses/LICENSE" in names, f"{wheel.name}: no LICENSE"
            assert f"polyhead/{pkg}/py.typed" in names, f"{wheel.name}: no py.typed"
            assert not any(n.startswith("polyhead/__init__") for n in names), (
                "polyhead is a namespace package"
            )
            metadata = zf.read(f"{info}/METADATA").decode()
        assert f"Version: {version}\n" in metadata
        for line in metadata.splitlines():
            if line.startswith("Requires-Dist: polyhead-"):
                assert f"=={version}" in line, f"{wheel.name}: {line}"
        assert "License-Expression: Apache-2.0" in metadata


@pytest.mark.slow
def test_polyhead_train_installs_alone(
    tmp_path: Path, wheels: dict[str, Path], lock_constraints: Path
) -> None:
    venv = _venv(tmp_path)
    py = venv / "bin" / "python"
    _run(
        [
            _uv(),
            "pip",
            "install",
            "--python",
            str(py),
            "-c",
            str(lock_constraints),
            str(wheels["attention"]),
            str(wheels["train"]),
        ],
        env=_env(),
    )
    dists = _installed(venv)
    assert sorted(d for d in dists if d.startswith("polyhead")) == ["polyhead-attention", "polyhead-train"]
    platform = _third_party("train", extras=True) | _third_party("attention", extras=True)
    for pkg in DOMAINS:
        came = _foreign_present(dists, _third_party(pkg, extras=True) - platform)
        assert not came, f"{pkg}'s dependencies came along: {sorted(came)}"
    listing = _run([str(venv / "bin" / "polyhead"), "list"], env=_env(venv))
    assert "No polyhead domain package is installed" in listing


@pytest.mark.slow
@pytest.mark.parametrize("resolution", ["locked", "fresh"])
@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_installs_alone_and_trains(
    domain: str, resolution: str, tmp_path: Path, wheels: dict[str, Path], lock_constraints: Path
) -> None:
    venv = _venv(tmp_path)
    py = venv / "bin" / "python"
    constraints = ["-c", str(lock_constraints)] if resolution == "locked" else []
    targets = [str(wheels[domain]), str(wheels["train"]), str(wheels["attention"])]
    _run([_uv(), "pip", "install", "--python", str(py), *constraints, *targets], env=_env())

    dists = _installed(venv)
    assert sorted(d for d in dists if d.startswith("polyhead")) == sorted(
        ["polyhead-attention", "polyhead-train", f"polyhead-{domain}"]
    )
    foreign = _foreign_present(dists, _foreign_dependencies(domain))
    assert not foreign, f"polyhead-{domain} brought other domains' dependencies: {sorted(foreign)}"
    if resolution == "locked":
        locked = _locked_versions(lock_constraints)
        off = {
            n: (d["version"], locked[n])
            for n, d in dists.items()
            if n in locked and d["version"] != locked[n]
        }
        assert not off, f"installed versions differ from the lock: {off}"
    print(
        f"{domain} ({resolution}): "
        + ", ".join(
            f"{n} {dists[n]['version']}"
            for n in ("torch", "numpy", "lightning", "wandb", "protobuf")
            if n in dists
        )
    )

    env = _env(venv)
    bin_ = venv / "bin"
    help_text = _run([str(bin_ / f"polyhead-{domain}"), "--help"], env=env)
    assert "fit" in help_text and "test" in help_text
    listing = _run([str(bin_ / "polyhead"), "list"], env=env)
    assert domain in listing and "broken" not in listing, listing

    info = json.loads(
        _run(
            [
                str(py),
                "-c",
                f"import json; from polyhead.{domain}.pipeline import DOMAIN;"
                "print(json.dumps({'tiny': DOMAIN.matrix_args['tiny'], 'metric': DOMAIN.metric}))",
            ],
            env=env,
        )
        .strip()
        .splitlines()[-1]
    )
    work = tmp_path / "work"
    work.mkdir()
    run_args = ["--run.root", str(work / "runs"), "--run.experiment", "packaging", "--run.version", "v0"]
    _run([str(bin_ / f"polyhead-{domain}"), "fit", *info["tiny"], *run_args], cwd=work, env=env)
    _run([str(bin_ / f"polyhead-{domain}"), "test", *info["tiny"], *run_args], cwd=work, env=env)
    metrics = json.loads((work / "runs" / domain / "packaging" / "v0" / "metrics.json").read_text())[
        "metrics"
    ]
    assert info["metric"] in metrics, sorted(metrics)
    assert isinstance(metrics[info["metric"]], (int, float))
