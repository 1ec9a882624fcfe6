"""Start-up cost: which heavy libraries an import or a ``--help`` pulls in (checked in a fresh interpreter
through ``sys.modules``, so the test does not depend on how loaded the machine is).

Lightning (with torchmetrics, torchvision and scipy behind it) costs seconds to import; W&B, polars,
torchaudio, mediapipe and matplotlib are each a second or more. ``polyhead-<domain> --help`` and the light
platform modules must import none of them; ``fit --help`` needs Lightning but not another domain's
libraries, W&B or mediapipe.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "lightning",
    "wandb",
    "polars",
    "torchaudio",
    "mediapipe",
    "matplotlib",
    "torchvision",
    "scipy",
    "jsonargparse",
    "torchmetrics",
    "torch_geometric",
    "cv2",
    "spacy",
    "onnxruntime",
    "pandas",
    "sklearn",
)
DOMAINS = ("ctr", "cslr", "speech", "bioie", "face", "lowlight")
# Third-party modules only one domain imports: another domain's `fit --help` must not pull them in.
DOMAIN_ONLY = {
    "ctr": ("polars", "onnxruntime"),
    "speech": ("torchaudio", "sentencepiece", "soundfile"),
    "bioie": ("torch_geometric", "bioc", "spacy"),
    "cslr": ("mediapipe", "pose_format"),
    "face": ("mediapipe",),
    "lowlight": ("pycocotools",),
}


def _modules_after(code: str) -> set[str]:
    """The top-level modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        "print('\\n' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env, timeout=300
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _help(domain: str, *argv: str) -> str:
    return (
        f"from polyhead.{domain}.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({list(argv)!r})\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (None, 0), e.code\n"
    )


def test_attention_core_is_light() -> None:
    loaded = _modules_after(
        "import polyhead.attention; polyhead.attention.create_attention('mha', dim=8, num_heads=2)"
    )
    assert "torch" in loaded  # the probe really ran
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_head_analysis_imports_matplotlib_only_to_plot() -> None:
    loaded = _modules_after("import polyhead.attention.analysis")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    loaded = _modules_after(
        "import torch; from polyhead.attention.analysis import plot_head_importance\n"
        "plot_head_importance({'layer': torch.rand(4)})"
    )
    assert "matplotlib" in loaded


def test_platform_light_modules_do_not_import_lightning() -> None:
    code = (
        "import polyhead.train, polyhead.train.safety, polyhead.train.domains, polyhead.train.rundir, "
        "polyhead.train.faults, polyhead.train.experiment, polyhead.train.entry\n"
        "from polyhead.train import PolyheadConfigError, Domain, load_checkpoint, write_atomic"
    )
    loaded = _modules_after(code)
    assert "polyhead" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_platform_lazy_names_resolve() -> None:
    """Every name of polyhead.train's __all__ resolves to the object of the module it lives in."""
    loaded = _modules_after(
        "import polyhead.train as t, importlib\n"
        "for name in t.__all__:\n"
        "    obj = getattr(t, name)\n"
        "    assert getattr(importlib.import_module(f'polyhead.train.{t._LAZY[name]}'), name) is obj, name\n"
        "assert sorted(t._LAZY) == sorted(t.__all__)"
    )
    assert "lightning" in loaded  # run_cli and the callbacks did import it when asked for


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_help_imports_no_heavy_library(domain: str) -> None:
    loaded = _modules_after(_help(domain, "--help"))
    assert "polyhead" in loaded
    assert not loaded & set(HEAVY), f"polyhead-{domain} --help imports {sorted(loaded & set(HEAVY))}"


def test_light_help_names_lightning_cli_subcommands_and_extra_commands() -> None:
    """The light ``--help`` lists the subcommands LightningCLI defines and the domain's extra commands."""
    from lightning.pytorch.cli import LightningCLI

    from polyhead.train.entry import TRAINING_SUBCOMMANDS, domain_help

    assert set(TRAINING_SUBCOMMANDS) == set(LightningCLI.subcommands())

    def extract(argv: list[str]) -> int:
        """keypoints from videos"""
        return 0

    text = domain_help("cslr", {"extract": extract})
    for sub in TRAINING_SUBCOMMANDS:
        assert f"\n  {sub} " in text
    assert "\n  extract      keypoints from videos" in text
    assert text.startswith("usage: polyhead-cslr ")


@pytest.mark.slow
@pytest.mark.parametrize("domain", DOMAINS)
def test_fit_help_imports_only_its_own_domain(domain: str) -> None:
    loaded = _modules_after(_help(domain, "fit", "--help"))
    assert "lightning" in loaded  # the parser is LightningCLI's
    others = {m for d, mods in DOMAIN_ONLY.items() if d != domain for m in mods} - set(DOMAIN_ONLY[domain])
    assert not loaded & others, f"polyhead-{domain} fit --help imports {sorted(loaded & others)}"
    assert "wandb" not in loaded, f"polyhead-{domain} fit --help imports W&B"
