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
from dataclasses import asdict, dataclass, field
from typing import Any

from sigmax_cli.brokers.base import Fill, Order
from sigmax_cli.brokers.live import CLIENT_ID_PREFIX, ClockSkew, LiveBroker
from sigmax_cli.errors import AuthenticationError, SigmaxError
from sigmax_cli.logs import get_logger
from sigmax_cli.portfolio import Portfolio, Position

log = get_logger(__name__)
Emit = Callable[[str, str, str, dict[str, Any]], None]
"""``emit(level, kind, message, data)``: record an event (ledger, dashboard)."""
TRADE_LOOKBACK_MS = 60_000  # periodic trade checks overlap the previous one by this much
RECOVER_WINDOW_MS = 86_400_000  # orders of the last 24 h are listed at start (Binance's allOrders window)
TRADE_PAGE = 1000  # trades asked per fetch_my_trades page (Binance's maximum)
TRADE_PAGES = 20   # pages read at most per symbol and comparison
BALANCE_UNIT = 1e-8
"""Smallest balance increment of an asset no market of the run trades (a commission asset
such as BNB): Binance reports balances to 8 decimals; half of it is the tolerance."""


@dataclass
class ReconcileReport:
    """What one reconciliation found and did. Client order ids; times UTC ms."""

    ts_ms: int
    kind: str                                   # start | periodic
    adopted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resolved: dict[str, str] = field(default_factory=dict)   # earlier-run order -> status found
    recovered_fills: int = 0
    discrepancies: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reconciler:
    """Compares the exchange with the ledger and the broker (see the module docstring).

    Args:
        broker: the run's live broker.
        ledger: the open ledger; the run must already be started in it.
        run_id, mode, exchange_id: this run; earlier runs count when mode and exchange match.
        symbols: the run's symbols (open orders of other symbols are left alone).
        unknown_orders: ``cancel`` or ``adopt`` open orders no sigmax run placed.
        emit: records an event.
    """

    def __init__(self, broker: LiveBroker, ledger: Any, *, run_id: str, mode: str, exchange_id: str,
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
            self._guard(report, f"order {row['client_order_id']}", lambda row=row: self._resume(row, report))
        for symbol in self.symbols:
            self._guard(report, f"open orders of {symbol}", lambda s=symbol: self._open_orders(s, report))
        if self._previous_start() is not None:  # an earlier run may have lost track of orders
            since = now - RECOVER_WINDOW_MS
            for symbol in self.symbols:
                self._guard(report, f"orders of {symbol}", lambda s=symbol: self._recover_orders(s, since, report))
        self._record_drained(report)
        ledger.flush()
        for symbol in self.symbols:
            self._guard(report, f"comparison of {symbol}",
                        lambda s=symbol: self.compare(s, now - RECOVER_WINDOW_MS, report))
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

    def cap_to_balances(self, positions: dict[str, Position]) -> list[str]:
        """Compare carried positions with what the exchange account holds, both ways (within
        half a step): a position larger than the balance is cut to it; a balance larger than
        the positions of the run's symbols on that base is reported, not adopted. Returns one
        sentence per difference."""
        notes = []
        balances = self.broker.exchange_balances()
        if not balances:
            return notes
        by_base: dict[str, list[str]] = {}
        for symbol in self.symbols:
            if symbol in self.broker.markets:
                by_base.setdefault(self.broker.markets[symbol].base, []).append(symbol)
        for base, symbols in by_base.items():
            rules = self.broker.markets[symbols[0]]
            held = balances.get(base, (0.0, 0.0))[1]
            for symbol in symbols:
                pos = positions.get(symbol)
                if pos is not None and not rules.covers(held, pos.qty):
                    notes.append(f"the ledger's {symbol} position {pos.qty:.8g} {base} exceeds the exchange balance "
                                 f"{held:.8g}: trading on {held:.8g}")
                    pos.set_qty(held)
            owned = sum(positions[s].qty for s in symbols if s in positions)
            if not rules.covers(owned, held):
                notes.append(f"the exchange account holds {held:.8g} {base} but the ledger's positions only "
                             f"{owned:.8g}: {held - owned:.8g} {base} are not the ledger's (held outside sigmax, or "
                             "fills the ledger lacks); the run trades only the ledger's")
        return notes

    # ------------------------------------------------------------------ two-way comparison
    def compare(self, symbol: str, since_ms: int, report: ReconcileReport) -> None:
        """Compare the ledger (and the broker) with the exchange for ``symbol`` since
        ``since_ms`` (UTC ms), both directions; every difference is reported in
        ``report.discrepancies`` and as a critical ``reconcile.discrepancy`` event (once).

        Orders (when the exchange lists them): a sigmax order on the exchange under a client
        order id the ledger holds with another exchange order id (a duplicate), one the
        ledger holds as never placed, an executed quantity that differs from the ledger's
        by half a step or more, and a ledger order with an exchange id that the exchange
        does not list. Trades: an exchange trade of a sigmax order that neither the ledger
        nor the broker has, and a ledger fill (with a trade id) the exchange does not have.

        Raises:
            ExchangeError: the exchange could not be asked (the caller reports it).
        """
        broker, rules = self.broker, self.broker.rules(symbol)
        ledger_orders = self._ledger_orders(symbol)
        by_eid = {row["exchange_order_id"]: row for row in ledger_orders.values() if row["exchange_order_id"]}
        listed: dict[str, dict[str, Any]] | None = None
        if (getattr(broker.exchange, "has", None) or {}).get("fetchOrders"):
            listed = {str(raw["id"]): raw for raw in broker.fetch_orders(symbol, since_ms)}
            for eid, raw in listed.items():
                cid = raw.get("clientOrderId") or ""
                self._order_cids[eid] = cid
                if eid in by_eid:
                    row = by_eid[eid]
                    tracked = broker.get_order(row["client_order_id"])
                    if tracked is not None and tracked.is_active:
                        continue  # the broker polls it: the ledger follows at the next bar
                    # the run's own state when it tracks the order, else the ledger's
                    filled = tracked.filled if tracked is not None else (row["filled"] or 0.0)
                    if not rules.same_amount(float(raw.get("filled") or 0.0), filled):
                        self._discrepancy(report, f"order:{eid}:filled", f"{symbol} order {cid} (exchange id {eid}) "
                                          f"executed {raw.get('filled')} on the exchange but {filled} in the "
                                          "ledger", {"client_order_id": cid, "exchange_order_id": eid})
                    continue
                mine = broker.get_order(cid)
                if mine is not None and mine.exchange_order_id in (None, eid):
                    continue  # this run's order the ledger is being told about
                row = ledger_orders.get(cid)
                if row is None and mine is None:
                    continue  # not a sigmax order (foreign orders are the open-order check's business)
                known = (mine.exchange_order_id if mine is not None else None) or (row or {}).get("exchange_order_id")
                if known and known != eid:
                    self._discrepancy(report, f"order:{eid}:duplicate", f"the exchange holds a second {symbol} order "
                                      f"with client order id {cid} (exchange id {eid}, {raw.get('status')}, executed "
                                      f"{raw.get('filled')}) beside the ledger's {known}: a duplicate the ledger lacks",
                                      {"client_order_id": cid, "exchange_order_id": eid, "ledger_order_id": known})
                elif row is not None and row["status"] == "rejected":
                    self._discrepancy(report, f"order:{eid}:rejected", f"{symbol} order {cid} is {raw.get('status')} "
                                      f"on the exchange (id {eid}, executed {raw.get('filled')}) but the ledger holds "
                                      "it as never placed", {"client_order_id": cid, "exchange_order_id": eid})
            for eid, row in by_eid.items():
                if eid not in listed and row["created_ms"] >= since_ms + TRADE_LOOKBACK_MS:
                    self._discrepancy(report, f"order:{eid}:missing", f"the ledger's {symbol} order "
                                      f"{row['client_order_id']} (exchange id {eid}, {row['status']}) is not among the "
                                      "exchange's orders", {"client_order_id": row["client_order_id"],
                                                            "exchange_order_id": eid})
        trades = self._exchange_trades(symbol, since_ms)
        ledger_fills = self._ledger_fills(symbol, since_ms)
        seen = broker.seen_trades
        for trade in trades:
            tid, eid = str(trade.get("id")), str(trade.get("order"))
            if tid in ledger_fills or tid in seen:
                continue
            if broker.ingest_trade(trade):  # one of this run's orders traded since it was polled: a fill now
                report.recovered_fills += 1
                continue
            cid = self._cid_of(symbol, eid, by_eid, listed)
            if cid is None or not (cid.startswith(CLIENT_ID_PREFIX) or cid in ledger_orders):
                continue  # a trade of an order sigmax did not place
            self._discrepancy(report, f"trade:{tid}", f"the exchange has a {symbol} {trade.get('side')} trade {tid} of "
                              f"{trade.get('amount')} at {trade.get('price')} (order {cid}, exchange id {eid}) that "
                              "the ledger lacks", {"trade_id": tid, "client_order_id": cid, "exchange_order_id": eid})
        on_exchange = {str(t.get("id")) for t in trades}
        complete = len(trades) < TRADE_PAGE * TRADE_PAGES
        for tid, row in ledger_fills.items():
            if complete and tid not in on_exchange:
                cid = row["client_order_id"]
                self._discrepancy(report, f"fill:{tid}", f"the ledger has a {symbol} {row['side']} fill {tid} of "
                                  f"{row['amount']:.8g} at {row['price']:.8g} (order {cid}) that the exchange does "
                                  "not have", {"trade_id": tid, "client_order_id": cid})

    def _cid_of(self, symbol: str, eid: str, by_eid: dict[str, dict[str, Any]],
                listed: dict[str, dict[str, Any]] | None) -> str | None:
        """The client order id of exchange order ``eid`` (ledger, broker, the listing, else
        one lookup, remembered); ``None`` when the exchange cannot say."""
        if eid in by_eid:
            return by_eid[eid]["client_order_id"]
        if self.broker.owns_exchange_id(eid):
            return self.broker.client_id_of(eid)
        if eid not in self._order_cids:
            raw = self.broker.call("fetch_order", eid, symbol)
            self._order_cids[eid] = (raw or {}).get("clientOrderId") or ""
        return self._order_cids[eid]

    def _exchange_trades(self, symbol: str, since_ms: int) -> list[dict[str, Any]]:
        """The account's trades of ``symbol`` since ``since_ms``, page by page (each once)."""
        out: dict[str, dict[str, Any]] = {}
        since = since_ms
        for _ in range(TRADE_PAGES):
            page = self.broker.call("fetch_my_trades", symbol, since, TRADE_PAGE)
            for trade in page:
                out.setdefault(str(trade.get("id")), trade)
            if len(page) < TRADE_PAGE:
                break
            since = max(int(t.get("timestamp") or since) for t in page)
        return list(out.values())

    def _discrepancy(self, report: ReconcileReport, key: str, message: str, data: dict[str, Any]) -> None:
        report.discrepancies.append(message)
        if key not in self._reported:
            self._reported.add(key)
            self.emit("critical", "reconcile.discrepancy", message, data)

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
            self._guard(report, f"open orders of {symbol}", lambda s=symbol: self._open_orders(s, report))
            self._guard(report, f"trades of {symbol}", lambda s=symbol: self._trades(s, since, report))
            self._guard(report, f"comparison of {symbol}", lambda s=symbol: self.compare(s, since, report))
        self._guard(report, "balances", lambda: self._balances(report, since))
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

    def set_baseline(self) -> None:
        """Remember ``exchange total - book`` of each base asset the run trades: what the
        account holds of it beside the run's book when the book was seeded. Later changes of
        it are differences the run's fills do not explain."""
        balances = self.broker.exchange_balances()
        if balances:
            self._baseline = {a: balances.get(a, (0.0, 0.0))[1] - self.broker.total(a) for a in self._bases()}

    def _bases(self) -> set[str]:
        """Base assets of the run's symbols: only this run moves them (the quote, and a
        commission asset such as BNB, are shared with other runs on the same account)."""
        return {self.broker.markets[s].base for s in self.symbols if s in self.broker.markets}

    def _apart(self, asset: str, a: float, b: float) -> bool:
        """True when amounts ``a`` and ``b`` of ``asset`` differ by half its smallest unit or
        more: a base's amount step; for a quote, one step's worth at one tick (the least a
        trade moves it); else half of :data:`BALANCE_UNIT`."""
        for symbol in self.symbols:
            rules = self.broker.markets.get(symbol)
            if rules is None:
                continue
            if rules.base == asset:
                return not rules.same_amount(a, b)
            if rules.quote == asset:
                unit = float(rules.amount_step_at(1)) * rules.price_tick
                return abs(a - b) >= unit / 2
        return abs(a - b) >= BALANCE_UNIT / 2

    def _balances(self, report: ReconcileReport, since_ms: int | None = None) -> None:
        broker = self.broker
        balances = broker.exchange_balances(fresh=True)
        if not balances:
            return
        if since_ms is not None:  # a trade taken in after the read would make the two disagree for a moment
            late = sum(self._trades(symbol, since_ms, report) for symbol in self.symbols)
            if late:
                log.info("balances not compared: %d trades arrived while they were read; next time", late)
                return
        if not self._baseline:
            self.set_baseline()
        bases = self._bases()
        for asset in sorted(set(broker.balances()) | bases):
            mine = broker.total(asset)
            held = balances.get(asset, (0.0, 0.0))[1]
            key = f"balance:{asset}"
            drift = base = 0.0
            if asset in bases:
                base = self._baseline.setdefault(asset, held - mine)
                drift = (held - mine) - base
            if mine > held and self._apart(asset, mine, held):
                message = (f"the run's book holds {mine:.8g} {asset} but the exchange account only {held:.8g} "
                           "(sold or withdrawn outside sigmax?)")
            elif asset in bases and self._apart(asset, held - mine, base):
                more = "more" if drift > 0 else "less"
                message = (f"the exchange account holds {abs(drift):.8g} {asset} {more} than the run's own fills "
                           f"explain (exchange {held:.8g}, book {mine:.8g}): a fill the ledger lacks, or a deposit "
                           "or withdrawal outside sigmax")
            else:
                self._reported.discard(key)
                continue
            report.discrepancies.append(message)
            if key not in self._reported:
                self._reported.add(key)
                self.emit("critical", "reconcile.discrepancy", message,
                          {"asset": asset, "book": mine, "exchange": held, "drift": drift})

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

    def _guard(self, report: ReconcileReport, what: str, fn: Callable[[], None]) -> None:
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


