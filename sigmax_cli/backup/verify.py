"""``backup verify``: prove an archive is whole and restorable before anyone relies on it.

Checks, in order (each refusal is one sentence; see :mod:`sigmax_cli.backup.archive`):

1. structure and manifest: exact tar headers, zero padding, manifest last, its own sha256,
   members as listed, format and ledger schema not newer than this sigmax;
2. every member's sha256 and size, in one sequential pass that also hashes the whole file;
   the whole-file sha256 must equal the one the ledger recorded when the archive was written
   (when the ledger knows the archive), which catches a manifest re-sealed after editing;
3. per member: SQLite ``PRAGMA integrity_check`` and row counts, ``pg_restore --list`` holds
   data for every table, Redis key counts, file checksums;
4. with ``--restore-test``: a real restore into scratch targets (a copy of the SQLite file
   opened by this sigmax's ledger, a scratch PostgreSQL database, staging Redis keys),
   row counts compared, scratch removed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigmax_cli.backup.archive import ArchiveIndex, extract, hash_members, read_index
from sigmax_cli.backup.members import Files, member_for
from sigmax_cli.errors import ChecksumMismatch

SCRATCH_PREFIX = ".sigmax-restore-"
"""Scratch directories in ``SIGMAX_HOME`` where a verify or restore extracts an archive:
``.sigmax-restore-<host tag, 8 hex>-<pid>-<random>``, so that a later run can tell whose it is."""
_SCRATCH_RE = re.compile(r"^\.sigmax-restore-(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?")
_INSTALL_RE = re.compile(r"^\..+\.restore-(?P<pid>\d+)$")  # members.install_file's temporary copy
UNOWNED_STALE_S = 86_400.0
"""A scratch directory without an owner in its name (written by an older sigmax) is removed
once it is a day old: no verify or restore takes that long."""


def _scratch_prefix() -> str:
    from sigmax_cli.ledger.liveness import host_tag

    return f"{SCRATCH_PREFIX}{host_tag()}-{os.getpid()}-"


def clean_stale_scratch(home: Path, now_s: float | None = None) -> list[Path]:
    """Remove what killed verifies and restores left in ``home``: ``.sigmax-restore-*``
    scratch directories (extracted archives, as large as the ledger) and ``.NAME.restore-PID``
    copies of a file being installed. Only those whose owner is gone are removed: the pid in
    the name is not running on this host (a scratch directory of another host is kept); one
    without an owner in its name, once a day old. Returns the paths removed.

    Call it while holding the backup lock (at the start of a backup or restore): no restore of
    this home runs then, and a verify running meanwhile owns a live pid.
    """
    from sigmax_cli.ledger.liveness import host_tag, process_alive

    home = Path(home)
    if not home.is_dir():
        return []
    now = time.time() if now_s is None else now_s
    here = host_tag()
    removed: list[Path] = []
    for entry in home.iterdir():
        name = entry.name
        scratch = _SCRATCH_RE.match(name) if entry.is_dir() and not entry.is_symlink() else None
        install = _INSTALL_RE.match(name) if not scratch and entry.is_file() else None
        if scratch:
            if scratch["pid"] is not None:
                stale = scratch["host"] == here and not process_alive(int(scratch["pid"]))
            else:
                try:
                    stale = now - entry.stat().st_mtime > UNOWNED_STALE_S
                except OSError:
                    stale = False
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        elif install and not process_alive(int(install["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@dataclass
class Opened:
    """A verified archive with its members extracted to a scratch directory (see :func:`opened`)."""

    index: ArchiveIndex
    sha256: str
    files: dict[str, Files]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)


def _step(observer: Any, text: str) -> None:
    if observer is not None:
        observer.step(text)


@contextmanager
def opened(settings: Any, path: Path, *, kinds: list[str] | None = None, deep: bool = False,
           observer: Any = None) -> Iterator[Opened]:
    """Verify ``path`` (steps 1-4 above) and yield it with the ``kinds`` members extracted.

    The scratch directory lies in ``settings.home`` (same file system as the SQLite
    ledger, so a restore can rename into place) and is removed on exit.

    Raises:
        ArchiveNotFound, ChecksumMismatch, IncompatibleArchive: see :func:`read_index`.
    """
    from sigmax_cli.backup.catalog import recorded

    _step(observer, f"reading {Path(path).name}")
    index = read_index(Path(path))
    _step(observer, "checking sha256 of every member")
    sha = hash_members(index)
    row = (recorded(settings) or {}).get(str(index.path.resolve()))
    if row and row.get("sha256") and row["sha256"] != sha:
        raise ChecksumMismatch(f"archive {index.path.name} does not match the sha256 the ledger recorded "
                               "when it was written (it was changed since)",
                               "do not restore from it; use another backup (`sigmax backup list`)")
    home = Path(settings.home)
    home.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=_scratch_prefix(), dir=home))
    try:
        result = Opened(index, sha, {})
        for kind in index.kinds:
            if kinds is not None and kind not in kinds:
                continue
            entries = index.entries(kind)
            files: Files = []
            for n, entry in enumerate(entries):
                files.append((entry, extract(index, entry, scratch / kind / f"{n:05d}")))
            member = member_for(kind, settings, entries[0].get("backend"))
            _step(observer, f"checking {kind}" + (" (restore test)" if deep else ""))
            result.details[kind] = member.check(files, deep=deep)
            result.files[kind] = files
        yield result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_archive` (it raises on any failure, so this is a pass)."""

    path: Path
    sha256: str
    size_bytes: int
    created_ms: int
    tag: str | None
    members: dict[str, dict[str, Any]]
    restore_test: bool
    verified_ms: int
    recorded: bool

    def to_dict(self) -> dict[str, Any]:
        return {"archive": str(self.path), "ok": True, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "created_ms": self.created_ms, "tag": self.tag, "members": self.members,
                "restore_test": self.restore_test, "verified_ms": self.verified_ms, "recorded": self.recorded}


def verify_archive(settings: Any, path: Path, *, restore_test: bool = False, observer: Any = None,
                   record: bool = True) -> VerifyReport:
    """Verify one archive fully and mark it verified in the ledger's ``backups`` table.

    Args:
        settings: the invocation's settings (tools, scratch targets, the ledger to record in).
        path: the archive file.
        restore_test: also restore into scratch targets and recount.
        observer: anything with ``step(text)`` for progress; None for silence.
        record: write ``verified_ms`` (UTC ms) into the ledger when it is reachable.

    Raises:
        ArchiveNotFound (exit 10), ChecksumMismatch (exit 12), IncompatibleArchive (exit 69),
        ConfigError (a tool is missing, no scratch database can be made).
    """
    from sigmax_cli.backup.catalog import record as record_row

    with opened(settings, path, deep=restore_test, observer=observer) as result:
        index = result.index
        verified = int(time.time() * 1000)
        stored = False
        if record:
            stored = record_row(settings, index.path, tag=index.tag, created_ms=index.created_ms,
                                sha256=result.sha256, size=index.size, verified_ms=verified)
        return VerifyReport(index.path, result.sha256, index.size, index.created_ms, index.tag, result.details,
                            restore_test, verified, stored)

