"""Opening a ledger database and reading its errors: URLs, engines, outages.

:func:`make_engine` builds the SQLAlchemy engine for a ledger URL (SQLite in WAL mode, or
PostgreSQL over psycopg 3); :func:`is_outage` and :func:`db_reason` tell a database that is
unreachable now (retry later) from one that refuses (a bug or bad data).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.schema import Table

from sigmax_cli.errors import ConfigError, LedgerError
from sigmax_cli.settings import redact_url


def now_ms() -> int:
    """Wall-clock time in UTC ms since epoch."""
    return int(time.time() * 1000)


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for a ledger URL (``sqlite:///PATH`` or ``postgresql://…``).

    SQLite gets WAL journaling, ``synchronous=NORMAL`` and a 5 s busy timeout; its parent
    directory is created. PostgreSQL uses psycopg 3 with a 5 s connect timeout.

    Raises:
        ConfigError: the URL is malformed or names a database sigmax does not support.
    """
    shown = redact_url(url)
    try:
        parsed = make_url(_normalise_url(url))
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"database URL {shown!r} is malformed",
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB in SIGMAX_DATABASE_URL",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database URL {shown!r} uses {backend}, which the ledger does not support",
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
        )
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # private state
        engine = create_engine(parsed, connect_args={"timeout": 5})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised via every sqlite test
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    problem = _pg_url_problem(parsed)
    if problem:
        raise ConfigError(f"database URL {shown!r} is malformed: {problem}",
                          "use postgresql://USER@HOST:PORT/DB[?sslmode=require] in SIGMAX_DATABASE_URL")
    try:
        return create_engine(parsed, connect_args={"connect_timeout": 5}, pool_pre_ping=True)
    except NoSuchModuleError as exc:  # pragma: no cover - psycopg is a dependency
        raise ConfigError(f"no driver for {shown!r} ({exc})", "install psycopg[binary]") from None


def is_outage(exc: BaseException) -> bool:
    """True when a database error means "not reachable now, retry later": a lost or refused
    connection, a terminated session, a database closed to connections, a full disk, a
    locked SQLite file. False for errors that retrying cannot fix (constraint violations,
    SQL errors: bugs or bad data)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def db_reason(exc: BaseException) -> str:
    """The first line of the driver's message (``database or disk is full``), without
    SQLAlchemy's statement dump."""
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0].strip() if text_ else type(exc).__name__


def _is_disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == "53100" or "disk is full" in db_reason(exc).lower() \
        or "no space left" in db_reason(exc).lower()


def describe_open_error(exc: DBAPIError, url: str) -> LedgerError:
    """One sentence for a database error met while opening the ledger, naming its real cause:
    unreachable (start the database), out of space (free some), or refused while the schema
    was being created or upgraded (rights, or a bug: not the database's fault)."""
    shown = redact_url(url)
    reason = db_reason(exc)
    if _is_disk_full(exc):
        return LedgerError(f"the ledger at {shown} is out of disk space ({reason})",
                           "free disk space where the database lives, then rerun")
    if is_outage(exc):
        return LedgerError(f"cannot open the ledger at {shown} ({reason})",
                           "start the database or fix SIGMAX_DATABASE_URL")
    return LedgerError(
        f"the database at {shown} answered, but creating or upgrading the ledger's schema failed ({reason})",
        "check that the database user may create tables there; if it persists, rerun with -v and report it")


@dataclass
class Outage:
    """The ledger database stopped answering.

    Attributes:
        since: ``time.monotonic()`` of the first failed write, seconds.
        since_ms: the same moment, UTC ms.
        reason: the driver's message of the newest failure.
        attempts: failed writes so far.
    """

    since: float
    since_ms: int
    reason: str
    attempts: int = 1


_PG_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
}


def _pg_url_problem(parsed) -> str | None:
    """What libpq would refuse in a PostgreSQL URL before it reaches any server (a port out
    of range, an option it does not know, a value outside an option's choices), as a phrase;
    ``None`` when the URL is well formed. Such a URL is bad input (exit 2), not an
    unreachable database (exit 69)."""
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"port {parsed.port} is not between 1 and 65535"
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    options = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
    try:
        conninfo_to_dict(make_conninfo("", **options))
    except Exception as exc:  # noqa: BLE001 - psycopg.ProgrammingError: libpq refused an option
        return str(exc).strip().splitlines()[0] if str(exc).strip() else "an option libpq does not accept"
    for name, choices in _PG_CHOICES.items():
        if name in options and options[name] not in choices:
            return f"{name}={options[name]} is not one of {', '.join(choices)}"
    if "connect_timeout" in options and not options["connect_timeout"].lstrip("-").isdigit():
        return f"connect_timeout={options['connect_timeout']} is not a number of seconds"
    return None


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; ``None`` for other backends or in-memory."""
    if not url.startswith("sqlite:"):
        return None
    try:
        database = make_url(url).database
    except (ArgumentError, ValueError):
        return None
    return Path(database).expanduser() if database and database != ":memory:" else None


def ledger_fingerprint(url: str) -> str:
    """Which database a URL names, without its password: a SHA-256 hex digest of the backend,
    user, host, port and database (a SQLite file's resolved path). Spill files carry it, so
    that only a bot on the same database writes them in (and ``health`` can tell)."""
    try:
        parsed = make_url(_normalise_url(url))
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            return "sqlite:" + str(Path(parsed.database).expanduser().resolve())
        ident = f"{parsed.get_backend_name()}://{parsed.username or ''}@{parsed.host or ''}:{parsed.port or ''}/" \
                f"{parsed.database or ''}"
    except (ArgumentError, ValueError):
        ident = url
    return hashlib.sha256(ident.encode()).hexdigest()


def dialect_insert(dialect: Dialect, table: Table) -> Any:
    """``INSERT INTO table`` in ``dialect`` (PostgreSQL's or SQLite's), which has
    ``on_conflict_do_update`` / ``on_conflict_do_nothing``."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
