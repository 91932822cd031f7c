"""One lock for every backup, prune and restore of a ``SIGMAX_HOME``.

An advisory ``flock(2)`` on ``$SIGMAX_HOME/backup.lock``: the kernel drops it when the
holding process exits or is killed, so a crash never leaves a stale lock (the file itself
stays; it is never deleted, which would let two processes lock two different inodes).
The holder writes its pid, host, command and start time into the file so that the
refusal can say who holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from sigmax_cli.errors import ConfigError, LockHeld

LOCK_NAME = "backup.lock"


class BackupLock:
    """Exclusive, non-blocking lock on ``<home>/backup.lock``. Use as a context manager.

    Args:
        home: the state directory (``SIGMAX_HOME``); created if missing.
        what: what the holder does (``"backup"``, ``"restore"``, ``"prune"``), for messages.

    Raises:
        LockHeld: another process holds the lock (exit code 11).
        ConfigError: the lock file cannot be created (permissions).
    """

    def __init__(self, home: Path, what: str) -> None:
        self.path = Path(home) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`LockHeld` naming the holder (never waits)."""
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {self.path} ({exc.strerror})",
                              "check the permissions of SIGMAX_HOME") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise LockHeld(f"another backup or restore is running ({holder})",
                           f"wait for it to finish, then run the {self.what} again") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                                  "since_ms": int(time.time() * 1000)}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (also happens when the process exits, however it exits)."""
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BackupLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info['what']} by pid {info['pid']} on {info['host']}"
    except (ValueError, KeyError, TypeError, OSError):
        return "holder unknown"
