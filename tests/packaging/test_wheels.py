"""Packaging: build the wheels and install polyhead-train alone into a fresh virtual environment."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_polyhead_train_installs_alone(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required for the packaging test (ci/setup installs it)")
    dist = tmp_path / "dist"
    for pkg in ("polyhead-attention", "polyhead-train"):
        subprocess.run(
            [uv, "build", "--package", pkg, "--wheel", "-o", str(dist)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    wheels = sorted(dist.glob("*.whl"))
    assert [w.name.split("-")[0] for w in wheels] == ["polyhead_attention", "polyhead_train"]

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", "3.11", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    # Pin the stack to the workspace lock so the fresh environment resolves like CI (from uv's cache).
    constraints = tmp_path / "constraints.txt"
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--all-packages", "--no-emit-workspace", "--no-dev"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    constraints.write_text(exported)
    subprocess.run(
        [uv, "pip", "install", "--python", str(py), "-c", str(constraints), *map(str, wheels)],
        check=True,
        capture_output=True,
        text=True,
    )
    probe = (
        "import importlib.util, json, importlib.metadata as md, polyhead.train, polyhead.attention;"
        "from polyhead.train import run_cli;"
        "print(json.dumps({'dists': sorted(d.metadata['Name'].lower() for d in md.distributions()),"
        "'domains': [m for m in ('ctr','speech','cslr','bioie','face','lowlight')"
        " if importlib.util.find_spec('polyhead.' + m) is not None]}))"
    )
    out = subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    polyhead_dists = [d for d in info["dists"] if d.startswith("polyhead")]
    assert polyhead_dists == ["polyhead-attention", "polyhead-train"]
    assert info["domains"] == []
    for domain_dep in ("polars", "mediapipe", "torchaudio", "sentencepiece"):
        assert domain_dep not in info["dists"], f"{domain_dep} came along with polyhead-train"
    cli = subprocess.run([str(venv / "bin" / "polyhead"), "list"], capture_output=True, text=True, check=True)
    assert "No polyhead domain package is installed" in cli.stdout
