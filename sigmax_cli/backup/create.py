"""``sigmax backup``: write one verified archive of the ledger, Redis keys, models and config."""

from __future__ import annotations

import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigmax_cli.backup.archive import (
    FORMAT,
    FORMAT_VERSION,
    ArchiveWriter,
    archive_name,
    check_tag,
    clean_stale,
    iso_utc,
)
from sigmax_cli.backup.catalog import backups_dir, record
from sigmax_cli.backup.lock import BackupLock
from sigmax_cli.backup.members import KINDS, Skipped, member_for
from sigmax_cli.errors import ConfigError


class NothingToBackUp(ConfigError):
    """No member had anything to save (a fresh ``SIGMAX_HOME`` with no ledger, models or Redis)."""


@dataclass
class BackupResult:
    """A written archive.

    Attributes:
        path: the archive file; ``sha256`` (hex) and ``size_bytes`` of the whole file.
        created_ms: UTC ms, also in the file name and the manifest.
        members: the manifest's member entries (name, kind, size, sha256, counts, source).
        skipped: kinds that had nothing to back up, with the reason.
        verified_ms: UTC ms of the post-write verification; None with ``verify=False``.
        recorded: whether the ledger's ``backups`` table holds the archive now.
    """

    path: Path
    sha256: str
    size_bytes: int
    created_ms: int
    tag: str | None
    reason: str
    members: list[dict[str, Any]]
    skipped: list[Skipped] = field(default_factory=list)
    verified_ms: int | None = None
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"archive": str(self.path), "name": self.path.name, "tag": self.tag, "reason": self.reason,
                "created_ms": self.created_ms, "size_bytes": self.size_bytes, "sha256": self.sha256,
                "verified": self.verified_ms is not None, "verified_ms": self.verified_ms,
                "recorded": self.recorded,
                "members": [{k: m.get(k) for k in ("name", "kind", "size", "raw_size", "counts", "path")}
                            for m in self.members],
                "skipped": [{"kind": s.kind, "reason": s.reason} for s in self.skipped]}


def create_backup(settings: Any, *, tag: str | None = None, out_dir: Path | None = None,
                  include: list[str] | None = None, verify: bool = True, reason: str = "manual",
                  observer: Any = None, locked: bool = False, skip_empty: bool = False,
                  record_it: bool = True) -> BackupResult:
    """Write one archive atomically, verify it, record it in the ledger.

    Args:
        settings: the invocation's settings (ledger URL, Redis, home, ``backup`` section).
        tag: a label in the file name and manifest (see :func:`~sigmax_cli.backup.archive.check_tag`).
        out_dir: the directory of the archive; default ``backup.dir`` or ``<home>/backups``.
        include: member kinds (``ledger``, ``redis``, ``models``, ``config``); None means all
            of them, skipping those with nothing to back up. A kind named here that has
            nothing to back up (no Redis configured, no ledger yet) is an error.
        verify: re-read the written archive (checksums, integrity_check / pg_restore --list).
        reason: ``manual`` or ``pre-restore`` (recorded in the manifest).
        observer: anything with ``step(text)``, for progress.
        locked: the caller already holds the :class:`BackupLock` (a restore's safety backup).
        skip_empty: kinds in ``include`` with nothing to back up are skipped, not an error.
        record_it: record the archive in the ledger's ``backups`` table (a restore's safety
            backup leaves that to the restore: the ledger is about to be replaced).

    Raises:
        LockHeld: another backup or restore runs (exit 11).
        ConfigError: bad tag or include, a tool missing or too old.
        NothingToBackUp: no member had anything to save.
        LedgerError: the ledger cannot be read.
    """
    from sigmax_cli import __version__
    from sigmax_cli.ledger.migrations import SCHEMA_VERSION

    tag = check_tag(tag)
    kinds = list(include) if include is not None else list(KINDS)
    directory = Path(out_dir) if out_dir else backups_dir(settings)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory", "pass a directory to --out")
    ledger_url = settings.ledger_url if "ledger" in kinds else None
    with nullcontext() if locked else BackupLock(settings.home, "backup", ledger_url):
        clean_stale(directory)
        from sigmax_cli.backup.verify import clean_stale_scratch

        clean_stale_scratch(settings.home)  # extracted archives of verifies/restores killed half-way
        created = int(time.time() * 1000)
        while (directory / archive_name(created, tag)).exists():
            created += 1
        skipped: list[Skipped] = []
        try:
            writer_cm = ArchiveWriter(directory, archive_name(created, tag), settings.backup.compression_level)
            with writer_cm as writer:
                for kind in kinds:
                    if observer is not None:
                        observer.step(f"backing up {kind}")
                    skip = member_for(kind, settings).dump(writer)
                    if skip is not None:
                        if include is not None and not skip_empty:
                            raise ConfigError(f"nothing to back up for {kind}: {skip.reason}",
                                              f"drop {kind} from --include")
                        skipped.append(skip)
                if not writer.entries:
                    raise NothingToBackUp("there is nothing to back up (" + "; ".join(s.reason for s in skipped) + ")",
                                      "run sigmax first, or check --home / SIGMAX_DATABASE_URL")
                ledger = next((e for e in writer.entries if e["kind"] == "ledger"), None)
                manifest = {
                    "format": FORMAT, "format_version": FORMAT_VERSION, "sigmax_version": __version__,
                    "created_ms": created, "created_utc": iso_utc(created), "host": socket.gethostname(),
                    "tag": tag, "reason": reason, "includes": kinds,
                    "skipped": [{"kind": s.kind, "reason": s.reason} for s in skipped],
                    "ledger_backend": ledger["backend"] if ledger else None,
                    "ledger_schema_version": (ledger["source"].get("ledger_schema") if ledger else None),
                    "sigmax_schema_version": SCHEMA_VERSION,
                }
                if observer is not None:
                    observer.step("writing the manifest")
                written = writer.commit(manifest)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise ConfigError(f"the backup failed, no archive was written ({exc.strerror}{where})",
                              f"check free space and permissions of {directory} and SIGMAX_HOME") from None
        result = BackupResult(written.path, written.sha256, written.size, created, tag, reason,
                              written.manifest["members"], skipped)
        if verify:
            from sigmax_cli.backup.verify import opened

            with opened(settings, written.path, observer=observer):
                result.verified_ms = int(time.time() * 1000)
        if record_it:
            result.recorded = record(settings, written.path, tag=tag, created_ms=created, sha256=written.sha256,
                                     size=written.size, verified_ms=result.verified_ms)
    return result
