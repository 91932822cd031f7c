"""Reads of a ledger that never create or migrate it (a dry run, a restore plan): the
database is opened with :func:`~sigmax_cli.ledger.connection.make_engine` alone, a SQLite
file that does not exist is not made, and a missing table reads as empty."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError

from sigmax_cli.errors import LedgerError, SigmaxError
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.connection import db_reason, make_engine, sqlite_path


def recorded_backups(url: str) -> dict[str, dict[str, Any]] | None:
    """Rows of the ``backups`` table by path, oldest first; ``{}`` when the ledger has no such
    table; ``None`` when there is no ledger or it cannot be read."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    try:
        engine = make_engine(url)
    except SigmaxError:
        return None
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("backups"):
                return {}
            rows = conn.execute(select(s.backups).order_by(s.backups.c.id)).mappings().all()
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    return {row["path"]: dict(row) for row in rows}


def fresh_running_heartbeats(url: str, since_ms: int) -> list[dict[str, Any]]:
    """``heartbeats`` rows of bots that say ``running`` and beat at or after ``since_ms``
    (UTC ms); empty when there is no ledger or no such table.

    Raises:
        LedgerError: the ledger exists but cannot be read (the driver's reason).
        ConfigError: the URL is malformed.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return []
    engine = make_engine(url)
    h = s.heartbeats
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("heartbeats"):
                return []
            query = select(h).where(h.c.status == "running", h.c.ts_ms >= since_ms).order_by(h.c.ts_ms.desc())
            return [dict(row) for row in conn.execute(query).mappings()]
    except SQLAlchemyError as exc:
        raise LedgerError(f"the ledger's heartbeats cannot be read ({db_reason(exc)})",
                          "check the database, then plan the restore again") from None
    finally:
        engine.dispose()
