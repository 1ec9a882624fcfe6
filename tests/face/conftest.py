from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT = REPO / "shared" / "face" / "astronaut.jpg"
MESSI = REPO / "shared" / "cslr" / "messi5.jpg"

TINY_MODEL = ["--model.resolution", "32", "--model.channels", "8", "--model.channel_mult", "[1, 2, 2]",
              "--model.z_dim", "16", "--model.num_codes", "32"]  # fmt: skip


@pytest.fixture(scope="session")
def astronaut() -> Path:
    assert ASTRONAUT.is_file(), f"missing test photo {ASTRONAUT}"
    return ASTRONAUT
