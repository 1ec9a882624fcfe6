"""One writer per run directory: ``<run dir>/.lock`` held for the whole subcommand.

Two ``fit`` processes in one run directory interleave CSV rows, write one W&B run id from two processes
and race for ``last.ckpt``. The lock file holds an exclusive ``flock`` for the life of the process and
records the owner's pid, host and command, so a second writer is refused with a message naming the owner.

Stale locks: the kernel drops a ``flock`` when its process dies (also on SIGKILL), so on the same host a
lock file left by a dead process is simply taken over. A lock written from another host (a shared
filesystem, where ``flock`` may not reach across machines) is honoured while it exists; its message says
to delete the file once that process is known to be gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from polyhead.train.faults import RunLockedError

__all__ = ["LOCK_FILE", "RunLock"]

LOCK_FILE = ".lock"


class RunLock:
    """Exclusive lock on a run directory (creates the directory).

    Args:
        run_dir: the run directory.
        command: what the owner runs (shown to a refused second writer).
    """

    def __init__(self, run_dir: Path, *, command: str = "") -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def owner(self) -> dict[str, Any]:
        """The recorded owner of the lock file ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`~polyhead.train.faults.RunLockedError`."""
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(20):  # retry when the file is replaced under us by a releasing owner
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refusal(self.owner()) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous owner unlinked it between our open and flock: try the new file
                os.close(fd)
                continue
            owner = self.owner()
            if owner and owner.get("host") != host and owner.get("pid") is not None:
                # flock does not reach across hosts on every shared filesystem: trust the record.
                os.close(fd)
                raise self._refusal(owner, foreign=True)
            # Same host and the flock is ours: any recorded owner is dead (the kernel dropped its flock).
            record = {
                "pid": os.getpid(),
                "host": host,
                "command": self.command or " ".join(sys.argv),
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
            self._fd = fd
            return self
        raise RunLockedError(f"run directory {self.run_dir}: could not take {self.path} (it keeps changing)")

    def _refusal(self, owner: dict[str, Any], *, foreign: bool = False) -> RunLockedError:
        who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
        if owner.get("command"):
            who += f" ({owner['command']})"
        msg = f"run directory {self.run_dir} is in use by {who}; wait for it or choose another --run.version"
        if foreign:
            msg += f"; if that process is gone, delete {self.path}"
        return RunLockedError(msg)

    def release(self) -> None:
        """Drop the lock and remove the lock file (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # unlinked while still holding the flock: no one else owns it
            self.path.unlink(missing_ok=True)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
