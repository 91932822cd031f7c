"""Light access to the ledger for health checks, through the DB-API drivers directly.

Why not :class:`sigmax_cli.ledger.Ledger` (SQLAlchemy): ``sigmax health`` runs from cron
every few minutes and is benchmarked against a bare ``import typer, rich``; importing
SQLAlchemy alone costs about 0.3 s here, three times that baseline (measured with
``python -X importtime``). The health checks need a handful of plain ``SELECT`` statements,
which the drivers the ledger already uses (``sqlite3`` from the standard library,
``psycopg`` 3 for PostgreSQL) run directly. Opening never creates or migrates anything:
a SQLite file is opened in ``mode=rw``, so a missing ledger is reported, not made.

The queries the checks need are methods of :class:`Reader` (heartbeats, open orders,
newest research item and backup, a write-read probe), so that no SQL lives outside the
ledger package. Table and column names are those of :mod:`sigmax_cli.ledger.schema`; the
health tests write through the real :class:`~sigmax_cli.ledger.Ledger` and read back
through here, so a schema change that breaks a query fails a test.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from sigmax_cli.errors import ConfigError, LedgerError
from sigmax_cli.ledger.version import SCHEMA_VERSION

LEDGER_SCHEMA_VERSION = SCHEMA_VERSION  # the version this sigmax writes
"""The newest ledger schema this sigmax writes (``sigmax_cli.ledger.migrations.SCHEMA_VERSION``,
which cannot be imported without SQLAlchemy; a test keeps the two equal)."""


class Missing(LedgerError):
    """The SQLite ledger file does not exist."""


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL (SQLAlchemy's form: three slashes and a relative
    path, four for an absolute one), ``None`` for other backends and ``:memory:``."""
    if not url.startswith("sqlite:"):
        return None
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        return None
    path = unquote(rest[3:].split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path).expanduser()


