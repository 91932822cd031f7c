"""The PostgreSQL ledger member: ``pg_dump -Fc`` out, ``pg_restore`` back, with version checks.

* Dump: a REPEATABLE READ transaction exports its snapshot (``pg_export_snapshot()``);
  the row counts recorded in the manifest and ``pg_dump --snapshot`` both read that one
  snapshot, so the counts describe exactly the dumped rows even while bots write.
* ``pg_dump`` must be at least the server's major version (PostgreSQL's documented rule:
  "pg_dump cannot dump from PostgreSQL servers newer than its own major version"); an
  older or missing one is refused with the fix.
* The password never appears on a command line (it would show in ``ps``): the tools get
  a URL without it and ``PGPASSWORD`` in their environment.
* Restore: ``pg_restore --clean --if-exists --single-transaction --exit-on-error
  --no-owner``: it drops and recreates the dumped tables in one transaction, so a failure
  leaves the database exactly as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from sigmax_cli.backup.archive import ArchiveWriter
from sigmax_cli.backup.members import Change, Files, Member, MemberPlan, Skipped
from sigmax_cli.errors import ChecksumMismatch, ConfigError, IncompatibleArchive, LedgerError
from sigmax_cli.ledger.tables import stored_schema_version, table_counts
from sigmax_cli.settings import redact_url

NAME = "ledger/ledger.pgdump"
_TABLE_DATA = re.compile(r"^\d+;\s+\d+\s+\d+\s+TABLE DATA\s+(\S+)\s+(\S+)\s")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_TOOLS: dict[str, tuple[str, int, str]] = {}  # path -> (path, major, version text), once per process


def _libpq_url(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment that carries the password."""
    if url.startswith("postgresql+"):
        url = "postgresql://" + url.split("://", 1)[1]
    parts = urlsplit(url)
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = quote(unquote(parts.username or ""), safe="")
        parts = parts._replace(netloc=f"{user}@{host}" if user else host)
    return urlunsplit(parts), env


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def _major(num: int) -> int:
    """Comparable major version: 150020 -> 15, 90624 -> 906 (9.6)."""
    return num // 10000 if num >= 100000 else num // 100


def _shown_major(major: int) -> str:
    return f"{major // 100}.{major % 100}" if major >= 900 and major < 1000 else str(major)


