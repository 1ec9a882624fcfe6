"""What can go wrong in a run that is not a bug, and the one line and exit code each gives.

``polyhead-<domain>`` turns these into one ``polyhead-<domain>: error: ...`` line on stderr and an exit
code, never a traceback (``POLYHEAD_TRACEBACK=1`` prints it too, for debugging):

====  =====================================================================================
code  meaning
====  =====================================================================================
2     configuration or input problem (bad value, missing or wrong file, no trained checkpoint)
3     training diverged (non-finite loss or gradients beyond ``--run.skip_nonfinite_steps``)
73    the run directory cannot be written (read-only filesystem, permissions)
74    I/O error while writing (disk full, quota); the previous checkpoint is kept
75    the run directory is in use by another process (lock held)
130   interrupted (Ctrl-C); ``last.ckpt`` saved
143   terminated (SIGTERM); ``last.ckpt`` saved
====  =====================================================================================
"""

from __future__ import annotations

import errno
import os
import tempfile
from enum import IntEnum
from pathlib import Path

__all__ = [
    "DivergenceError",
    "ExitCode",
    "PolyheadConfigError",
    "PolyheadFault",
    "RunDirNotWritable",
    "RunLockedError",
    "check_writable",
    "describe_os_error",
]


class ExitCode(IntEnum):
    CONFIG = 2
    DIVERGED = 3
    NOT_WRITABLE = 73
    IO_ERROR = 74
    LOCKED = 75
    INTERRUPTED = 130
    TERMINATED = 143


class PolyheadFault(Exception):
    """A fault with its own exit code and a one-line message."""

    exit_code: int = ExitCode.IO_ERROR


class PolyheadConfigError(PolyheadFault):
    """A configuration or input problem found before training started."""

    exit_code = ExitCode.CONFIG


class DivergenceError(PolyheadFault):
    """The training loss or gradients became non-finite more often than allowed."""

    exit_code = ExitCode.DIVERGED


class RunDirNotWritable(PolyheadFault):
    """The run directory (or the nearest existing folder above it) cannot be written."""

    exit_code = ExitCode.NOT_WRITABLE


class RunLockedError(PolyheadFault):
    """Another live process writes into the run directory."""

    exit_code = ExitCode.LOCKED


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_INPUT = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}


def describe_os_error(err: OSError) -> tuple[int, str]:
    """The exit code and one-line description of an ``OSError`` that ended a run."""
    where = f" {err.filename}" if err.filename else ""
    reason = err.strerror or str(err)
    if err.errno in _DISK_FULL:
        return ExitCode.IO_ERROR, f"disk full while writing{where} ({reason})"
    if err.errno in _NOT_WRITABLE:
        return ExitCode.NOT_WRITABLE, f"cannot write{where} ({reason})"
    if err.errno in _INPUT:
        return ExitCode.CONFIG, f"{reason}:{where}" if where else reason
    return ExitCode.IO_ERROR, f"I/O error on{where} ({reason})"


def _create_probe(directory: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=".polyhead-write-probe-", dir=directory)
    os.close(fd)
    os.unlink(name)


def check_writable(path: Path) -> None:
    """Fail early if ``path`` (a directory, possibly not created yet) could not be written.

    Creates and removes one empty temporary file in ``path`` or its nearest existing ancestor, so nothing
    is left behind, and a read-only filesystem or missing permission is found before any work.

    Raises:
        RunDirNotWritable: with the folder and the reason.
        PolyheadConfigError: an ancestor of ``path`` is a file.
    """
    anchor = path
    while not anchor.exists():
        if anchor.parent == anchor:
            break
        anchor = anchor.parent
    if anchor.exists() and not anchor.is_dir():
        raise PolyheadConfigError(f"run directory {path}: {anchor} is a file, expected a directory")
    try:
        _create_probe(anchor)
    except OSError as err:
        reason = err.strerror or str(err)
        raise RunDirNotWritable(
            f"run directory {path} is not writable: {anchor}: {reason} (choose another --run.root)"
        ) from None
