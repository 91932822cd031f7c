"""Reconciliation: the exchange's orders, trades and balances against the ledger.

A live run reconciles once before its first bar (:meth:`Reconciler.at_start`) and then
every ``live.reconcile_every_ticks`` bars (:meth:`Reconciler.periodic`).

At start, for the run's mode (``testnet`` / ``live``) and exchange:

1. runs of this mode and exchange whose bot is gone (killed, SIGKILL, power loss) are
   marked ``lost`` (:meth:`Ledger.mark_lost_runs`; ``start_run`` already did) and listed
   as ``failed_runs`` while unacknowledged;
2. every order the ledger holds as active (``new``, ``open``, ``partially_filled``) is
   looked up on the exchange by client order id: found, it is taken over by the broker
   (still active) or written down final with the trades it got meanwhile; not found, it is
   polled until its request can no longer land and then recorded ``rejected`` ("never
   reached the exchange"). An order is never sent twice: nothing here creates orders;
3. the exchange's open orders of the run's symbols that the ledger does not know are
   adopted when their client order id is a sigmax one (``sx-...``: placed by a run that
   died before the ledger heard back), otherwise cancelled or adopted as
   ``live.unknown_orders`` says;
4. orders of sigmax of the last 24 h (``fetch_orders``; Binance lists at most 24 h at a
   time) that the ledger lacks are recovered with their trades (orders are written to the
   ledger before they are sent, so this only catches a failed ledger write);
5. the ledger is compared with the exchange in both directions, for the last 24 h of
   each symbol (:meth:`Reconciler.compare`): orders by client order id (a second exchange
   order under a client order id the ledger holds with another exchange id is a duplicate;
   a ledger order the exchange does not list; an executed quantity that differs) and trades
   by trade id (``fetch_my_trades``: a trade of a sigmax order the ledger lacks; a ledger
   fill the exchange does not have). Every difference is reported (``reconcile.discrepancy``,
   critical), none is "fixed" in silence;
6. positions carried over from earlier runs (a replay of the ledger's fills) are checked
   against the exchange's balances, both ways (:meth:`Reconciler.cap_to_balances`): a
   position larger than the balance is cut to it, a balance larger than the position is
   reported (coins held outside sigmax, or fills the ledger lacks).

Trades found for orders of earlier runs are written to the ledger under the run that
placed the order (each trade once, by trade id), so the carried positions include them.

Periodically: unknown open orders (cancel or adopt), the run's orders the broker lost
track of, trades since the last check that the broker has not reported (handed to the
engine as fills through the broker), the same two-way comparison of orders and trades
since the last check, and the run's book against the exchange balances in both
directions: the book holding more than the account (any asset), and, for the base assets
of the run's symbols (which no other run moves), any change of the account that the run's
own fills do not explain (``exchange - book`` moved from where it was when the book was
seeded: an extra fill, a deposit or a withdrawal). The quote is a sub-account of a balance
other runs may share, so only its first direction is checked. Balances are compared on a
fresh read taken after the trades were taken in, and not at all when a trade arrived
meanwhile (the next check does it). Quantities are compared within half a market step.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from sigmax_cli.brokers.live import CLIENT_ID_PREFIX, ClockSkew, LiveBroker
from sigmax_cli.brokers.reconcile.balances import BalanceCheck
from sigmax_cli.brokers.reconcile.compare import TwoWayComparison
from sigmax_cli.brokers.reconcile.report import (  # noqa: F401 - re-exported
    BALANCE_UNIT,
    RECOVER_WINDOW_MS,
    TRADE_LOOKBACK_MS,
    TRADE_PAGE,
    TRADE_PAGES,
    Emit,
    ReconcileReport,
)
from sigmax_cli.errors import AuthenticationError, SigmaxError
from sigmax_cli.logs import get_logger
from sigmax_cli.model import Fill, Order
from sigmax_cli.portfolio import Portfolio, Position

if TYPE_CHECKING:
    from sigmax_cli.ledger import Ledger

log = get_logger(__name__)


class Reconciler(TwoWayComparison, BalanceCheck):
    """Compares the exchange with the ledger and the broker (see the module docstring).

    Args:
        broker: the run's live broker.
        ledger: the open ledger; the run must already be started in it.
        run_id, mode, exchange_id: this run; earlier runs count when mode and exchange match.
        symbols: the run's symbols (open orders of other symbols are left alone).
        unknown_orders: ``cancel`` or ``adopt`` open orders no sigmax run placed.
        emit: records an event.
    """

    def __init__(self, broker: LiveBroker, ledger: Ledger, *, run_id: str, mode: str, exchange_id: str,
                 symbols: list[str], unknown_orders: str = "cancel", emit: Emit | None = None) -> None:
        self.broker = broker
        self.ledger = ledger
        self.run_id = run_id
        self.mode = mode
        self.exchange_id = exchange_id
        self.symbols = list(symbols)
        self.unknown_orders = unknown_orders
        self.emit = emit or (lambda level, kind, message, data: None)
        self._run_of: dict[str, str] = {}   # client order id -> run id in the ledger
        self._last_trades_ms: int | None = None
        self._reported: set[str] = set()
        self._baseline: dict[str, float] = {}   # asset -> exchange total - book, when the run's book was seeded
        self._order_cids: dict[str, str] = {}   # exchange order id -> client order id (orders looked up once)

    # ------------------------------------------------------------------ start
    def at_start(self) -> ReconcileReport:
        """Reconcile before the first bar. Exchange failures are reported, not raised,
        except wrong keys or clock (:class:`AuthenticationError`, :class:`ClockSkew`)."""
        broker, ledger = self.broker, self.ledger
        now = broker.clock()
        report = ReconcileReport(now, "start")
        ledger.flush()
        report.failed_runs = self._close_dead_runs()
        for run_id in report.failed_runs:
            self.emit("warning", "reconcile.dead_run", f"run {run_id} stopped without finishing (its bot is "
                      "gone): marked lost, its orders resumed here", {"run_id": run_id})
        self._run_of = self._ledger_order_runs()
        broker.seen_trades.update(self._ledger_trade_ids())
        for row in self._ledger_active():
            self._guard(report, f"order {row['client_order_id']}", partial(self._resume, row, report))
        for symbol in self.symbols:
            self._guard(report, f"open orders of {symbol}", partial(self._open_orders, symbol, report))
        if self._previous_start() is not None:  # an earlier run may have lost track of orders
            since = now - RECOVER_WINDOW_MS
            for symbol in self.symbols:
                self._guard(report, f"orders of {symbol}", partial(self._recover_orders, symbol, since, report))
        self._record_drained(report)
        ledger.flush()
        for symbol in self.symbols:
            self._guard(report, f"comparison of {symbol}",
                        partial(self.compare, symbol, now - RECOVER_WINDOW_MS, report))
        self._last_trades_ms = now
        return report

    def _resume(self, row: dict[str, Any], report: ReconcileReport) -> None:
        cid, symbol = row["client_order_id"], row["symbol"]
        if symbol not in self.broker.markets:
            report.errors.append(f"order {cid} is of {symbol}, which this run does not trade; left as it is")
            return
        raw = self.broker.lookup(symbol, cid)
        if raw is None:  # not on the exchange (yet): the broker polls it until it is or cannot be
            order = _order_from_row(row)
            self.broker.adopt_unplaced(order)
            report.adopted.append(cid)
            return
        order = self.broker.adopt(raw, reason=row.get("reason") or "")
        if order.is_active:
            report.adopted.append(cid)
            self.emit("info", "reconcile.adopted", f"{symbol} order {cid} of run {row['run_id']} is still "
                      f"{order.status} on the exchange: this run takes it over", {"client_order_id": cid})
        else:
            report.resolved[cid] = order.status
            self.emit("info", "reconcile.resolved", f"{symbol} order {cid} of run {row['run_id']} ended "
                      f"{order.status} while no bot watched it", {"client_order_id": cid, "status": order.status})

    def _open_orders(self, symbol: str, report: ReconcileReport) -> None:
        for raw in self.broker.fetch_open(symbol):
            cid = raw.get("clientOrderId") or ""
            if self.broker.get_order(cid) is not None:
                continue
            if cid in self._run_of or cid.startswith(CLIENT_ID_PREFIX):
                self.broker.adopt(raw, reason="recovered from the exchange")
                self._run_of.setdefault(cid, self.run_id)
                report.adopted.append(cid)
                self.emit("warning", "reconcile.recovered", f"{symbol} order {cid} was open on the exchange but "
                          "missing from the ledger: recovered", {"client_order_id": cid})
            else:
                self._unknown(raw, report)

    def _unknown(self, raw: dict[str, Any], report: ReconcileReport) -> None:
        cid = raw.get("clientOrderId") or str(raw.get("id"))
        what = (f"{raw['symbol']} {raw.get('side')} {raw.get('type')} order {cid} "
                f"({raw.get('amount')} at {raw.get('price')})")
        if self.unknown_orders == "adopt":
            order = self.broker.adopt(raw, reason="adopted: placed outside sigmax")
            self._run_of.setdefault(order.client_order_id, self.run_id)
            report.adopted.append(order.client_order_id)
            self.emit("warning", "reconcile.adopted_unknown", f"{what} was not placed by sigmax: adopted "
                      "(live.unknown_orders = adopt)", {"client_order_id": order.client_order_id})
        else:
            self.broker.cancel_foreign(raw)
            report.cancelled.append(cid)
            self.emit("warning", "reconcile.cancelled_unknown", f"{what} was not placed by sigmax: cancelled "
                      "(live.unknown_orders = cancel)", {"client_order_id": cid})

    def _recover_orders(self, symbol: str, since_ms: int, report: ReconcileReport) -> None:
        if not (getattr(self.broker.exchange, "has", None) or {}).get("fetchOrders"):
            return
        for raw in self.broker.fetch_orders(symbol, since_ms):
            cid = raw.get("clientOrderId") or ""
            if not cid.startswith(CLIENT_ID_PREFIX) or cid in self._run_of or self.broker.get_order(cid):
                continue
            order = self.broker.adopt(raw, reason="recovered from the exchange")
            self._run_of[cid] = self.run_id
            if order.is_active:
                report.adopted.append(cid)
            else:
                report.resolved[cid] = order.status
            self.emit("warning", "reconcile.recovered", f"{symbol} order {cid} ({order.status}) was on the exchange "
                      "but missing from the ledger: recovered", {"client_order_id": cid, "status": order.status})

    def _record_drained(self, report: ReconcileReport) -> None:
        """Write what adoption found (order states, trades) to the ledger, under the run
        that placed each order; none of it reaches this run's engine."""
        for changes in self.broker.drain().values():
            for fill in changes.fills:
                self.ledger.record_fill(fill.record(self._run_of.get(fill.client_order_id, self.run_id)))
                report.recovered_fills += 1
            for order in changes.orders:
                self.record_order(order)
        for order in self.broker.open_orders():
            self.record_order(order)

    def run_of(self, client_order_id: str) -> str:
        """The run that placed ``client_order_id`` (this run for orders the ledger lacks)."""
        return self._run_of.get(client_order_id, self.run_id)

    def record_order(self, order: Order) -> None:
        """The ledger row of ``order``, under the run that placed it."""
        self.ledger.record_order(order.record(self._run_of.get(order.client_order_id, self.run_id)))

    # ------------------------------------------------------------------ positions
    def carried_positions(self) -> dict[str, Position]:
        """Positions of the run's symbols left by earlier runs (mode and exchange): a replay
        of every fill the ledger holds for them, oldest first."""
        portfolio = Portfolio({s: self.broker.markets[s] for s in self.symbols if s in self.broker.markets})
        for row in self.ledger.venue_fills(self.mode, self.exchange_id, self.symbols):
            portfolio.apply(Fill(row["client_order_id"], row["symbol"], row["side"], row["price"], row["amount"],
                                 row["fee"], row["fee_currency"], row["liquidity"], row["ts_ms"],
                                 trade_id=row["trade_id"]))
        return {s: p for s, p in portfolio.positions.items() if p.qty > 0 and not portfolio.is_flat(s)}

    def last_bar_ms(self, timeframe: str) -> int | None:
        """Open time of the newest bar an earlier run of this mode/exchange/timeframe marked."""
        return self.ledger.venue_last_bar_ms(self.mode, self.exchange_id, timeframe, not_run=self.run_id)

    # ------------------------------------------------------------------ periodic
    def periodic(self) -> ReconcileReport:
        """Unknown open orders, lost orders, unreported trades, book against balances."""
        broker = self.broker
        now = broker.clock()
        report = ReconcileReport(now, "periodic")
        since = (self._last_trades_ms if self._last_trades_ms is not None else now) - TRADE_LOOKBACK_MS
        for symbol in self.symbols:
            self._guard(report, f"open orders of {symbol}", partial(self._open_orders, symbol, report))
            self._guard(report, f"trades of {symbol}", partial(self._trades, symbol, since, report))
            self._guard(report, f"comparison of {symbol}", partial(self.compare, symbol, since, report))
        self._guard(report, "balances", partial(self._balances, report, since))
        for order in broker.open_orders():
            self.record_order(order)
        if not report.errors:
            self._last_trades_ms = now
        return report

    def _trades(self, symbol: str, since_ms: int, report: ReconcileReport) -> int:
        """Hand the broker the trades of its orders it has not seen; returns how many."""
        new = 0
        for trade in self.broker.fetch_trades(symbol, since_ms):
            if self.broker.ingest_trade(trade):
                new += 1
                report.recovered_fills += 1
                self.emit("warning", "reconcile.fill", f"{symbol} trade {trade.get('id')} of a sigmax order had "
                          "not been seen: reported now", {"trade_id": str(trade.get("id"))})
        return new

    # ------------------------------------------------------------------ ledger
    def _close_dead_runs(self) -> list[str]:
        """Unacknowledged lost runs of this mode and exchange (see :mod:`sigmax_cli.ledger.liveness`)."""
        lost = [run.run_id for run in self.ledger.mark_lost_runs()]
        mine = self.ledger.venue_runs(self.mode, self.exchange_id, lost, not_run=self.run_id)
        return [run_id for run_id in lost if run_id in mine]

    def _ledger_active(self) -> list[dict[str, Any]]:
        return self.ledger.venue_active_orders(self.mode, self.exchange_id, not_run=self.run_id)

    def _ledger_order_runs(self) -> dict[str, str]:
        return self.ledger.venue_order_runs(self.mode, self.exchange_id)

    def _ledger_orders(self, symbol: str) -> dict[str, dict[str, Any]]:
        """Every ledger order of ``symbol`` for this mode and exchange, by client order id."""
        return self.ledger.venue_orders(self.mode, self.exchange_id, symbol)

    def _ledger_fills(self, symbol: str, since_ms: int) -> dict[str, dict[str, Any]]:
        """Ledger fills of ``symbol`` (this mode and exchange) with a trade id, since ``since_ms``."""
        return self.ledger.venue_trades(self.mode, self.exchange_id, symbol, since_ms)

    def _ledger_trade_ids(self) -> set[str]:
        return self.ledger.venue_trade_ids(self.mode, self.exchange_id)

    def _previous_start(self) -> int | None:
        return self.ledger.venue_previous_start_ms(self.mode, self.exchange_id, not_run=self.run_id)

    def _guard(self, report: ReconcileReport, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except (AuthenticationError, ClockSkew):
            raise
        except SigmaxError as err:
            report.errors.append(f"{what}: {err.cause}")
            log.warning("reconciliation of %s failed: %s; trying again at the next one", what, err.cause)


def _order_from_row(row: dict[str, Any]) -> Order:
    order = Order(client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"], type=row["type"],
                  amount=row["amount"], price=row["price"], time_in_force=row["time_in_force"],
                  reduce_only=bool(row["reduce_only"]), created_ms=row["created_ms"], updated_ms=row["updated_ms"],
                  reason=row["reason"] or "", status=row["status"], filled=row["filled"],
                  fee=row["fee"], exchange_order_id=row["exchange_order_id"])
    order.cost = (row["average"] or 0.0) * row["filled"]
    return order


