"""A run's records read back: orders, fills, positions, equity and events by run id."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase


class RecordQueries(LedgerBase):
    """Queries over a run's rows (a mixin of :class:`~sigmax_cli.ledger.Ledger`)."""

    def rows(self, table: str, run_id: str, order_by: Iterable[str] = ()) -> list[dict[str, Any]]:
        """All rows of ``table`` for ``run_id`` as dicts, ordered by ``order_by`` columns."""
        t = s.metadata.tables[table]
        query = select(t).where(t.c.run_id == run_id)
        for col in order_by:
            query = query.order_by(t.c[col])
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count(self, table: str, run_id: str) -> int:
        """Number of rows of ``table`` for ``run_id``."""
        t = s.metadata.tables[table]
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t).where(t.c.run_id == run_id)).scalar_one())

    def equity_summaries(self, run_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per run id with equity rows: ``bars`` (snapshot count), ``first_ms``, ``last_ms``
        (UTC ms) and ``last_equity`` (quote, the newest snapshot), in one query."""
        ids = list(run_ids)
        if not ids:
            return {}
        e = s.equity
        agg = (
            select(e.c.run_id, func.count().label("bars"), func.min(e.c.ts_ms).label("first_ms"),
                   func.max(e.c.ts_ms).label("last_ms"))
            .where(e.c.run_id.in_(ids)).group_by(e.c.run_id).subquery()
        )
        query = select(agg, e.c.equity.label("last_equity")).join(
            e, (e.c.run_id == agg.c.run_id) & (e.c.ts_ms == agg.c.last_ms))
        with self.engine.connect() as conn:
            return {r["run_id"]: dict(r) for r in conn.execute(query).mappings()}
