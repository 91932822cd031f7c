"""One venue's history in the ledger: the orders and fills of every run of a mode
(``testnet`` / ``live``) on an exchange, as reconciliation compares them with the
exchange (:mod:`sigmax_cli.brokers.reconcile`). Times are UTC ms since epoch; amounts in
base units, prices in quote currency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select

from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase
from sigmax_cli.ledger.queries.bots import OPEN_ORDER_STATUSES


class VenueQueries(LedgerBase):
    """Queries over the runs of one mode and exchange (a mixin of :class:`~sigmax_cli.ledger.Ledger`).

    Every method takes ``mode`` and ``exchange`` (the runs' ``mode`` and ``exchange`` columns)."""

    def venue_fills(self, mode: str, exchange: str, symbols: Iterable[str]) -> list[dict[str, Any]]:
        """Every fill of ``symbols`` (``fills`` rows), oldest first (by time, then id)."""
        f, r = s.fills, s.runs
        query = (select(f).join(r, f.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, f.c.symbol.in_(list(symbols)))
                 .order_by(f.c.ts_ms, f.c.id))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def venue_last_bar_ms(self, mode: str, exchange: str, timeframe: str, *, not_run: str) -> int | None:
        """Open time of the newest bar an earlier run (not ``not_run``) of ``timeframe`` marked."""
        e, r = s.equity, s.runs
        query = (select(func.max(e.c.ts_ms)).join(r, e.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, r.c.timeframe == timeframe,
                        r.c.run_id != not_run))
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None

    def venue_runs(self, mode: str, exchange: str, run_ids: Iterable[str], *, not_run: str) -> set[str]:
        """Those of ``run_ids`` that ran on this venue, other than ``not_run``."""
        ids = list(run_ids)
        if not ids:
            return set()
        r = s.runs
        query = select(r.c.run_id).where(r.c.run_id.in_(ids), r.c.mode == mode, r.c.exchange == exchange,
                                         r.c.run_id != not_run)
        with self.engine.connect() as conn:
            return {row.run_id for row in conn.execute(query)}

    def venue_active_orders(self, mode: str, exchange: str, *, not_run: str) -> list[dict[str, Any]]:
        """``orders`` rows of other runs that may still trade (new, open, partially filled), oldest first."""
        o, r = s.orders, s.runs
        query = (select(o).join(r, o.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, o.c.status.in_(OPEN_ORDER_STATUSES),
                        o.c.run_id != not_run)
                 .order_by(o.c.created_ms))
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def venue_order_runs(self, mode: str, exchange: str) -> dict[str, str]:
        """Client order id -> the run that placed it, for every order of the venue."""
        o, r = s.orders, s.runs
        query = (select(o.c.client_order_id, o.c.run_id).join(r, o.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange))
        with self.engine.connect() as conn:
            return {row.client_order_id: row.run_id for row in conn.execute(query)}

    def venue_orders(self, mode: str, exchange: str, symbol: str) -> dict[str, dict[str, Any]]:
        """Every order of ``symbol`` by client order id: ``client_order_id``,
        ``exchange_order_id``, ``status``, ``filled`` (base units), ``created_ms``."""
        o, r = s.orders, s.runs
        query = (select(o.c.client_order_id, o.c.exchange_order_id, o.c.status, o.c.filled, o.c.created_ms)
                 .join(r, o.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, o.c.symbol == symbol))
        with self.engine.connect() as conn:
            return {row["client_order_id"]: dict(row) for row in conn.execute(query).mappings()}

    def venue_trades(self, mode: str, exchange: str, symbol: str, since_ms: int) -> dict[str, dict[str, Any]]:
        """Fills of ``symbol`` with a trade id, at or after ``since_ms``, by trade id:
        ``trade_id``, ``client_order_id``, ``side``, ``price``, ``amount``."""
        f, r = s.fills, s.runs
        query = (select(f.c.trade_id, f.c.client_order_id, f.c.side, f.c.price, f.c.amount)
                 .join(r, f.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, f.c.symbol == symbol,
                        f.c.trade_id.is_not(None), f.c.ts_ms >= since_ms))
        with self.engine.connect() as conn:
            return {row["trade_id"]: dict(row) for row in conn.execute(query).mappings()}

    def venue_trade_ids(self, mode: str, exchange: str) -> set[str]:
        """Trade ids of every fill of the venue that has one."""
        f, r = s.fills, s.runs
        query = (select(f.c.trade_id).join(r, f.c.run_id == r.c.run_id)
                 .where(r.c.mode == mode, r.c.exchange == exchange, f.c.trade_id.is_not(None)))
        with self.engine.connect() as conn:
            return {row.trade_id for row in conn.execute(query)}

    def venue_previous_start_ms(self, mode: str, exchange: str, *, not_run: str) -> int | None:
        """When the newest other run of the venue started; ``None`` when there is none."""
        r = s.runs
        query = select(func.max(r.c.started_ms)).where(r.c.mode == mode, r.c.exchange == exchange,
                                                       r.c.run_id != not_run)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None