def backend(url: str) -> str:
    """``sqlite`` or ``postgresql``.

    Raises:
        ConfigError: any other scheme.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ConfigError(f"database URL scheme {scheme!r} is not supported by the ledger",
                      "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB in SIGMAX_DATABASE_URL")


def connect(url: str, timeout_s: float) -> Any:
    """A DB-API connection to the ledger at ``url``, waiting at most ``timeout_s`` seconds
    to connect (SQLite: for a lock; PostgreSQL: ``connect_timeout``, and every statement
    is cancelled after ``timeout_s`` by ``statement_timeout``).

    Raises:
        ConfigError: unsupported URL scheme.
        Missing: the SQLite file does not exist.
        LedgerError: the database refused or could not be reached (the driver's reason).
    """
    kind = backend(url)
    if kind == "sqlite":
        import sqlite3

        path = sqlite_file(url)
        if path is None:
            raise ConfigError("an in-memory SQLite ledger cannot be checked",
                              "point SIGMAX_DATABASE_URL at a ledger file")
        if not path.exists():
            raise Missing(f"no ledger at {path}", "check SIGMAX_HOME (cron has its own environment) "
                          "or start a bot so that it creates the ledger")
        try:
            return sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=timeout_s)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger at {path} ({exc})", "check the file and its permissions") \
                from None
    import psycopg

    from sigmax_cli.settings import redact_url

    dsn = "postgresql://" + url.split("://", 1)[1]
    try:
        return psycopg.connect(dsn, connect_timeout=max(1, math.ceil(timeout_s)),
                               options=f"-c statement_timeout={int(timeout_s * 1000)}")
    except psycopg.Error as exc:
        raise LedgerError(f"cannot connect to {redact_url(url)} ({_reason(exc)})",
                          "start PostgreSQL or fix SIGMAX_DATABASE_URL") from None


def _reason(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in lines:  # libpq: 'connection to server at "h" (ip), port p failed: <reason>'
        if "failed:" in line:
            return line.rsplit("failed:", 1)[1].strip() or line
    return lines[0] if lines else type(exc).__name__


def query(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` placeholders, converted for psycopg) and return every row.

    Raises:
        LedgerError: the database refused the statement (the driver's reason).
    """
    if _is_pg(conn):
        import psycopg

        errors: type[Exception] = psycopg.Error
        sql = sql.replace("?", "%s")
    else:
        import sqlite3

        errors = sqlite3.Error
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description is not None else []
        finally:
            cur.close()
    except errors as exc:
        raise LedgerError(f"the ledger refused a query ({_reason(exc)})",
                          "check the database, its permissions and free space") from None


def has_table(conn: Any, name: str) -> bool:
    """Whether the ledger has table ``name``."""
    if _is_pg(conn):
        sql = "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
    else:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return bool(query(conn, sql, (name,)))


def schema_version(conn: Any) -> int:
    """The newest migration applied to the ledger; 0 when it has no ``schema_version`` table."""
    if not has_table(conn, "schema_version"):
        return 0
    rows = query(conn, "SELECT max(version) FROM schema_version")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def close(conn: Any) -> None:
    """Roll back anything open and close, ignoring a connection that is already gone."""
    try:
        conn.rollback()
    except Exception:  # noqa: BLE001, S110 - closing a dead connection is not news
        pass
    try:
        conn.close()
    except Exception:  # noqa: BLE001, S110
        pass


def _is_pg(conn: Any) -> bool:
    return type(conn).__module__.startswith("psycopg")


class Reader:
    """A ledger connection for one check: ``with Reader(url, timeout_s) as r: r.query(...)``.

    Raises (on enter): as :func:`connect`.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.conn: Any = None

    def __enter__(self) -> Reader:
        self.conn = connect(self.url, self.timeout_s)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            close(self.conn)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return query(self.conn, sql, params)

    def has_table(self, name: str) -> bool:
        return has_table(self.conn, name)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "postgresql" if _is_pg(self.conn) else "sqlite"

    def lost_runs(self, now_ms: int) -> list[Any]:
        """Mark the ledger's lost runs ``lost`` and return the unacknowledged ones
        (:func:`sigmax_cli.ledger.liveness.sweep`). On a ledger this user may only read,
        the runs are judged without writing; "could not tell" is never "alive".

        Raises:
            LedgerError: the runs cannot be read.
        """
        from sigmax_cli.ledger import liveness

        try:
            found = liveness.sweep(self._execute, self.backend, now_ms)
            self.conn.commit()
            return found
        except LedgerError:
            try:
                self.conn.rollback()
            except Exception:  # noqa: BLE001, S110 - the query below says what is wrong
                pass
        return liveness.sweep(self._execute, self.backend, now_ms, write=False)

    def _execute(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        """:data:`sigmax_cli.ledger.liveness.Execute` on this connection."""
        if _is_pg(self.conn):
            import psycopg

            errors: type[Exception] = psycopg.Error
            sql = sql.replace("?", "%s")
        else:
            import sqlite3

            errors = sqlite3.Error
        try:
            cur = self.conn.cursor()
            try:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall()) if cur.description is not None else [(cur.rowcount,)]
            finally:
                cur.close()
        except errors as exc:
            raise LedgerError(f"the ledger refused a query ({_reason(exc)})",
                              "check the database, its permissions and free space") from None

    # -- the health checks' queries (times UTC ms; amounts base units) ------------------------
    def heartbeat_rows(self) -> list[tuple[Any, ...]] | None:
        """``(bot_id, ts_ms, status, host, pid, run_id)`` of every bot, by bot id; ``None``
        without a heartbeats table."""
        if not self.has_table("heartbeats"):
            return None
        return self.query("SELECT bot_id, ts_ms, status, host, pid, run_id FROM heartbeats ORDER BY bot_id")

    def bot_details(self) -> list[tuple[Any, ...]] | None:
        """``(bot_id, status, detail_json, run_id)`` of every bot, by bot id; ``None`` without
        a heartbeats table."""
        if not self.has_table("heartbeats"):
            return None
        return self.query("SELECT bot_id, status, detail_json, run_id FROM heartbeats ORDER BY bot_id")

    def running_bot_runs(self) -> list[tuple[Any, ...]] | None:
        """``(bot_id, detail_json, timeframe, data_files_json, started_ms, ts_ms, run_id)`` of
        bots that say ``running`` whose run (if any) is ``running`` too, by bot id; ``None``
        without a heartbeats table."""
        if not self.has_table("heartbeats"):
            return None
        return self.query(
            "SELECT h.bot_id, h.detail_json, r.timeframe, r.data_files_json, r.started_ms, h.ts_ms, h.run_id "
            "FROM heartbeats h LEFT JOIN runs r ON r.run_id = h.run_id "
            "WHERE h.status = 'running' AND (r.status IS NULL OR r.status = 'running') ORDER BY h.bot_id")

    def newest_research_ms(self) -> int | None:
        """When the newest research item was first seen; ``None`` when there is none (or no table)."""
        if not self.has_table("research_items"):
            return None
        rows = self.query("SELECT max(first_seen_ms) FROM research_items")
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def newest_backup(self) -> tuple[Any, ...] | None:
        """``(path, created_ms, verified_ms)`` of the newest catalogued backup; ``None`` when
        there is none.

        Raises:
            LookupError: the ledger has no backups table (an older schema).
        """
        if not self.has_table("backups"):
            raise LookupError("backups")
        rows = self.query("SELECT path, created_ms, verified_ms FROM backups ORDER BY created_ms DESC, id DESC LIMIT 1")
        return rows[0] if rows else None

    def open_orders(self, mode: str, exchange: str) -> list[tuple[Any, ...]] | None:
        """``(client_order_id, exchange_order_id, symbol)`` of the orders of ``mode`` and
        ``exchange`` runs that may still trade (new, open, partially filled); ``None`` without
        an orders table."""
        if not self.has_table("orders"):
            return None
        return self.query(
            "SELECT o.client_order_id, o.exchange_order_id, o.symbol FROM orders o JOIN runs r ON r.run_id = o.run_id "
            "WHERE o.status IN ('new', 'open', 'partially_filled') AND r.mode = ? AND r.exchange = ?", (mode, exchange))

    def probe(self, ts_ms: int, token: str) -> bool:
        """Write an ``events`` row (kind ``health.probe``, message ``token``) and read it back in
        one transaction, then roll it back: True when it read back. Nothing stays written.

        Raises:
            LedgerError: the database refused the write or the read.
        """
        self.query("INSERT INTO events (run_id, ts_ms, level, kind, message) VALUES (NULL, ?, 'info', "
                   "'health.probe', ?)", (ts_ms, token))
        back = self.query("SELECT message FROM events WHERE kind = 'health.probe' AND message = ?", (token,))
        self.conn.rollback()
        return bool(back) and back[0][0] == token
