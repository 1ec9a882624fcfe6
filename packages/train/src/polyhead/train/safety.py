"""Opening files without running code from them: checkpoints and pickles.

A pickle (and so a ``torch.save`` file) can name any importable callable and have it called while it is
read: ``torch.load(weights_only=False)`` or ``pickle.load`` on a crafted file runs the attacker's code
before any validation. Everything polyhead reads goes through one of two loaders here:

- :func:`load_checkpoint`: ``torch.load(weights_only=True)`` (tensors, storages, plain containers and the
  types on torch's own allow-list) plus :data:`CHECKPOINT_SAFE_GLOBALS`, exactly the extra types a polyhead
  checkpoint may hold. ``unsafe=True`` (the CLI's ``--run.unsafe_load``) is the explicit opt-in for a
  legacy file the user trusts.
- :func:`restricted_load`: a pickle reader that resolves only the ``(module, name)`` globals it is given;
  :data:`NUMPY_ARRAYS` admits numpy arrays, dtypes and scalars (the keypoint pickles of the Isharah
  format are dicts of such arrays).

Either refuses a file with :class:`UnsafeFileError`, whose message names the file and the global it
would have had to import.
"""

from __future__ import annotations

import io
import pathlib
import pickle
import re
import sys
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "CHECKPOINT_SAFE_GLOBALS",
    "NUMPY_ARRAYS",
    "UnsafeFileError",
    "install_checkpoint_globals",
    "load_checkpoint",
    "register_checkpoint_globals",
    "restricted_load",
]

# Polyhead checkpoints (ctr, cslr, speech and the example task, scanned opcode by opcode) hold only
# tensors, storages, OrderedDict and builtin containers, all on torch's own weights_only list. Paths are
# the one extra: Lightning's callback states and a module's hyper-parameters keep paths when a module is
# built from Python with ``pathlib.Path`` arguments rather than from the CLI's strings.
CHECKPOINT_SAFE_GLOBALS: list[Any] = [
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.WindowsPath,
    pathlib.PureWindowsPath,
]

# numpy arrays, dtypes and scalars in every pickle protocol (protocol 5 uses ``_frombuffer``, protocol 2
# stores bytes through ``_codecs.encode``), numpy 1.x and 2.x module names. None of these calls anything
# but array construction; an object array's elements are still unpickled under the same allow-list.
NUMPY_ARRAYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
    | {("numpy.dtypes", f"{k}DType") for k in ("Float16", "Float32", "Float64", "Int8", "Int16", "Int32")}
    | {("numpy.dtypes", f"{k}DType") for k in ("Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Bool")}
)

_UNSAFE_HINT = "if you trust this file, pass --run.unsafe_load true (Python: unsafe=True)"


class UnsafeFileError(ValueError):
    """A file would import a global outside the allow-list to be read (it may run code): refused.

    Attributes:
        path: the file.
        forbidden: the ``module.name`` it asked for ("" when torch did not say).
    """

    def __init__(self, path: str | Path, forbidden: str, detail: str = "") -> None:
        self.path = Path(path)
        self.forbidden = forbidden
        what = f"the global {forbidden}" if forbidden else "a global"
        msg = (
            f"{path}: refused to load: it needs {what}, which is not an allowed type for this file "
            f"(loading it could run code){': ' + detail if detail else ''}; {_UNSAFE_HINT}"
        )
        super().__init__(msg)


def register_checkpoint_globals(*types: Any) -> None:
    """Allow extra types in polyhead checkpoints (a domain that stores its own picklable classes)."""
    for t in types:
        if t not in CHECKPOINT_SAFE_GLOBALS:
            CHECKPOINT_SAFE_GLOBALS.append(t)
    torch.serialization.add_safe_globals(list(types))


def install_checkpoint_globals() -> None:
    """Register :data:`CHECKPOINT_SAFE_GLOBALS` process-wide, so Lightning's own weights-only loads accept them."""
    torch.serialization.add_safe_globals(list(CHECKPOINT_SAFE_GLOBALS))


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def load_checkpoint(
    path: str | Path,
    *,
    map_location: Any = "cpu",
    unsafe: bool = False,
    mmap: bool = False,
) -> Any:
    """Read a checkpoint without running code from it.

    Args:
        path: the ``.ckpt``/``.pt`` file.
        map_location: as ``torch.load``'s (default CPU).
        unsafe: read with ``weights_only=False`` (full pickle: runs whatever the file names). Only for a
            legacy file the user trusts; a one-line warning says so on stderr.
        mmap: memory-map the tensors instead of reading them (cheap validation of large files).

    Raises:
        FileNotFoundError: no such file.
        IsADirectoryError: ``path`` is a directory.
        UnsafeFileError: the file needs a global outside the allow-list.
        ValueError: not a readable torch file (truncated, not a zip/pickle, ...).
    """
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"checkpoint {p} is a directory, expected a file")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if unsafe:
        print(f"polyhead: warning: loading {p} with full pickle (unsafe load requested)", file=sys.stderr)
        try:
            return torch.load(p, map_location=map_location, weights_only=False, mmap=mmap)
        except Exception as err:
            raise ValueError(f"checkpoint {p} is not readable ({type(err).__name__}: {err})") from None
    try:
        with torch.serialization.safe_globals(list(CHECKPOINT_SAFE_GLOBALS)):
            return torch.load(p, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        text = str(err)
        m = _GLOBAL_RE.search(text)
        if m is not None or "Weights only load failed" in text:
            raise UnsafeFileError(p, m.group(1) if m else "") from None
        raise ValueError(f"checkpoint {p} is not readable (UnpicklingError: {_first_line(text)})") from None
    except Exception as err:
        raise ValueError(
            f"checkpoint {p} is not a readable PyTorch checkpoint ({type(err).__name__}: {_first_line(str(err))})"
        ) from None


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], *, allowed: Collection[tuple[str, str]], path: str) -> None:
        super().__init__(file)
        self._allowed = frozenset(allowed)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise UnsafeFileError(self._path, f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(self._path, "", "it uses persistent ids, which plain data pickles do not")


def restricted_load(
    file: str | Path | IO[bytes] | bytes,
    *,
    allowed: Iterable[tuple[str, str]] = NUMPY_ARRAYS,
    path: str | Path | None = None,
) -> Any:
    """Unpickle ``file`` resolving only the ``(module, name)`` globals in ``allowed``.

    Builtin containers and scalars (dict, list, tuple, set, str, bytes, numbers) need no global and are
    always read. Anything else, e.g. ``os.system`` or a class with a ``__reduce__``, is refused before it
    is imported, so no code of the file runs.

    Args:
        file: a path, an open binary file or the pickle's bytes.
        allowed: the globals to admit (default: :data:`NUMPY_ARRAYS`).
        path: the name used in error messages (default: ``file`` when it is a path).

    Raises:
        UnsafeFileError: the pickle names a global outside ``allowed``.
        ValueError: not a readable pickle (truncated, not a pickle).
        FileNotFoundError / IsADirectoryError: ``file`` is a path that is missing or a directory.
    """
    allowed = frozenset(allowed)
    if isinstance(file, (str, Path)):
        p = Path(file)
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory, expected a pickle file")
        if not p.is_file():
            raise FileNotFoundError(f"pickle not found: {p}")
        with p.open("rb") as f:
            return restricted_load(f, allowed=allowed, path=path or p)
    name = str(path) if path is not None else getattr(file, "name", "<pickle>")
    stream: IO[bytes] = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    try:
        return _RestrictedUnpickler(stream, allowed=allowed, path=name).load()
    except UnsafeFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{name}: not a readable pickle ({type(err).__name__}: {err})") from None
