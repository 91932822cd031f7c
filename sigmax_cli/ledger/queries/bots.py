"""The bots writing to a ledger: their heartbeats, open orders and newest events
(``sigmax monitor``, ``sigmax panic``). Times are UTC ms since epoch."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, or_, select

from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase

OPEN_ORDER_STATUSES = ("new", "open", "partially_filled")
"""Order statuses that may still trade (``brokers.base.ACTIVE_STATUSES``)."""


class BotQueries(LedgerBase):
    """Heartbeat, open-order and event queries (a mixin of :class:`~sigmax_cli.ledger.Ledger`)."""

    def heartbeats(self, since_ms: int | None = None, runs: Iterable[str] = ()) -> list[dict[str, Any]]:
        """``heartbeats`` rows, newest first. With ``since_ms``: only bots that say
        ``running``, whose newest heartbeat is at or after ``since_ms``, or whose run is one
        of ``runs``; ``None``: every bot."""
        h = s.heartbeats
        query = select(h).order_by(h.c.ts_ms.desc(), h.c.bot_id)
        if since_ms is not None:
            keep = [h.c.status == "running", h.c.ts_ms >= since_ms]
            if ids := list(runs):
                keep.append(h.c.run_id.in_(ids))
            query = query.where(or_(*keep))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def count_heartbeats(self) -> int:
        """Bots that ever wrote a heartbeat to this ledger."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(s.heartbeats)).scalar_one())

    def running_heartbeats(self) -> list[dict[str, Any]]:
        """``heartbeats`` rows whose bot says ``running``."""
        h = s.heartbeats
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(select(h).where(h.c.status == "running")).mappings()]

    def open_order_counts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """Per run id: its orders that may still trade (:data:`OPEN_ORDER_STATUSES`); runs
        without any are absent."""
        ids = list(run_ids)
        if not ids:
            return {}
        o = s.orders
        query = (select(o.c.run_id, func.count()).where(o.c.run_id.in_(ids), o.c.status.in_(OPEN_ORDER_STATUSES))
                 .group_by(o.c.run_id))
        with self.engine.connect() as conn:
            return {run_id: int(n) for run_id, n in conn.execute(query)}

    def open_order_symbols(self) -> list[str]:
        """Symbols with an order of any run that may still trade, sorted."""
        o = s.orders
        query = select(o.c.symbol).distinct().where(o.c.status.in_(OPEN_ORDER_STATUSES)).order_by(o.c.symbol)
        with self.engine.connect() as conn:
            return [symbol for (symbol,) in conn.execute(query)]

    def newest_events(self, run_id: str, limit: int = 5) -> list[dict[str, Any]]:
        """The run's newest ``limit`` events, newest first: ``ts_ms``, ``level``, ``kind``, ``message``."""
        e = s.events
        query = (select(e.c.ts_ms, e.c.level, e.c.kind, e.c.message).where(e.c.run_id == run_id)
                 .order_by(e.c.id.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]
