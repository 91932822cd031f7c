"""One lock for every backup, prune and restore of a ``SIGMAX_HOME``.

An advisory ``flock(2)`` on ``$SIGMAX_HOME/backup.lock``: the kernel drops it when the
holding process exits or is killed, so a crash never leaves a stale lock (the file itself
stays; it is never deleted, which would let two processes lock two different inodes).
The holder writes its pid, host, command and start time into the file so that the
refusal can say who holds it.

Several hosts can share one PostgreSQL ledger (DESIGN.md, "Settings"), and a file lock
guards one host only. With a PostgreSQL ledger the lock also takes a session-level advisory
lock in that database (:class:`LedgerLock`): exclusive for a restore, shared for a backup,
so that a restore waits for no one and overwrites no one's dump, while backups from several
hosts still run side by side (``pg_dump`` reads one snapshot). PostgreSQL drops the lock
with the session, so a killed process never leaves it behind either.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError, LockHeld

LOCK_NAME = "backup.lock"
ADVISORY_KEY = 0x5349474D4158_0001
"""The advisory-lock key (bigint) of backups and restores in a PostgreSQL ledger: "SIGMAX" + 1.
Advisory locks are scoped to one database, so two ledgers on one server do not collide."""


class BackupLock:
    """Exclusive, non-blocking lock on ``<home>/backup.lock``. Use as a context manager.

    Args:
        home: the state directory (``SIGMAX_HOME``); created if missing.
        what: what the holder does (``"backup"``, ``"restore"``, ``"prune"``), for messages.
        ledger_url: the ledger's URL; a PostgreSQL one adds the cross-host :class:`LedgerLock`
            (exclusive for ``"restore"``, shared otherwise).

    Raises:
        LockHeld: another process holds the lock, on this host or, through the PostgreSQL
            ledger, on another (exit code 11).
        ConfigError: the lock file cannot be created (permissions).
    """

    def __init__(self, home: Path, what: str, ledger_url: str | None = None) -> None:
        self.path = Path(home) / LOCK_NAME
        self.what = what
        self._fd: int | None = None
        self.ledger = LedgerLock(ledger_url, what) if ledger_url and _is_postgres(ledger_url) else None

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
        if self.ledger is not None:
            try:
                self.ledger.acquire()
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        """Give the lock back (also happens when the process exits, however it exits)."""
        if self.ledger is not None:
            self.ledger.release()
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


def _is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres")


class LedgerLock:
    """A session-level advisory lock on :data:`ADVISORY_KEY` in the PostgreSQL ledger, held by
    a connection of its own for as long as the backup or restore runs.

    The connection's ``application_name`` names the holder (``sigmax restore pid 12 on
    host-a``), so that a refusal on another host can say who holds the lock. When the
    database cannot be reached there is nothing to guard: the lock is skipped and
    :attr:`note` says so (the ledger member then reports the database's error itself).

    Args:
        url: the ledger's ``postgresql://`` URL (``postgresql+psycopg://`` accepted).
        what: ``"restore"`` takes the lock exclusively; anything else shares it.

    Raises (from :meth:`acquire`):
        LockHeld: a restore holds it (or, for a restore, anyone does), with the holder.
    """

    def __init__(self, url: str, what: str) -> None:
        self.url = url
        self.what = what
        self.exclusive = what == "restore"
        self.note: str | None = None
        self._conn: Any = None  # the psycopg connection holding the advisory lock

    def acquire(self) -> None:
        """Take the lock now (never waits) or raise :class:`LockHeld`."""
        import psycopg

        from sigmax_cli.backup.postgres import _libpq_url, _password

        holder = f"sigmax {self.what} pid {os.getpid()} on {socket.gethostname()}"[:63]
        try:
            conn = psycopg.connect(_libpq_url(self.url)[0], password=_password(self.url), autocommit=True,
                                   connect_timeout=10, application_name=holder)
        except psycopg.Error:
            self.note = "the PostgreSQL ledger could not be reached, so other hosts were not locked out"
            _log().warning(self.note)
            return
        function = "pg_try_advisory_lock" if self.exclusive else "pg_try_advisory_lock_shared"
        try:
            row = conn.execute(f"SELECT {function}(%s)", (ADVISORY_KEY,)).fetchone()  # noqa: S608 - fixed names
            got = bool(row and row[0])
            holders = [] if got else _holders(conn)
        except psycopg.Error:
            conn.close()
            self.note = "the PostgreSQL ledger refused the advisory lock, so other hosts were not locked out"
            _log().warning(self.note)
            return
        if not got:
            conn.close()
            who = ", ".join(holders) or "a session that has since ended"
            raise LockHeld(f"another backup or restore holds the shared PostgreSQL ledger ({who})",
                           f"wait for it to finish, then run the {self.what} again")
        self._conn = conn

    def release(self) -> None:
        """Close the lock's connection, which drops the lock."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def _log():
    from sigmax_cli.logs import get_logger

    return get_logger(__name__)


def _holders(conn) -> list[str]:
    """``application_name`` (or pid) of the sessions holding :data:`ADVISORY_KEY`."""
    rows = conn.execute(
        "SELECT a.application_name, l.pid FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = %s AND l.pid <> pg_backend_pid()",
        (ADVISORY_KEY,)).fetchall()
    return [name or f"backend pid {pid}" for name, pid in rows]
