"""Schema migrations: an ordered list; each step upgrades the ledger by one version.

A ledger records the versions applied in ``schema_version``. Opening a ledger applies the
missing steps in one transaction each, so an older ledger upgrades in place and keeps its
rows. A ledger newer than this sigmax is refused (:class:`LedgerError`), never touched.

Rule for future steps: write the DDL as it must be at that version (``op`` style ALTERs,
or explicit ``Table`` definitions), not by pointing at today's :mod:`schema` tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select

from sigmax_cli.errors import LedgerError
from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger import version


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    for table in (s.runs, s.orders, s.fills, s.positions, s.equity, s.events, s.heartbeats):
        table.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    for table in (s.research_items, s.http_cache, s.backups):
        table.create(conn, checkfirst=True)


_V3_RUN_COLUMNS = (("host_id", "VARCHAR(64)"), ("heartbeat_interval_ms", "BIGINT"), ("lost_ms", "BIGINT"),
                   ("lost_acked_ms", "BIGINT"))


def _v3_run_liveness(conn: Connection) -> None:
    """Runs record their host id and heartbeat interval; a run whose bot is gone can be marked
    ``lost`` and the loss acknowledged (:mod:`sigmax_cli.ledger.liveness`). Each column is
    added only when missing: ``_v1`` creates ``runs`` from today's table, which has them."""
    have = {c["name"] for c in inspect(conn).get_columns("runs")}
    for name, sql_type in _V3_RUN_COLUMNS:
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {name} {sql_type}")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "trading ledger: runs, orders, fills, positions, equity, events, heartbeats", _v1),
    Migration(2, "room for research items, HTTP cache validators and backups", _v2),
    Migration(3, "run liveness: host id, heartbeat interval, lost and acknowledged times", _v3_run_liveness),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
if SCHEMA_VERSION != version.SCHEMA_VERSION:  # pragma: no cover - a developer forgot one of the two
    raise RuntimeError("sigmax_cli.ledger.version.SCHEMA_VERSION must equal the newest migration")


def current_version(conn: Connection) -> int:
    """The newest applied version, 0 for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    value = conn.execute(select(s.schema_version.c.version).order_by(s.schema_version.c.version.desc())).first()
    return int(value[0]) if value else 0


def upgrade(engine, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the missing migrations up to ``target``; returns the versions applied.

    Raises:
        LedgerError: the ledger's schema is newer than this sigmax understands.
    """
    with engine.begin() as conn:
        s.schema_version.create(conn, checkfirst=True)
        have = current_version(conn)
    if have > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger has schema version {have}, newer than this sigmax ({SCHEMA_VERSION})",
            "upgrade sigmax before opening this ledger",
        )
    applied: list[int] = []
    for step in MIGRATIONS:
        if have < step.version <= target:
            with engine.begin() as conn:
                step.apply(conn)
                conn.execute(s.schema_version.insert().values(
                    version=step.version, applied_ms=int(time.time() * 1000), description=step.description))
            applied.append(step.version)
    return applied
