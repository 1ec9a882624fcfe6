"""A restricted unpickler for the Isharah keypoint pickles: containers and numpy arrays only.

``pickle.load`` runs whatever callable a file names (``os.system``, ``eval``...): a keypoint file from the
internet must not be able to do that. :func:`load_keypoint_pickle` resolves only the globals a pickle of
``{id: {"keypoints": ndarray}}`` needs (numpy's array/scalar reconstruct functions, ``ndarray``, ``dtype``,
and builtin containers) and refuses every other one with the module and name it asked for. Trusted legacy
files that hold other objects can be read with ``unsafe=True`` (``--data.unsafe_load true``).

``polyhead.train`` has no generic restricted unpickler yet; when it gets one, this allow-list moves onto it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

# (module, name) pairs a numpy-array pickle refers to; numpy 2 writes ``numpy._core`` where 1.x wrote
# ``numpy.core`` (numpy 1.26 resolves both).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        *(
            (m, n)
            for m in ("numpy.core.multiarray", "numpy._core.multiarray")
            for n in ("_reconstruct", "scalar")
        ),
        *((m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")),
        ("_codecs", "encode"),  # protocol <= 2 writes an array's bytes as a latin-1 str re-encoded on load
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a keypoint pickle holds only dicts, lists and numpy arrays "
                "(pass --data.unsafe_load true only for a file you trust)"
            )
        return super().find_class(module, name)


def load_keypoint_pickle(path: str | Path, *, unsafe: bool = False) -> Any:
    """Unpickle ``path`` admitting only containers and numpy arrays (any object with ``unsafe=True``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickle, truncated, or (``UnsafePickleError``) a global outside the allow-list;
            the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"keypoint pickle not found: {p}")
    with open(p, "rb") as f:
        try:
            return pickle.load(f) if unsafe else _RestrictedUnpickler(f).load()
        except UnsafePickleError as err:
            raise ValueError(f"{p}: {err}") from None
        except Exception as err:  # truncated or corrupt files raise anything from EOFError to KeyError
            raise ValueError(f"{p}: not a readable pickle ({type(err).__name__}: {err})") from None
