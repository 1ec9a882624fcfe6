"""Safe loading: crafted checkpoints and pickles are refused before any of their code runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from polyhead.train import rundir
from polyhead.train.safety import (
    NUMPY_ARRAYS,
    UnsafeFileError,
    load_checkpoint,
    restricted_load,
)


class _Payload:
    """Pickles as a call to os.system that creates a marker file: the classic crafted pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "MARKER"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": _Payload(marker)}, path)
    return path, marker


def test_crafted_checkpoint_refused_and_runs_no_code(tmp_path: Path) -> None:
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(UnsafeFileError) as exc:
        load_checkpoint(path)
    assert not marker.exists()
    msg = str(exc.value)
    assert str(path) in msg and "system" in msg and "--run.unsafe_load" in msg
    with pytest.raises(ValueError, match="refused to load"):
        rundir.validate_checkpoint(path)
    assert not marker.exists()
    # The explicit opt-in really is a full pickle load (so the refusal above is what protected us).
    load_checkpoint(path, unsafe=True)
    assert marker.exists()


def test_checkpoint_with_allowed_types_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.ckpt"
    state = {"state_dict": {"w": torch.arange(4.0)}, "hyper_parameters": {"cache": Path("/tmp/x"), "n": 3}}
    torch.save(state, path)
    got = load_checkpoint(path, mmap=True)
    assert got["hyper_parameters"]["cache"] == Path("/tmp/x")
    torch.testing.assert_close(got["state_dict"]["w"], torch.arange(4.0))


@pytest.mark.parametrize("kind", ["truncated", "text", "directory", "missing"])
def test_unreadable_checkpoints_are_clear_errors(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "c.ckpt"
    if kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "text":
        path.write_text("hello")
    elif kind == "directory":
        path.mkdir()
    expected = {"missing": FileNotFoundError, "directory": IsADirectoryError}.get(kind, ValueError)
    with pytest.raises(expected, match=r"c\.ckpt"):
        load_checkpoint(path)


def test_crafted_pickle_refused_and_runs_no_code(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "keypoints.pkl"
    path.write_bytes(pickle.dumps({"s1": {"keypoints": _Payload(marker)}}))
    with pytest.raises(UnsafeFileError) as exc:
        restricted_load(path)
    assert not marker.exists()
    assert str(path) in str(exc.value) and "posix.system" in str(exc.value)
    # A class with no __reduce__ of its own is refused too: only the allow-list is importable.
    path.write_bytes(pickle.dumps({"p": Path("/x")}))
    with pytest.raises(UnsafeFileError, match=r"pathlib\.PosixPath"):
        restricted_load(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_pickles_round_trip(tmp_path: Path, protocol: int) -> None:
    rng = np.random.default_rng(0)
    data = {
        f"s{i}": {"keypoints": rng.standard_normal((5 + i, 86, 3)).astype(np.float32), "n": np.int64(i)}
        for i in range(3)
    }
    data["fortran"] = {"keypoints": np.asfortranarray(rng.standard_normal((4, 6)))[:, ::2]}
    path = tmp_path / "k.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    got = restricted_load(path, allowed=NUMPY_ARRAYS)
    assert set(got) == set(data)
    for k, v in data.items():
        np.testing.assert_array_equal(got[k]["keypoints"], v["keypoints"])
        assert got[k]["keypoints"].dtype == v["keypoints"].dtype
    assert got["s2"]["n"] == 2


def test_restricted_load_bad_bytes_and_custom_allow_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="blob: not a readable pickle"):
        restricted_load(b"\x80\x05garbage", path="blob")
    payload = pickle.dumps({"p": Path("/x")})
    assert restricted_load(payload, allowed={("pathlib", "PosixPath")}) == {"p": Path("/x")}
