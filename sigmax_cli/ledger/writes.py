"""The ledger's batch writes: buffered rows in one transaction, marked so that a batch
whose COMMIT lost its answer, or a spill file, is written exactly once.

``ledger_writes`` holds, per writer (a :class:`~sigmax_cli.ledger.Ledger` instance, or
``spill:<id>`` for a spill file), the sequence number of its newest committed batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.connection import dialect_insert, now_ms

ROW_TABLES = ("fills", "positions", "equity", "events")


@dataclass
class Batch:
    """A flushed batch: its sequence number, the order rows it held (client order id ->
    the very dict buffered) and how many rows of each table (the first ones buffered)."""

    seq: int
    orders: dict[str, dict[str, Any]]
    counts: dict[str, int]


def mark_written(conn: Connection, writer: str, seq: int) -> None:
    """Record in the caller's transaction that ``writer``'s batch ``seq`` is written."""
    stmt = dialect_insert(conn.dialect, s.ledger_writes).values(writer_id=writer, seq=seq, ts_ms=now_ms())
    conn.execute(stmt.on_conflict_do_update(index_elements=[s.ledger_writes.c.writer_id],
                                            set_={"seq": stmt.excluded.seq, "ts_ms": stmt.excluded.ts_ms}))


def written_seq(conn: Connection, writer: str) -> int | None:
    """The newest batch ``writer`` committed; ``None`` when it committed none."""
    return conn.execute(select(s.ledger_writes.c.seq).where(s.ledger_writes.c.writer_id == writer)).scalar()


def replay(conn: Connection, doc: dict[str, Any]) -> None:
    """Write a spill file's rows in the caller's transaction, once: a file already written
    (its own ``spill:<id>`` mark exists) is skipped, and a batch that was in doubt when it
    was spilled is left out when ``ledger_writes`` shows it committed."""
    mark = f"spill:{doc.get('id')}"
    if doc.get("id") and written_seq(conn, mark) is not None:
        return
    orders = list(doc.get("orders") or [])
    rows = {k: list(doc.get(k) or []) for k in ROW_TABLES}
    doubt = doc.get("in_doubt")
    if doubt:
        seq = written_seq(conn, doubt["writer"])
        if seq is not None and seq >= doubt["seq"]:
            skip = set(doubt.get("orders") or [])
            orders = [o for o in orders if o.get("client_order_id") not in skip]
            for name, n in (doubt.get("counts") or {}).items():
                del rows[name][:n]
    write_rows(conn, orders, rows)
    if doc.get("finish"):
        write_finish(conn, doc["finish"])
        hb = s.heartbeats  # the bot that spilled has ended: its heartbeat must not look like a live one
        conn.execute(update(hb).where(hb.c.run_id == doc["finish"]["run_id"], hb.c.status == "running")
                     .values(status="stopped"))
    if doc.get("id"):
        mark_written(conn, mark, 1)


def _upsert_orders(conn: Connection, rows: list[dict[str, Any]]) -> None:
    stmt = dialect_insert(conn.dialect, s.orders)
    excluded = stmt.excluded  # built once: each access rebuilds the alias
    mutable = ("exchange_order_id", "filled", "average", "fee", "status", "reason", "updated_ms", "price")
    stmt = stmt.on_conflict_do_update(
        index_elements=[s.orders.c.client_order_id],
        set_={c: getattr(excluded, c) for c in mutable},
    )
    conn.execute(stmt, rows)


def write_rows(conn: Connection, orders: list[dict[str, Any]], rows: dict[str, list[dict[str, Any]]]) -> None:
    """Orders (upserted by client order id), then fills, positions, equity, events, each in
    buffer order, inside the caller's transaction."""
    if orders:
        _upsert_orders(conn, orders)
    for name in ROW_TABLES:
        if rows.get(name):
            conn.execute(s.metadata.tables[name].insert(), rows[name])


def write_finish(conn: Connection, finish: dict[str, Any]) -> None:
    """Write a run's final status (``finish``: ``run_id`` and the ``runs`` columns to set)."""
    values = {k: v for k, v in finish.items() if k != "run_id"}
    conn.execute(update(s.runs).where(s.runs.c.run_id == finish["run_id"]).values(**values))
