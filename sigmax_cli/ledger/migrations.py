"""Schema migrations: an ordered list; each step upgrades the ledger by one version.

A ledger records the versions applied in ``schema_version``. Opening a ledger applies the
missing steps, so an older ledger upgrades in place and keeps its rows. A ledger newer than
this sigmax is refused (:class:`LedgerError`), never touched.

Many bots may open one fresh ledger at the same moment: creation and every migration run
under one lock (:func:`schema_lock`), so exactly one process creates the schema and the
others find it made. PostgreSQL: a session-level advisory lock on :data:`SCHEMA_LOCK_KEY`,
each step in its own transaction; SQLite: one ``BEGIN IMMEDIATE`` transaction (the
database's write lock) around the whole upgrade.

Rule for future steps: write the DDL as it must be at that version (``op`` style ALTERs,
or explicit ``Table`` definitions), not by pointing at today's :mod:`schema` tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError

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


def _v4_ledger_writes(conn: Connection) -> None:
    """Per open ledger, the sequence of its newest committed batch (lost-COMMIT retries)."""
    from sqlalchemy import BigInteger, Column, MetaData, String, Table

    Table("ledger_writes", MetaData(),
          Column("writer_id", String(64), primary_key=True),
          Column("seq", BigInteger, nullable=False),
          Column("ts_ms", BigInteger, nullable=False)).create(conn, checkfirst=True)


def _v5_fill_fees_as_charged(conn: Connection) -> None:
    """Fills keep their commission in the currency charged (issue 14). Before, a live fill
    whose commission was taken in the base asset stored the fee's quote value (``commission *
    price``) and, for a buy, the amount net of it. Such rows (``fee_currency`` = the symbol's
    base) become ``fee = fee / price`` base units and, for buys, ``amount = amount + fee /
    price`` (the traded amount). Quote and third-asset (BNB) fees, and every paper fill,
    already were in their own currency and are left as they are."""
    pairs = conn.exec_driver_sql("SELECT DISTINCT symbol, fee_currency FROM fills WHERE fee <> 0").all()
    for symbol, currency in pairs:
        if currency != str(symbol).split("/", 1)[0]:
            continue
        # standard SQL: the right-hand sides read the row's old values
        conn.execute(text(
            "UPDATE fills SET fee = fee / price, "
            "amount = CASE WHEN side = 'buy' THEN amount + fee / price ELSE amount END "
            "WHERE symbol = :symbol AND fee_currency = :currency AND fee <> 0 AND price > 0"),
            {"symbol": symbol, "currency": currency})


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "trading ledger: runs, orders, fills, positions, equity, events, heartbeats", _v1),
    Migration(2, "room for research items, HTTP cache validators and backups", _v2),
    Migration(3, "run liveness: host id, heartbeat interval, lost and acknowledged times", _v3_run_liveness),
    Migration(4, "ledger_writes: batch sequence per writer, so a write retried after a lost COMMIT is not doubled",
              _v4_ledger_writes),
    Migration(5, "fills: a base-asset commission in base units, buys' traded amount (fees as charged)",
              _v5_fill_fees_as_charged),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
if SCHEMA_VERSION != version.SCHEMA_VERSION:  # pragma: no cover - a developer forgot one of the two
    raise RuntimeError("sigmax_cli.ledger.version.SCHEMA_VERSION must equal the newest migration")


SCHEMA_LOCK_KEY = 0x5349474D4158_0002
"""The advisory-lock key (bigint) around schema creation and migrations in a PostgreSQL
ledger: "SIGMAX" + 2 (backups and restores use "SIGMAX" + 1, :mod:`sigmax_cli.backup.lock`)."""
SCHEMA_LOCK_TIMEOUT_S = 120.0
"""Seconds a bot waits for another one's schema creation or migration before giving up."""


@contextmanager
def schema_lock(engine, timeout_s: float = SCHEMA_LOCK_TIMEOUT_S) -> Iterator[Connection]:
    """A connection holding the ledger's schema lock, for creation and migrations.

    PostgreSQL: ``pg_try_advisory_lock(SCHEMA_LOCK_KEY)`` polled with back-off (5 ms doubling
    to 250 ms) for at most ``timeout_s`` seconds; released on exit (or with the connection, if
    it is lost). The caller opens its own transactions on the connection. SQLite:
    ``BEGIN IMMEDIATE`` (waits up to the engine's 5 s busy timeout for other writers); the
    caller works inside that one transaction, committed on a normal exit.

    Raises:
        LedgerError: another process held the lock for ``timeout_s`` seconds.
        sqlalchemy.exc.DBAPIError: the database failed (the caller describes it).
    """
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            conn.commit()
            return
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY}).scalar_one():
            conn.commit()
            if time.monotonic() >= deadline:
                raise LedgerError(
                    f"another sigmax has been creating or upgrading the ledger's schema for {timeout_s:g} s "
                    f"(advisory lock {SCHEMA_LOCK_KEY} held)",
                    "wait for it to finish, or find the session holding it in pg_locks, then rerun")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        conn.commit()
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SCHEMA_LOCK_KEY})
                conn.commit()
            except DBAPIError:  # the connection is gone, and the session's lock with it
                pass


def current_version(conn: Connection) -> int:
    """The newest applied version, 0 for an empty database."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    value = conn.execute(select(s.schema_version.c.version).order_by(s.schema_version.c.version.desc())).first()
    return int(value[0]) if value else 0


def upgrade(engine, target: int = SCHEMA_VERSION) -> list[int]:
    """Apply the missing migrations up to ``target``; returns the versions applied.

    A ledger already at ``target`` is only read (no lock, no write: read-only commands and
    read-only files stay so). Otherwise the work runs under :func:`schema_lock`, and the
    version is read again inside it, so concurrent openers of a fresh ledger wait for the
    first one instead of racing it.

    Raises:
        LedgerError: the ledger's schema is newer than this sigmax understands, or another
            process held the schema lock too long.
        sqlalchemy.exc.DBAPIError: the database failed.
    """
    with engine.connect() as conn:
        have = current_version(conn)
    _refuse_newer(have)
    if have >= target:
        return []
    with schema_lock(engine) as conn:
        # PostgreSQL: one transaction per step; SQLite: the lock's own transaction holds them all
        step_txn = conn.begin if conn.dialect.name == "postgresql" else nullcontext
        with step_txn():
            s.schema_version.create(conn, checkfirst=True)
            have = current_version(conn)
        _refuse_newer(have)
        applied: list[int] = []
        for step in MIGRATIONS:
            if have < step.version <= target:
                with step_txn():
                    step.apply(conn)
                    conn.execute(s.schema_version.insert().values(
                        version=step.version, applied_ms=int(time.time() * 1000), description=step.description))
                applied.append(step.version)
    return applied


def _refuse_newer(have: int) -> None:
    if have > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger has schema version {have}, newer than this sigmax ({SCHEMA_VERSION})",
            "upgrade sigmax before opening this ledger",
        )
