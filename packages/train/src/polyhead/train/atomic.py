"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every file the platform writes into a run directory goes through :func:`write_atomic`: the content is
written to a temporary file *in the same directory* (so the final rename never crosses filesystems and
never degrades to a copy), flushed and fsync-ed, then renamed over the target with ``os.replace`` and the
directory entry fsync-ed. A failed write (disk full, a signal, an error of the writer) removes its temporary
file before the error goes on; a SIGKILL can still leave one, named ``.<name>.<pid>.tmp``, which
:func:`remove_leftovers` deletes at the next start of a run in that directory.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["is_leftover", "remove_leftovers", "temp_path", "write_atomic", "write_text_atomic"]

_LEFTOVER_RE = re.compile(r"^\..+\.\d+\.tmp$")


def temp_path(path: Path) -> Path:
    """The temporary file :func:`write_atomic` uses for ``path`` in this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is the temporary file of an interrupted atomic write."""
    return bool(_LEFTOVER_RE.match(path.name))


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename itself still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Create or replace ``path`` with what ``write(f)`` writes to an open binary file ``f``.

    Args:
        path: the target file; its directory must exist.
        write: writes the content to the given file object.
        fsync: flush the data and the directory entry to disk before returning (default).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: the write or the rename failed (``filename`` is the target); the temporary file is gone
            and an existing ``path`` is unchanged.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (None, str(tmp), tmp):
            err.filename = str(path)  # name the file the user knows, not the temporary one
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """:func:`write_atomic` for a text file."""
    data = text.encode(encoding)
    return write_atomic(path, lambda f: f.write(data))


def remove_leftovers(*directories: Path) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in ``directories`` (not recursive).

    Only call this while holding the run directory's lock: another live writer's temporary file has the
    same shape.

    Returns:
        The files removed.
    """
    removed = []
    for d in directories:
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.is_file() and is_leftover(p):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