class PostgresLedger(Member):
    """The PostgreSQL ledger of ``SIGMAX_DATABASE_URL`` (the whole database ``pg_dump`` sees)."""

    kind = "ledger"
    backend = "postgresql"

    # -- tools ------------------------------------------------------------------------------
    def tool(self, name: str) -> tuple[str, int, str]:
        """Path, comparable major version and version text of ``pg_dump`` / ``pg_restore``.

        Raises:
            ConfigError: the tool is missing (not in ``backup.pg_bin_dir`` or on PATH).
        """
        folder = self.settings.backup.pg_bin_dir
        path = str(Path(folder) / name) if folder else shutil.which(name)
        if path and path in _TOOLS and os.access(path, os.X_OK):
            return _TOOLS[path]
        if not path or not os.access(path, os.X_OK):
            where = f"in {folder}" if folder else "on PATH"
            raise ConfigError(f"{name} was not found {where} (it ships with the PostgreSQL client tools)",
                              "install postgresql-client of your server's major version (apt install "
                              "postgresql-client), or point SIGMAX_BACKUP__PG_BIN_DIR at its bin directory")
        try:
            out = _run([path, "--version"])
        except OSError as exc:
            raise ConfigError(f"cannot run {path} ({exc.strerror})", "check the PostgreSQL client install") from None
        match = _VERSION.search(out.stdout)
        if not match:
            raise ConfigError(f"cannot tell the version of {path} ({out.stdout.strip()[:80]!r})",
                              "check the PostgreSQL client install")
        major, minor = int(match.group(1)), int(match.group(2) or 0)
        comparable = major if major >= 10 else major * 100 + minor
        _TOOLS[path] = (path, comparable, match.group(0).split()[-1])
        return _TOOLS[path]

    def _url(self) -> str:
        from sigmax_cli.ledger.store import sqlite_path

        url = self.settings.ledger_url
        if sqlite_path(url) is not None or url.startswith("sqlite"):
            raise ConfigError("the archive holds a PostgreSQL ledger, but this sigmax uses SQLite",
                              "set SIGMAX_DATABASE_URL to the PostgreSQL database to restore into")
        return url

    def _connect(self, url: str | None = None, autocommit: bool = False):
        import psycopg

        url = url or self._url()
        try:
            return psycopg.connect(_libpq_url(url)[0], password=_password(url), autocommit=autocommit,
                                   connect_timeout=10)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerError(f"cannot reach the ledger at {redact_url(url)} ({reason})",
                              "start the database or fix SIGMAX_DATABASE_URL") from None

    # -- Member -----------------------------------------------------------------------------
    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        url = self._url()
        pg_dump, client, client_text = self.tool("pg_dump")
        out = writer.work / "ledger.pgdump"
        import psycopg

        with self._connect(url) as conn:
            server = _major(conn.info.server_version)
            server_text = (conn.info.parameter_status("server_version") or "?").split()[0]
            if client < server:
                raise ConfigError(f"pg_dump {client_text} is older than the PostgreSQL server ({server_text}) "
                                  "and cannot dump it", f"install postgresql-client-{_shown_major(server)} "
                                  "or newer, or point SIGMAX_BACKUP__PG_BIN_DIR at it")
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            counts = table_counts(conn)
            schema = stored_schema_version(conn)
            dsn, env = _libpq_url(url)
            result = _run([pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--file={out}",
                           f"--dbname={dsn}"], env)
            conn.rollback()
        if result.returncode != 0:
            raise LedgerError(f"pg_dump failed ({_first_error(result.stderr, url)})",
                              "check that the ledger's user may read every table")
        writer.add(NAME, out, {
            "kind": self.kind, "backend": self.backend, "counts": counts, "compression": "pg_dump",
            "source": {"postgresql": server_text, "pg_dump": client_text, "ledger_schema": schema,
                       "database": redact_url(url)},
        }, compress=False)
        return None

    def _toc_tables(self, path: Path, entry: dict[str, Any]) -> set[str]:
        pg_restore, _, client_text = self.tool("pg_restore")
        result = _run([pg_restore, "--list", str(path)])
        if result.returncode != 0:
            reason = _first_error(result.stderr, None)
            if "unsupported version" in reason:
                made_by = entry.get("source", {}).get("pg_dump", "?")
                raise IncompatibleArchive(f"pg_restore {client_text} cannot read the archived dump (made by "
                                          f"pg_dump {made_by}: {reason})",
                                          "install a PostgreSQL client at least as new as the one that dumped it")
            raise ChecksumMismatch(f"pg_restore --list rejects the archived dump ({reason})", "use another backup")
        return {m.group(2) for line in result.stdout.splitlines() if (m := _TABLE_DATA.match(line))}

    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        ((entry, path),) = files
        counts: dict[str, int] = entry.get("counts", {})
        tables = self._toc_tables(path, entry)
        missing = sorted(set(counts) - tables)
        if missing:
            raise ChecksumMismatch(f"the archived dump holds no data for table {missing[0]}", "use another backup")
        detail: dict[str, Any] = {"pg_restore_list": "ok", "tables": len(counts), "rows": sum(counts.values())}
        if deep:
            detail["restore_test"] = self._restore_test(path, counts)
        return detail

    def _restore_test(self, path: Path, counts: dict[str, int]) -> str:
        """Restore into a scratch database on the ledger's server, recount, drop it."""
        from sigmax_cli.ledger.store import sqlite_path

        if sqlite_path(self.settings.ledger_url) is not None:
            return "skipped: no PostgreSQL server configured (SIGMAX_DATABASE_URL)"
        import psycopg
        from psycopg import sql

        url = self._url()
        scratch = f"sigmax_restore_test_{uuid.uuid4().hex[:12]}"
        with self._connect(url, autocommit=True) as admin:
            try:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
            except psycopg.Error as exc:
                raise ConfigError(f"cannot create a scratch database for --restore-test ({_first_line(exc)})",
                                  "grant CREATEDB to the ledger's user, or verify without --restore-test") from None
            try:
                scratch_url = _with_database(url, scratch)
                self._pg_restore(path, scratch_url, clean=False)
                with self._connect(scratch_url) as conn:
                    after = table_counts(conn)
            finally:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
        changed = [t for t, n in counts.items() if after.get(t) != n]
        if changed:
            raise ChecksumMismatch(f"a restore test of the dump gave other row counts for {changed[0]}",
                                   "use another backup")
        return "ok"

    def plan(self, files: Files) -> MemberPlan:
        ((entry, _path),) = files
        url = self._url()
        self.tool("pg_restore")
        with self._connect(url) as conn:
            current = table_counts(conn)
        plan = MemberPlan(self.kind, redact_url(url))
        archived = entry["counts"]
        for table in sorted(set(current) | set(archived)):
            before, after = current.get(table), archived.get(table)
            if after is None:
                plan.changes.append(Change(table, "keep", before, None))
            else:
                plan.changes.append(Change(table, "add" if before is None else "replace", before, after))
        return plan

    def apply(self, files: Files, plan: MemberPlan) -> dict[str, Any]:
        ((entry, path),) = files
        self._pg_restore(path, self._url(), clean=True)
        return {"tables": len(entry["counts"]), "rows": sum(entry["counts"].values())}

    def _pg_restore(self, path: Path, url: str, *, clean: bool) -> None:
        pg_restore, _, _ = self.tool("pg_restore")
        dsn, env = _libpq_url(url)
        args = [pg_restore, "--single-transaction", "--exit-on-error", "--no-owner", "--no-password",
                f"--dbname={dsn}"]
        if clean:
            args[1:1] = ["--clean", "--if-exists"]
        result = _run([*args, str(path)], env)
        if result.returncode != 0:
            raise LedgerError(f"pg_restore failed and rolled back, nothing was changed "
                              f"({_first_error(result.stderr, url)})",
                              "fix the cause (a newer server? missing role?) and restore again")


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client tool: an argument list (no shell), output captured as text."""
    return subprocess.run(args, capture_output=True, text=True, env=env, check=False)  # noqa: S603


def _password(url: str) -> str | None:
    parts = urlsplit(url)
    return unquote(parts.password) if parts.password is not None else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _first_error(stderr: str, url: str | None) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    line = next((x for x in lines if "error" in x.lower()), lines[0] if lines else "no message")
    for prefix in ("pg_dump: error: ", "pg_restore: error: "):
        line = line.replace(prefix, "")
    if url:
        password = _password(url)
        if password:
            line = line.replace(password, "***")
    return line[:300]
