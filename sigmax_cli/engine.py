"""The trading loop: bars -> Strategy -> RiskGuard -> Broker -> Ledger -> observers.

One loop drives ``paper`` (paper broker, replayed or live candles) and ``run`` (live
broker on a testnet); only the broker and the feed differ. The loop is driven by a stop
event (set by SIGINT/SIGTERM handlers, a test, or the kill switch) and reports through an
observer, so it runs the same under a rich dashboard, under cron and in a test.

Per step (one bar open time, every symbol with a bar then):

1. the broker matches/polls the symbol's active orders against the closed bar, fills are
   applied to the portfolio and buffered into the ledger;
2. equity is marked to the bar closes (quote balance + base balances x last close);
   the UTC day's start equity, the peak and the drawdown are updated;
3. the RiskGuard evaluates its trips (daily loss -> REDUCING, drawdown -> HALTED);
4. the strategy decides per symbol; a target becomes an order sized by the profile's
   ``position_fraction`` and notional caps and goes through the :class:`GuardedBroker`;
5. the equity snapshot and the buy-and-hold benchmark are buffered into the ledger.

Decisions happen at the bar's close time (open + timeframe); the paper broker fills them
from the next bar's open, so nothing trades on a price it could not have seen.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from sigmax_cli.brokers.base import MARKET_BUY_BUFFER_DEFAULT, Broker
from sigmax_cli.errors import LedgerUnavailable, OrderRejected, RiskBlocked
from sigmax_cli.feeds import Feed
from sigmax_cli.invariants import check_run, holdings
from sigmax_cli.ledger import Ledger
from sigmax_cli.model import Bar, BrokerUpdate, Order, OrderRequest
from sigmax_cli.portfolio import Portfolio
from sigmax_cli.risk.base import RiskView, Trip, pct_below
from sigmax_cli.risk.guard import GuardedBroker, Resumed, RiskGuard
from sigmax_cli.risk.rejections import RejectionTracker
from sigmax_cli.snapshot import (
    EngineSnapshot,
    EventRow,
    FillRow,
    MarketRow,
    OrderRow,
    PositionRow,
    RiskRow,
)
from sigmax_cli.strategies.base import PositionView, Strategy
from sigmax_cli.timeframes import iso_week, timeframe_to_ms, utc_day

WATCHDOG_S = 5.0  # seconds between the exchange watchdog's looks at the live feed
FLUSH_EVERY_S = 1.0  # seconds between ledger flushes, so monitor/health see a live bot's state
REBALANCE_BAND = 0.05  # fraction of the allocation below which a target change is ignored
DUST_NOTIONAL_FRACTION = 1e-4  # orders worth less than this fraction of initial equity are dust


@dataclass(frozen=True)
class EngineConfig:
    """Run-level knobs. Money in quote currency.

    Attributes:
        position_fraction: fraction of equity allocated to one symbol at target 1.0.
        max_order_notional, max_position_notional: sizing caps (the RiskGuard enforces
            them again; sizing keeps orders inside them so they are not refused).
        speed: replay speed as a multiple of real time; 0 = as fast as possible.
        max_bars: stop after this many bars (all symbols counted), ``None`` = all.
        heartbeat_s: seconds between heartbeats written to the ledger.
        ledger_grace_s: seconds a ledger outage may last (trading HALTED, rows kept in
            memory, writes retried) before the run gives up (``ledger.outage_grace_seconds``).
        max_consecutive_rejections: rejections in a row of one symbol, side and cause before
            the engine alerts, backs off and (for an exit) blocks entries on the symbol.
    """

    run_id: str
    mode: str
    profile: str
    quote: str
    initial_equity: float
    position_fraction: float
    max_order_notional: float
    max_position_notional: float
    taker_fee: float
    slippage_bps: float
    daily_loss_limit_pct: float
    speed: float = 0.0
    max_bars: int | None = None
    heartbeat_s: float = 10.0
    ledger_grace_s: float = 300.0
    max_consecutive_rejections: int = 3


@dataclass
class RunSummary:
    """What a finished run reports (``--json`` of ``paper``). Money in quote currency."""

    run_id: str
    mode: str
    status: str
    symbols: list[str]
    timeframe: str
    bars: int
    steps: int
    orders: int
    fills: int
    rejected: int
    risk_denials: int
    fees: float
    initial_equity: float
    final_equity: float
    return_pct: float
    max_drawdown_pct: float
    benchmark_return_pct: float
    trading_state: str
    first_bar_ms: int | None
    last_bar_ms: int | None
    elapsed_s: float
    bars_per_s: float
    risk_trips: list[dict[str, Any]] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)   # rejected orders by cause (OrderRejected.kind)
    exits_blocked: dict[str, str] = field(default_factory=dict)  # symbol -> why its exit is blocked, at the end
    invariants: list[str] = field(default_factory=list)  # ledger invariants violated at the end (empty: all hold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Engine:
    """The trading loop. Build it, then call :meth:`run` once.

    Args:
        config: run-level settings.
        feed: bars in time order (replay or live).
        strategy: decides targets per closed bar.
        broker: paper or live broker (wrapped here in a :class:`GuardedBroker`).
        guard: the RiskGuard.
        ledger: where everything is recorded; the run must already be started in it.
        observer: receives snapshots and events (dashboard, progress lines, nothing).
        killswitch: a :class:`~sigmax_cli.risk.killswitch.KillSwitchWatcher` (or anything with
            ``current()`` returning a :class:`~sigmax_cli.risk.killswitch.WatchedState`); its
            cached state is read before every step (ENGAGED halts and cancels, UNKNOWN halts).
        sentiment_fn: returns the overall research sentiment in [-1, 1] or ``None``; read
            at every risk evaluation (keep it cheap: a cached value).
        alerts: an :class:`~sigmax_cli.alerts.dispatcher.AlertDispatcher`: every critical
            event, risk trip, kill-switch change and performance threshold becomes an alert
            (:func:`sigmax_cli.alerts.events.alert_for`); its delivery history is recorded in
            the ledger as ``alert.*`` events. The engine closes it when the run ends.
    """

    def __init__(self, *, config: EngineConfig, feed: Feed, strategy: Strategy, broker: Broker,
                 guard: RiskGuard, ledger: Ledger, observer: Any = None, killswitch: Any = None,
                 sentiment_fn: Any = None, alerts: Any = None) -> None:
        from sigmax_cli.ui.observer import NullObserver

        self.cfg = config
        self.feed = feed
        self.strategy = strategy
        self.broker = broker
        self.guard = guard
        self.ledger = ledger
        self.observer = observer if observer is not None else NullObserver()
        self.killswitch = killswitch
        self.sentiment_fn = sentiment_fn
        self.alerts = alerts
        self._perf = None
        if alerts is not None:
            from sigmax_cli.alerts.performance import PerformanceWatch

            self._perf = PerformanceWatch()
        self.gate = GuardedBroker(broker, guard, self._risk_view)
        self.tf_ms = timeframe_to_ms(feed.timeframe)
        self.symbols = list(feed.symbols)
        self.portfolio = Portfolio({s: broker.rules(s) for s in self.symbols})
        self._bases = {s: broker.rules(s).base for s in self.symbols}
        self.marks: dict[str, float] = {}
        self.last_bars: dict[str, Bar] = {}
        self.equity = config.initial_equity
        self.peak = config.initial_equity
        self.day_start_equity = config.initial_equity
        self.day = None
        self.week_start_equity = config.initial_equity
        self.week = None
        self._order_times: deque[int] = deque()
        self._decided_at: dict[str, float] = {}  # client order id -> price the order was decided on
        self.last_slippage_bps: float | None = None
        self.max_dd_pct = 0.0
        self.bars_done = 0
        self.steps_done = 0
        self.orders = 0
        self.fills = 0
        self.rejected = 0
        self.denials = 0
        self.fees = 0.0
        self.first_bar_ms: int | None = None
        self.last_bar_ms: int | None = None
        self.recent_fills: deque[FillRow] = deque(maxlen=10)
        self.recent_events: deque[EventRow] = deque(maxlen=10)
        self.trips: list[dict[str, Any]] = []
        self._last_denial: dict[str, str] = {}
        self.rejections = RejectionTracker(config.max_consecutive_rejections)
        self._cid_seq = 0
        self._bench_cash = config.initial_equity
        self._bench_qty: dict[str, float] = {}
        self._bench_share = config.initial_equity / max(len(self.symbols), 1)
        self._started = 0.0
        self._bot_id = f"{config.mode}:{socket.gethostname()}:{config.run_id}"
        self._failure: str | None = None  # why the run failed (an exception in the loop), for its ledger row
        self.on_ledger_wait: Any = None
        """Called (no arguments) when trading halts for a ledger outage and after each retry,
        so that what does not go through the ledger (Redis heartbeat, metrics) shows HALTED."""

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> RunSummary:
        """Process bars until the feed ends, ``max_bars`` is reached or ``stop`` is set.

        The run ends ``completed`` (feed exhausted or ``max_bars``), ``halted`` (the same, but
        the kill switch still holds trading HALTED: engaged or unknown), ``interrupted`` (stop
        set from outside) or ``failed`` (an exception, re-raised after the ledger is made
        consistent). The ledger is flushed and the run row updated in every case.

        When the ledger stops answering, trading is HALTED (rule ``ledger``) after the current
        bar and the loop waits, rows kept in memory, while the writes are retried; it resumes
        when they succeed (:meth:`_ride_out_ledger`).

        Raises:
            LedgerUnavailable: the ledger did not answer for ``ledger_grace_s`` seconds; the
                run is recorded ``failed`` (or spilled for the next start, see
                :meth:`~sigmax_cli.ledger.store.Ledger.spill`).
        """
        cfg = self.cfg
        self._started = time.monotonic()
        last_beat = last_flush = self._started
        self._beat("running")
        self.observer.on_start(self.snapshot())
        status = "failed"
        step_s = (self.tf_ms / 1000.0 / cfg.speed) if cfg.speed > 0 else 0.0
        self._start_holdings = holdings(self.broker, self._assets())
        watchdog = self._start_watchdog(stop)
        gave_up: LedgerUnavailable | None = None
        final: LedgerUnavailable | None = None
        try:
            for step in self.feed.steps(stop):
                t_step = time.monotonic()
                if self.killswitch is not None:  # a cached read: the watcher's thread does the I/O
                    self._obey_killswitch(step.ts_ms)
                self._step(step.ts_ms, step.bars)
                self.observer.on_step(self.snapshot)
                now = time.monotonic()
                if now - last_flush >= FLUSH_EVERY_S:
                    self._housekeeping()
                    last_flush = now
                if now - last_beat >= cfg.heartbeat_s:
                    self._beat("running")
                    last_beat = now
                if self.ledger.outage is not None and not self._ride_out_ledger(step.ts_ms, stop):
                    break  # stopped while the ledger was away
                if cfg.max_bars is not None and self.bars_done >= cfg.max_bars:
                    break
                if step_s and stop.wait(max(0.0, step_s - (now - t_step))):
                    break
            status = "interrupted" if stop.is_set() else "halted" if self._halted_by_killswitch() else "completed"
        except LedgerUnavailable as exc:  # the outage outlasted its grace: recorded failed below
            gave_up = exc
        except Exception as exc:  # e.g. a user strategy's StrategyCodeError: the run ends failed, with why
            self._failure = f"{type(exc).__name__}: {getattr(exc, 'cause', exc)}"
            try:
                self._event(self.last_bar_ms or 0, "critical", "run.failed", f"the run failed: {self._failure}")
            except Exception:  # noqa: BLE001, S110 - the original error is what the user must see
                pass
            raise
        finally:
            summary = self.summary(status)
            if watchdog is not None:
                watchdog.set()
            try:
                if status != "failed" and self.ledger.outage is None:
                    try:
                        with self.ledger.outage_guard():
                            summary.invariants = self._check_invariants()
                    except LedgerUnavailable:
                        pass  # the ledger went away: not checked; the run's end rides the outage out below
                    except Exception as exc:  # noqa: BLE001 - the run's end must be recorded whatever happens here
                        summary.invariants = [f"invariants could not be checked ({type(exc).__name__}: {exc})"]
                if self.alerts is not None:
                    self.alerts.close()
                    self._housekeeping()
                final = self._record_finish(summary, wait=not stop.is_set())
                self._beat("stopped", {"status": summary.status})
            finally:
                self.observer.on_finish(self.snapshot())
        if final is not None or gave_up is not None:
            raise final or gave_up
        return summary

    # -- the ledger ---------------------------------------------------------------------------
    def _beat(self, status: str, extra: dict[str, Any] | None = None) -> None:
        """Write the heartbeat, unless the ledger is away (its outage is handled between bars)."""
        if self.ledger.outage is not None:
            return
        try:
            self.ledger.heartbeat(self._bot_id, self.cfg.run_id, self.cfg.mode, status,
                                  {**(extra or {}), **self._beat_detail()})
        except LedgerUnavailable:
            pass  # the next step rides the outage out

    def _flush(self) -> None:
        """Write the buffered rows now, unless the ledger is away (never raises for an outage)."""
        if self.ledger.outage is None:
            self.ledger.try_flush()

    def _ride_out_ledger(self, ts: int, stop: threading.Event) -> bool:
        """The ledger stopped answering: HALT trading (rule ``ledger``), keep every row in
        memory and retry the writes with back-off for up to ``ledger_grace_s`` seconds from
        the first failure, still obeying the kill switch; resume (ACTIVE) once they are written.

        Returns:
            True when the ledger is back and trading resumed; False when ``stop`` was set first
            (the run then ends ``interrupted``, rows still buffered).

        Raises:
            LedgerUnavailable: the grace ran out.
        """
        ledger, grace = self.ledger, self.cfg.ledger_grace_s
        outage = ledger.outage
        if outage is None:
            return True
        reason = f"ledger unavailable: {outage.reason}"
        self.guard.halt("ledger", reason)
        self.trips.append({"ts_ms": ts, "rule": "ledger", "state": "HALTED", "reason": outage.reason,
                           "since_ms": outage.since_ms})
        self._event(ts, "critical", "risk.ledger",
                    f"HALTED: {reason}; {ledger.buffered} rows kept in memory, retrying for up to {grace:g} s",
                    {"since_ms": outage.since_ms, "grace_s": grace, "buffered": ledger.buffered})

        def between_retries(_outage: Any = None) -> None:
            if self.killswitch is not None:
                self._obey_killswitch(ts)
            self.observer.on_step(self.snapshot)
            if self.on_ledger_wait is not None:
                self.on_ledger_wait()

        between_retries()
        if not ledger.ride_out(grace, stop, on_retry=between_retries):
            return False
        down_s = (time.time() * 1000 - outage.since_ms) / 1000.0
        for change in self.guard.release("ledger reachable again", rule="ledger"):
            self._event(ts, "warning", f"risk.resumed.{change.rule}",
                        f"ACTIVE: the ledger is reachable again after {down_s:.1f} s; every buffered row is written",
                        {"since_ms": outage.since_ms, "down_s": round(down_s, 3)})
        self._flush()
        return True

    def _record_finish(self, summary: RunSummary, wait: bool) -> LedgerUnavailable | None:
        """Write the run's end. In a ledger outage, retry (when ``wait``) for the rest of the
        grace; past it the run is ``failed`` (without ``wait``, stopped by hand, it keeps its
        status): written if the ledger answers one last time, otherwise spilled to the state
        directory for the next start.

        Returns:
            ``None`` when the run's end is written as ``summary.status``; otherwise the
            :class:`LedgerUnavailable` to raise (its sentence says where the rows went).
        """
        ledger, cfg = self.ledger, self.cfg

        def write(status: str, extra: dict[str, Any] | None = None) -> None:
            failure = {"error": self._failure} if self._failure else {}
            ledger.finish_run(cfg.run_id, status, {**summary.to_dict(), "status": status, **failure, **(extra or {})},
                              self.first_bar_ms, self.last_bar_ms)

        try:
            if ledger.outage is None:
                write(summary.status)
                return None
        except LedgerUnavailable:
            pass
        if wait:
            try:
                if ledger.ride_out(cfg.ledger_grace_s):
                    write(summary.status)
                    return None
            except LedgerUnavailable:
                pass
        outage = ledger.outage
        reason = outage.reason if outage is not None else "unknown"
        held_s = (time.time() * 1000 - outage.since_ms) / 1000.0 if outage is not None else 0.0
        error = f"the ledger was unavailable for {held_s:.0f} s ({reason})"
        if wait:  # the grace ran out: the run failed; stopped by hand (no wait), it stays interrupted
            summary.status = "failed"
        what = (f"the ledger at {_shown(ledger)} was unavailable for {held_s:.0f} s ({reason})"
                + (", longer than ledger.outage_grace_seconds" if wait else " when the run was stopped"))
        try:  # one last attempt; when it fails too the ledger keeps the run's end buffered for the spill
            write(summary.status, {"error": error})
            return LedgerUnavailable(what, f"run {cfg.run_id} is marked {summary.status} in the ledger; "
                                           "start the bot again")
        except LedgerUnavailable:
            pass
        rows = ledger.buffered
        path = ledger.spill()
        if path is not None:
            kept = f"run {cfg.run_id} and its {rows} unwritten rows were saved to {path} and are recorded " \
                   f"({summary.status}) when a bot next opens this ledger"
        else:
            kept = f"run {cfg.run_id} stays 'running' in the ledger and {rows} rows could not be saved"
        return LedgerUnavailable(what, f"{kept}; start the database (or free disk space), then the bot again")

    def _step(self, ts: int, bars: list[Bar]) -> None:
        now = ts + self.tf_ms  # the bars closed at this time: decisions are made now
        broker = self.broker
        marks = self.marks
        if self.first_bar_ms is None:
            self.first_bar_ms = ts
        self.last_bar_ms = ts
        for bar in bars:
            sym = bar.symbol
            if broker.has_open_orders(sym):
                self._apply(broker.on_bar(bar), now)
            marks[sym] = bar.close
            self.last_bars[sym] = bar
            if sym not in self._bench_qty:
                self._bench_qty[sym] = self._bench_share * (1.0 - self.cfg.taker_fee) / bar.open
                self._bench_cash -= self._bench_share
        self.bars_done += len(bars)
        self.steps_done += 1

        equity = self._mark()
        day = utc_day(now)  # marks are taken at bar close; the first close of a UTC day opens it
        if day != self.day:
            self.day_start_equity = equity
            self.day = day
        week = iso_week(now)
        if week != self.week:
            self.week_start_equity = equity
            self.week = week
        self.equity = equity
        if equity > self.peak:
            self.peak = equity
        dd_pct = self._below(self.peak)
        if dd_pct > self.max_dd_pct:
            self.max_dd_pct = dd_pct

        changes = self.guard.evaluate(self._risk_view(now))
        if changes:
            self._risk_changes(now, changes)

        warmup = self.strategy.warmup
        portfolio = self.portfolio
        for bar in bars:
            if bar.i < warmup:
                continue
            pos = portfolio.position(bar.symbol)
            held = pos.qty if pos.opened_ms is not None else 0.0  # dust counts as flat
            signal = self.strategy.on_bar(bar, PositionView(held, pos.avg_price, pos.opened_ms))
            if signal is None or broker.has_open_orders(bar.symbol):
                continue
            self._act(bar, signal.target, signal.reason, held, now)

        bench = self._bench_cash
        for sym, qty in self._bench_qty.items():
            bench += qty * marks[sym]
        cash = broker.total(self.cfg.quote)
        self.ledger.record_equity(self.cfg.run_id, ts, equity, cash, equity - cash, bench)

    def _assets(self) -> list[str]:
        """The quote and every symbol's base asset."""
        return [self.cfg.quote, *dict.fromkeys(self._bases.values())]

    def _check_invariants(self) -> list[str]:
        """Check the ledger against the broker at the end of the run (see
        :mod:`sigmax_cli.invariants`); each violation becomes a critical ``ledger.invariant``
        event. Returns the violations."""
        self.ledger.flush()
        run_id = self.cfg.run_id
        last = self.ledger.equity_summaries([run_id]).get(run_id)
        problems = check_run(
            fills=self.ledger.rows("fills", run_id, order_by=("ts_ms", "id")),
            rules={s: self.broker.rules(s) for s in self.symbols}, quote=self.cfg.quote,
            start=self._start_holdings, end=holdings(self.broker, self._assets()),
            balances=self.broker.balances(), last_equity=last["last_equity"] if last else None,
            closes=self.marks)
        ts = self.last_bar_ms if self.last_bar_ms is not None else 0
        for problem in problems:
            self._event(ts, "critical", "ledger.invariant", problem)
        return problems

    def _mark(self) -> float:
        total = self.broker.total
        equity = total(self.cfg.quote)
        bases = self._bases
        for sym, price in self.marks.items():
            qty = total(bases[sym])
            if qty:
                equity += qty * price
        return equity

    # -- orders --------------------------------------------------------------------------------
    def _act(self, bar: Bar, target: float, reason: str, qty: float, now: int) -> None:
        cfg = self.cfg
        rules = self.broker.rules(bar.symbol)
        price = bar.close
        allocation = min(self.equity * cfg.position_fraction, cfg.max_position_notional)
        delta = max(0.0, min(target, 1.0)) * allocation - qty * price
        if abs(delta) < REBALANCE_BAND * allocation and target > 0:
            return
        if delta > 0:
            spendable = self.broker.free(rules.quote) / (
                (1.0 + cfg.slippage_bps / 10_000 + MARKET_BUY_BUFFER_DEFAULT) * (1.0 + cfg.taker_fee))
            notional = min(delta, cfg.max_order_notional, spendable)
            amount = rules.amount_to_precision(notional / price)
            side, reduce_only = "buy", False
        else:
            held = min(qty, self.broker.free(rules.base))
            amount = rules.amount_to_precision(held if target <= 0 else min(held, -delta / price))
            side, reduce_only = "sell", True
        if (amount <= 0 or amount < rules.min_amount
                or amount * price < max(rules.min_notional, DUST_NOTIONAL_FRACTION * cfg.initial_equity)):
            return  # below the market minimum or dust: nothing sensible to send
        if not self.rejections.may_send(bar.symbol, side, self.steps_done):
            return  # rejected again and again: backing off (see risk.rejections)
        self._cid_seq += 1
        request = OrderRequest(
            symbol=bar.symbol, side=side, type="market", amount=amount,
            client_order_id=f"sx-{cfg.run_id[-12:]}-{self._cid_seq:07d}", reference_price=price,
            reduce_only=reduce_only, reason=reason,
        )
        self._submit(request, now)

    def _submit(self, request: OrderRequest, now: int) -> Order | None:
        """Send one request through the guard; record the order, a rejection or a denial."""
        try:
            order = self.gate.submit(request, now)
        except RiskBlocked as exc:
            self.denials += 1
            denial = exc.denial  # type: ignore[attr-defined]
            key = f"{denial.rule}:{self.guard.state.value}"
            if self._last_denial.get(request.symbol) != key:
                self._last_denial[request.symbol] = key
                self._event(now, "warning", f"risk.denied.{denial.rule}", exc.cause,
                            {"symbol": request.symbol, "side": request.side, "notional": request.notional,
                             "value": denial.value, "limit": denial.limit})
            return None
        except OrderRejected as exc:
            self._rejected(request, exc, now)
            return None
        self._last_denial.pop(request.symbol, None)
        ended = self.rejections.accepted(request.symbol, request.side)
        if ended is not None and ended.count >= self.rejections.threshold:
            self._event(now, "info", "risk.resumed.exit_blocked" if ended.reduce_only else "order.accepted_again",
                        f"{request.symbol} {request.side} accepted after {ended.count} rejections ({ended.cause})",
                        {"symbol": request.symbol, "side": request.side, "cause": ended.cause, "count": ended.count})
        self.orders += 1
        self._order_times.append(now)
        self._decided_at[order.client_order_id] = request.reference_price
        self.ledger.record_order(order.record(self.cfg.run_id))
        return order

    def _rejected(self, request: OrderRequest, exc: OrderRejected, now: int) -> None:
        """Record a rejected order; report the first of a streak and the streak at the
        threshold (an exit's then blocks entries on the symbol: ``risk.exit_blocked``)."""
        self.rejected += 1
        rejected = Order(request.client_order_id, request.symbol, request.side, request.type, request.amount,
                         request.price, request.time_in_force, request.reduce_only, now, now, exc.cause)
        rejected.move("rejected", now)
        self.ledger.record_order(rejected.record(self.cfg.run_id))
        streak = self.rejections.rejected(request.symbol, request.side, exc.kind, exc.cause, request.reduce_only,
                                          now, self.steps_done)
        data = {"client_order_id": request.client_order_id, "symbol": request.symbol, "side": request.side,
                "cause": exc.kind, "reduce_only": request.reduce_only, "count": streak.count}
        if streak.count == 1:
            self._event(now, "warning", "order.rejected", exc.cause, data)
        if streak.count == self.rejections.threshold:
            if request.reduce_only:
                self._event(now, "critical", "risk.exit_blocked",
                            f"{request.symbol} exit rejected {streak.count} times in a row ({exc.kind}): {exc.cause}; "
                            "no new entries on it until an exit goes through", data)
            else:
                self._event(now, "warning", "order.rejections_repeated",
                            f"{request.symbol} {request.side} rejected {streak.count} times in a row ({exc.kind}): "
                            f"{exc.cause}; retrying with back-off", data)

    def _apply(self, update: BrokerUpdate, now: int) -> None:
        """Book ``update``'s fills and orders; ``now`` is the bar close time they are seen at."""
        run_id = self.cfg.run_id
        ledger = self.ledger
        for fill in update.fills:
            decided = self._decided_at.get(fill.client_order_id)
            if decided:
                move = fill.price / decided - 1.0
                self.last_slippage_bps = (move if fill.side == "buy" else -move) * 10_000.0
            pos = self.portfolio.apply(fill, bar_ms=now)
            if fill.side == "sell" and self.rejections.exits_blocked and self.portfolio.is_flat(fill.symbol):
                self.rejections.position_closed(fill.symbol)
            ledger.record_fill(fill.record(run_id))
            ledger.record_position(pos.record(run_id, fill.ts_ms))
            self.fills += 1
            self.fees += fill.fee_in_quote(self._bases[fill.symbol], self.cfg.quote) or 0.0
            self.recent_fills.append(FillRow(fill.ts_ms, fill.symbol, fill.side, fill.price, fill.amount, fill.fee,
                                             fill.liquidity))
        for order in update.orders:
            ledger.record_order(order.record(run_id))

    # -- risk ----------------------------------------------------------------------------------
    def _obey_killswitch(self, ts: int) -> None:
        """HALT (and cancel every open order) when the kill switch is ENGAGED; HALT without
        cancelling when its state is UNKNOWN (a remote engage could not be seen); resume only
        when the watcher reports RELEASED (after an engage: an explicit release)."""
        from sigmax_cli.risk.killswitch import SwitchState

        view = self.killswitch.current()
        trips = self.guard.trips
        if view.state is SwitchState.ENGAGED:
            if "kill_switch" in trips:
                return
            self.guard.release("kill switch engaged", rule="kill_switch_unknown")
            reason = f"kill switch engaged by {view.by or 'unknown'}: {view.reason or 'no reason given'}"
            self.guard.halt("kill_switch", reason)
            self.trips.append({"ts_ms": ts, "rule": "kill_switch", "state": "HALTED", "reason": view.reason,
                               "by": view.by})
            self._event(ts, "critical", "risk.kill_switch", f"HALTED: {reason}",
                        {"by": view.by, "since_ms": view.since_ms, "source": view.source})
            for order in self.broker.open_orders():
                cancelled = self.gate.cancel(order.client_order_id, ts)
                self.ledger.record_order(cancelled.record(self.cfg.run_id))
        elif view.state is SwitchState.UNKNOWN:
            if "kill_switch_unknown" in trips:
                return
            reason = f"kill switch state unknown ({view.detail or 'unreadable'}): no trading until it can be read"
            self.guard.halt("kill_switch_unknown", reason)
            self.trips.append({"ts_ms": ts, "rule": "kill_switch_unknown", "state": "HALTED", "reason": view.detail})
            self._event(ts, "critical", "risk.kill_switch_unknown", f"HALTED: {reason}", {"detail": view.detail})
        else:
            release = view.release or {}
            for rule, what in (("kill_switch", f"kill switch released by {release.get('by') or 'unknown'}: "
                                               f"{release.get('reason') or 'no reason given'}"),
                               ("kill_switch_unknown", "kill switch readable again and released")):
                for change in self.guard.release(what, rule=rule):
                    self._event(ts, "warning", f"risk.resumed.{rule}", what, {"rule": change.rule,
                                                                              "release_id": release.get("id")})

    def _killswitch_fields(self) -> dict[str, Any]:
        """The kill switch's cached state for the dashboard's risk panel (no I/O)."""
        if self.killswitch is None or not hasattr(self.killswitch, "current"):
            return {}
        view = self.killswitch.current()
        return {"killswitch": view.state.value, "killswitch_detail": view.detail or view.reason or ""}

    def _halted_by_killswitch(self) -> bool:
        """True when the kill switch (engaged or unknown) holds trading HALTED right now."""
        return "kill_switch" in self.guard.trips or "kill_switch_unknown" in self.guard.trips

    def _risk_view(self, now_ms: int) -> RiskView:
        times = self._order_times
        while times and times[0] <= now_ms - 60_000:
            times.popleft()
        error_count = getattr(self.broker, "error_count", None)
        staleness = getattr(self.feed, "staleness", None)
        return RiskView(
            equity=self.equity, peak_equity=self.peak, day_start_equity=self.day_start_equity, now_ms=now_ms,
            position_notional=self.portfolio.exposure(self.marks), open_orders=self.broker.open_order_count,
            week_start_equity=self.week_start_equity, losing_streak=self.portfolio.losing_streak,
            last_loss_ms=self.portfolio.last_loss_ms, orders_last_minute=len(times),
            api_errors_last_minute=error_count(now_ms - 60_000) if error_count else 0,
            last_slippage_bps=self.last_slippage_bps,
            data_age_ms=int(getattr(staleness, "overdue_ms", 0) or 0),
            sentiment=self.sentiment_fn() if self.sentiment_fn else None,
            exits_blocked=self.rejections.exits_blocked,
        )

    def _risk_changes(self, now: int, changes: list[Trip | Resumed]) -> None:
        for change in changes:
            if isinstance(change, Trip):
                data = {"rule": change.rule, "state": change.state.value, "value": change.value,
                        "limit": change.limit, "resume": change.resume, "until_ms": change.until_ms,
                        "equity": self.equity}
                self.trips.append({"ts_ms": now, **data})
                self._event(now, "critical" if change.state.value == "HALTED" else "warning",
                            f"risk.{change.rule}", f"{change.state.value}: {change.reason}", data)
            else:
                self._event(now, "info", f"risk.resumed.{change.rule}", f"ACTIVE: {change.reason}",
                            {"rule": change.rule})
                self._last_denial.clear()

    def _event(self, ts: int, level: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.ledger.record_event(self.cfg.run_id, ts, level, kind, message, data)
        row = EventRow(ts, level, kind, message)
        self.recent_events.append(row)
        self.observer.on_event(row)
        if self.alerts is not None:  # every critical event, risk trips, repeated rejections
            from sigmax_cli.alerts.events import alert_for

            alert = alert_for(self.cfg.run_id, ts, level, kind, message, data)
            if alert is not None:
                self.alerts.notify(alert)
        if level == "critical":
            self._flush()  # a halt must be visible to monitor and health at once

    def _start_watchdog(self, stop: threading.Event) -> threading.Event | None:
        """With alerts and a live feed, a thread that alerts when the exchange becomes
        unreachable and when it is back: while the feed waits for the exchange, no step
        (and so no housekeeping) runs. Returns the event that stops the thread."""
        if self.alerts is None or not hasattr(self.feed, "unreachable_since_ms"):
            return None
        done = threading.Event()

        def watch() -> None:
            from sigmax_cli.alerts.base import Alert

            down = False
            while not done.wait(WATCHDOG_S) and not stop.is_set():
                unreachable = getattr(self.feed, "unreachable_since_ms", None) is not None
                now = int(time.time() * 1000)
                if unreachable and not down:
                    down = True
                    error = getattr(self.feed, "last_error", None)
                    self.alerts.notify(Alert("exchange.disconnected", "error",
                                             f"{self.cfg.run_id}: exchange unreachable",
                                             error.cause if error is not None else "", now))
                elif not unreachable and down:
                    down = False
                    self.alerts.notify(Alert("exchange.reconnected", "warning",
                                             f"{self.cfg.run_id}: exchange reachable again", "", now))

        threading.Thread(target=watch, name="sigmax-exchange-watchdog", daemon=True).start()
        return done

    def _below(self, reference: float) -> float:
        """Equity's percent below ``reference`` (day start, week start, peak); 0 when above."""
        pct = pct_below(reference, self.equity)
        return pct if pct is not None and pct > 0 else 0.0

    def _beat_detail(self) -> dict[str, Any]:
        """What a heartbeat carries for `monitor` and `health`: newest bar, equity, state."""
        return {"bar_ms": self.last_bar_ms, "equity": self.equity, "initial_equity": self.cfg.initial_equity,
                "state": self.guard.state.value, "state_reason": self.guard.reason,
                "open_orders": self.broker.open_order_count, "bars": self.bars_done,
                "exits_blocked": dict(self.rejections.exits_blocked)}

    def _housekeeping(self) -> None:
        """Flush the ledger; record alert deliveries; check performance thresholds."""
        if self.alerts is not None:
            from sigmax_cli.alerts.dispatcher import record_history
            from sigmax_cli.alerts.performance import PerformanceStats

            if self._perf is not None and self.last_bar_ms is not None:
                p = self.portfolio
                stats = PerformanceStats(
                    ts_ms=self.last_bar_ms,
                    day_drawdown_pct=self._below(self.day_start_equity),
                    week_drawdown_pct=self._below(self.week_start_equity),
                    total_drawdown_pct=self._below(self.peak),
                    losing_streak=p.losing_streak, trades=p.closed_trades, wins=p.wins,
                    day=self.day or 0, week=self.week or 0)
                for alert in self._perf.check(stats):
                    self.alerts.notify(alert)
            record_history(self.ledger, self.cfg.run_id, self.alerts.drain_history())
        self._flush()

    # -- reporting ---------------------------------------------------------------------------
    @property
    def benchmark_equity(self) -> float:
        """Buy-and-hold benchmark, quote currency: the initial equity split equally over the
        symbols, each bought at its first bar's open after the taker fee, marked at the last close."""
        return self._bench_cash + sum(q * self.marks.get(s, 0.0) for s, q in self._bench_qty.items())

    def summary(self, status: str) -> RunSummary:
        """The run's figures so far, as ``status``."""
        elapsed = max(time.monotonic() - self._started, 1e-9) if self._started else 0.0
        cfg = self.cfg
        bench = self.benchmark_equity
        return RunSummary(
            run_id=cfg.run_id, mode=cfg.mode, status=status, symbols=self.symbols, timeframe=self.feed.timeframe,
            bars=self.bars_done, steps=self.steps_done, orders=self.orders, fills=self.fills,
            rejected=self.rejected, risk_denials=self.denials, fees=round(self.fees, 8),
            initial_equity=cfg.initial_equity, final_equity=round(self.equity, 8),
            return_pct=round((self.equity / cfg.initial_equity - 1.0) * 100.0, 6),
            max_drawdown_pct=round(self.max_dd_pct, 6),
            benchmark_return_pct=round((bench / cfg.initial_equity - 1.0) * 100.0, 6) if self._bench_qty else 0.0,
            trading_state=self.guard.state.value, first_bar_ms=self.first_bar_ms, last_bar_ms=self.last_bar_ms,
            elapsed_s=round(elapsed, 4), bars_per_s=round(self.bars_done / elapsed, 1) if elapsed else 0.0,
            risk_trips=self.trips, rejections=dict(self.rejections.by_cause),
            exits_blocked=dict(self.rejections.exits_blocked),
        )

    def snapshot(self) -> EngineSnapshot:
        """The dashboard's view of the engine now."""
        cfg = self.cfg
        elapsed = time.monotonic() - self._started if self._started else 0.0
        market = [
            MarketRow(sym, bar.close, {k: float(v[bar.i]) for k, v in bar.features.items() if bar.i < len(v)})
            for sym, bar in self.last_bars.items()
        ]
        positions = [
            PositionRow(p.symbol, p.qty, p.avg_price, self.marks.get(p.symbol, p.avg_price),
                        (self.marks.get(p.symbol, p.avg_price) - p.avg_price) * p.qty, p.realized_pnl)
            for p in self.portfolio.positions.values() if p.qty > 0 or p.realized_pnl
        ]
        orders = [OrderRow(o.client_order_id, o.symbol, o.side, o.type, o.price, o.amount, o.filled, o.status)
                  for o in self.broker.open_orders()]
        dd_pct = self._below(self.peak)
        risk = RiskRow(
            equity=self.equity, peak_equity=self.peak, drawdown_pct=dd_pct,
            daily_pnl=self.equity - self.day_start_equity,
            daily_loss_limit=self.day_start_equity * cfg.daily_loss_limit_pct / 100.0,
            trading_state=self.guard.state.value, state_reason=self.guard.reason,
            exits_blocked=tuple(self.rejections.exits_blocked),
            **self._killswitch_fields(),
        )
        return EngineSnapshot(
            mode=cfg.mode, profile=cfg.profile, run_id=cfg.run_id, strategy=self.strategy.name,
            bar_ms=self.last_bar_ms, bars_done=self.bars_done, bars_total=self.feed.bars_total,
            speed=cfg.speed, bars_per_second=self.bars_done / elapsed if elapsed > 0 else 0.0,
            market=market, positions=positions, open_orders=orders, fills=list(self.recent_fills),
            risk=risk, events=list(self.recent_events), orders_total=self.orders, fills_total=self.fills,
        )


def _shown(ledger: Ledger) -> str:
    from sigmax_cli.settings import redact_url

    return redact_url(ledger.url)
