"""The polyhead-bioie wheel installed alone (with polyhead-train and polyhead-attention) into a fresh virtual
environment brings no other domain's dependencies and its CLI imports."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OTHER_DOMAINS_DEPS = (
    "polars",
    "mediapipe",
    "torchaudio",
    "torchvision",
    "soundfile",
    "sentencepiece",
    "pycocotools",
)


@pytest.mark.slow
def test_bioie_wheel_installs_alone(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is required for the packaging test (ci/setup installs it)")
    dist = tmp_path / "dist"
    for pkg in ("polyhead-attention", "polyhead-train", "polyhead-bioie"):
        subprocess.run([uv, "build", "--package", pkg, "--wheel", "-o", str(dist)], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
    wheels = sorted(dist.glob("*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--python", "3.11", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        subprocess.run(
            [uv, "export", "--frozen", "--no-hashes", "--all-packages", "--no-emit-workspace", "--no-dev"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    subprocess.run([uv, "pip", "install", "--python", str(py), "-c", str(constraints), *map(str, wheels)],
                   check=True, capture_output=True, text=True)  # fmt: skip
    probe = (
        "import json, importlib.metadata as md, importlib.util;"
        "import polyhead.bioie.cli, polyhead.bioie.pipeline;"
        "from polyhead.bioie.data.vocabularies import load_vocabularies;"
        "v = load_vocabularies();"
        "print(json.dumps({'dists': sorted(d.metadata['Name'].lower() for d in md.distributions()),"
        "'vocab': {k: len(x) for k, x in v.items()},"
        "'domains': [m for m in ('ctr','speech','cslr','face','lowlight')"
        " if importlib.util.find_spec('polyhead.' + m) is not None]}))"
    )
    info = json.loads(subprocess.run([str(py), "-c", probe], check=True, capture_output=True, text=True).stdout
                      .strip().splitlines()[-1])  # fmt: skip
    assert [d for d in info["dists"] if d.startswith("polyhead")] == [
        "polyhead-attention", "polyhead-bioie", "polyhead-train"]  # fmt: skip
    assert info["domains"] == []
    for dep in OTHER_DOMAINS_DEPS:
        assert dep not in info["dists"], f"{dep} came along with polyhead-bioie"
    assert min(info["vocab"].values()) > 100  # the entity vocabularies ship inside the installed wheels
