"""A non-blocking lock so that cron runs of ``sigmax health`` never overlap.

``SIGMAX_HOME/health.lock`` is locked with ``flock(LOCK_EX | LOCK_NB)`` (POSIX, the
standard library's :mod:`fcntl`; cron is POSIX). The kernel drops the lock when its
process ends, however it ends, so a killed run leaves no stale lock behind. The holder
writes its pid and start time into the file so that a second run can say who holds it.

A second run that finds the lock held does not wait: it exits **3 UNKNOWN** with
"another sigmax health run (pid N, started S ago) still holds LOCK". Why UNKNOWN: the
run could not determine the state, which is exactly what UNKNOWN means in the
monitoring-plugin convention; OK would let a hung health run hide every later problem
(each overlapping cron run would report OK), and CRITICAL would page someone about the
monitor rather than about the bot. The held lock also shows up in the monitoring system
as an UNKNOWN that names the stuck pid.

When the lock file cannot be created, locked or written (``SIGMAX_HOME`` missing or
read-only, a full disk, a file system without ``flock``) the run goes ahead (without the lock
when it could not be taken) and the OS error becomes a CRITICAL result ``health:lock``
(:attr:`RunLock.error`): a health check that cannot write its own state directory has found
a problem, and must say so rather than crash (exit 70) or hide it in a note. One exception:
a ``SIGMAX_HOME`` that does not exist at all (a host that only monitors a shared ledger and
Redis, or a cron line without ``SIGMAX_HOME``) runs unlocked with a note (:attr:`RunLock.note`);
the ``system`` check reports a missing home as CRITICAL when it is selected.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sigmax_cli.errors import SigmaxError

LOCK_NAME = "health.lock"
EXIT_LOCKED = 3
"""Exit code of a run that found another run holding the lock (UNKNOWN; see above)."""


class LockHeld(SigmaxError):
    """Another ``sigmax health`` run holds the lock (exit 3, UNKNOWN).

    Attributes:
        path: the lock file.
        holder: ``{"pid", "started_ms"}`` as the holder wrote them (may be empty).
    """

    exit_code = EXIT_LOCKED

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder
        pid = holder.get("pid")
        fix = f"this run was skipped; if pid {pid} hangs, look at it" if pid else "this run was skipped"
        super().__init__(self.message(), fix)

    def message(self) -> str:
        """One sentence naming the holder, e.g. "another sigmax health run (pid 4242,
        started 12 s ago) still holds /home/x/.local/share/sigmax/health.lock"."""
        pid = self.holder.get("pid")
        started = self.holder.get("started_ms")
        who = []
        if pid:
            who.append(f"pid {pid}")
        if isinstance(started, int):
            who.append(f"started {max(0, int(time.time() - started / 1000))} s ago")
        detail = f" ({', '.join(who)})" if who else ""
        return f"another sigmax health run{detail} still holds {self.path}"


class RunLock:
    """``with RunLock(home) as lock:`` - hold the health lock for the block.

    Raises (on enter):
        LockHeld: another run holds it.

    Attributes:
        error: the OS error met creating, locking or writing the lock file, as one sentence
            naming the file (``None`` when all went well); the run goes ahead, unlocked
            unless only the holder record could not be written.
        note: why the run goes ahead unlocked when ``SIGMAX_HOME`` does not exist.
        locked: whether this run holds the lock.
    """

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_NAME
        self.error: str | None = None
        self.note: str | None = None
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            self.note = f"ran without the overlap lock: {self.path.parent} does not exist"
            return self
        except OSError as exc:
            self.error = f"cannot create the overlap lock {self.path} ({exc.strerror}); ran without it"
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        except OSError as exc:  # a file system without flock support, no locks left
            os.close(fd)
            self.error = f"cannot lock the overlap lock {self.path} ({exc.strerror}); ran without it"
            return self
        self._fd = fd
        record = json.dumps({"pid": os.getpid(), "started_ms": int(time.time() * 1000)}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        except OSError as exc:  # a full disk: the lock holds, only the holder's name is missing
            self.error = f"cannot write the overlap lock {self.path} ({exc.strerror})"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 256, 0)
        data = json.loads(raw.decode() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
