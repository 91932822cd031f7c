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

When the lock file cannot be created (``SIGMAX_HOME`` missing or read-only) the run goes
ahead without it, with a note: the checks themselves report the broken state directory.
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
        note: why the run goes ahead unlocked (``None`` when locked as intended).
    """

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / LOCK_NAME
        self.note: str | None = None
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            self.note = f"ran without the overlap lock: cannot create {self.path} ({exc.strerror})"
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        except OSError as exc:  # a file system without flock support
            os.close(fd)
            self.note = f"ran without the overlap lock: cannot lock {self.path} ({exc.strerror})"
            return self
        self._fd = fd
        record = json.dumps({"pid": os.getpid(), "started_ms": int(time.time() * 1000)}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
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
