"""The SQLite ledger as a backup member: copied with SQLite's online backup API, checked
with ``PRAGMA integrity_check`` and a test restore, and restored by replacing the file."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from sigmax_cli.backup.archive import ArchiveWriter
from sigmax_cli.backup.members import Change, Files, Member, MemberPlan, Skipped, install_file
from sigmax_cli.errors import ChecksumMismatch, ConfigError, IncompatibleArchive, LedgerError
from sigmax_cli.ledger.tables import stored_schema_version, table_counts


class SqliteLedger(Member):
    """The SQLite ledger: copied with the online backup API, swapped back with ``os.replace``."""

    kind = "ledger"
    backend = "sqlite"
    NAME = "ledger/ledger.sqlite.zst"

    def _path(self) -> Path:
        from sigmax_cli.ledger.store import sqlite_path

        path = sqlite_path(self.settings.ledger_url)
        if path is None:
            raise ConfigError("the archive holds a SQLite ledger, but this sigmax uses PostgreSQL",
                              "unset SIGMAX_DATABASE_URL to restore into the SQLite ledger of SIGMAX_HOME")
        return path

    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        src = self._path()
        if not src.exists():
            return Skipped(self.kind, f"there is no ledger at {src} yet")
        copy = writer.work / "ledger.sqlite"
        try:
            with closing(sqlite3.connect(src, timeout=30)) as source, closing(sqlite3.connect(copy)) as dest:
                source.backup(dest)  # one step (pages=-1): a consistent snapshot, WAL included
                counts = table_counts(dest)
                schema = stored_schema_version(dest)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot back up the SQLite ledger {src} ({exc})",
                              "check the file; `sqlite3 ledger.db 'PRAGMA integrity_check'` tells more") from None
        writer.add(self.NAME, copy, {
            "kind": self.kind, "backend": self.backend, "counts": counts,
            "source": {"sqlite": sqlite3.sqlite_version, "ledger_schema": schema, "path": str(src)},
        })
        return None

    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        from sigmax_cli.ledger.migrations import SCHEMA_VERSION

        ((entry, path),) = files
        try:
            with closing(sqlite3.connect(path)) as conn:
                result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
                counts = table_counts(conn)
                schema = stored_schema_version(conn)
        except sqlite3.DatabaseError as exc:
            raise ChecksumMismatch(f"the archived SQLite ledger cannot be read ({exc})",
                                   "use another backup") from None
        if result != ["ok"]:
            raise ChecksumMismatch(f"the archived SQLite ledger fails integrity_check ({result[0]})",
                                   "use another backup")
        if counts != entry.get("counts"):
            raise ChecksumMismatch("the archived SQLite ledger's row counts differ from its manifest",
                                   "use another backup")
        if schema is not None and schema > SCHEMA_VERSION:
            raise IncompatibleArchive(f"the archived ledger has schema version {schema}, newer than this "
                                      f"sigmax ({SCHEMA_VERSION})", "upgrade sigmax to restore it")
        detail: dict[str, Any] = {"integrity_check": "ok", "rows": sum(counts.values()), "tables": len(counts)}
        if deep:
            detail["restore_test"] = self._restore_test(path, counts)
        return detail

    def _restore_test(self, path: Path, counts: dict[str, int]) -> str:
        """Open a copy with this sigmax's Ledger (runs migrations) and recount every table."""
        from sigmax_cli.ledger import Ledger

        scratch = path.with_name(path.name + ".restore-test")
        shutil.copyfile(path, scratch)
        try:
            with Ledger(f"sqlite:///{scratch}", create=False):
                pass
            with closing(sqlite3.connect(scratch)) as conn:
                after = table_counts(conn)
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{scratch}{suffix}").unlink(missing_ok=True)
        changed = [t for t, n in counts.items() if after.get(t) != n]
        if changed:
            raise ChecksumMismatch(f"a restore test of the SQLite ledger lost rows of {changed[0]}",
                                   "use another backup")
        return "ok"

    def plan(self, files: Files) -> MemberPlan:
        ((entry, _path),) = files
        target = self._path()
        current: dict[str, int] = {}
        if target.exists():
            try:
                with closing(sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
                    current = table_counts(conn)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read the current ledger {target} ({exc})",
                                  "check the file, or move it aside and restore again") from None
        plan = MemberPlan(self.kind, str(target))
        archived = entry["counts"]
        for table in sorted(set(current) | set(archived)):
            before, after = current.get(table), archived.get(table)
            action = "add" if before is None else "delete" if after is None else "replace"
            plan.changes.append(Change(table, action, before, after))
        if not target.exists():
            plan.notes.append("no ledger there yet: the archived one is put in place")
        return plan

    def apply(self, files: Files, plan: MemberPlan) -> dict[str, Any]:
        ((entry, path),) = files
        target = self._path()
        if target.exists():
            try:  # fold the WAL into the old file, so no stale -wal can be replayed onto the new one
                with closing(sqlite3.connect(target, timeout=10)) as conn:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise LedgerError(f"the current ledger {target} is busy ({exc})",
                                  "stop every process that uses it and restore again") from None
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        install_file(path, target)
        return {"tables": len(entry["counts"]), "rows": sum(entry["counts"].values())}


