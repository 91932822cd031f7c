"""``sigmax run``: the engine loop of ``paper`` with the live broker on an exchange.

Wiring, like :mod:`sigmax_cli.paper`: :func:`prepare_live` checks everything a user can get
wrong and writes nothing (and sends no order): env file and its permissions, live-money
confirmation and capital cap, keys, kill switch, strategy, exchange id and testnet, the
markets, symbols and timeframe, then the keys and the clock with one signed read
(``fetch_balance``). :func:`run_live` then opens the ledger and runs:

1. Prometheus metrics on ``--metrics-port`` (:mod:`sigmax_cli.telemetry`; bound by
   :func:`prepare_live`: a port in use is refused before anything is written);
2. the run is recorded; reconciliation at start (:mod:`sigmax_cli.brokers.reconcile`);
3. the broker's book is seeded: positions carried over from earlier runs, and quote capital
   ``min(exchange quote balance, risk.max_capital - cost of carried positions)``;
4. the :class:`~sigmax_cli.live_feed.LiveFeed` of closed bars, backfilling the bars
   missed since the last one an earlier run marked (at most ``live.backfill_max_bars``; more
   missed bars are reported, never skipped in silence); orders are not sent for a bar that
   closed more than ``live.signal_max_age_seconds`` ago;
5. the engine, ticking once per closed bar. Each tick: the ledger is flushed (a crash loses
   at most one bar of records; orders are written before they are sent), balances are read
   again, every ``live.reconcile_every_ticks`` ticks the exchange is reconciled, the
   heartbeat is written (ledger, and Redis when configured) and the metrics updated.

Time is the exchange's: :class:`ExchangeClock` follows its ``fetch_time`` (re-read every
``live.clock_sync_seconds``), so bar closes are judged as the exchange sees them.
"""

from __future__ import annotations

import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sigmax_cli.brokers.live import ExchangeStatus, LiveBroker
from sigmax_cli.engine import Engine, EngineConfig, RunSummary
from sigmax_cli.errors import (
    AuthenticationError,
    ConfigError,
    LedgerUnavailable,
    OrderRejected,
    SigmaxError,
    TemporaryError,
)
from sigmax_cli.exchange.errors import RetryPolicy, api_url
from sigmax_cli.logs import get_logger
from sigmax_cli.markets import MarketRules
from sigmax_cli.paper import new_run_id, refuse_if_killswitch_engaged, spill_dir
from sigmax_cli.settings import Settings
from sigmax_cli.snapshot import EventRow
from sigmax_cli.strategies.base import history_bars
from sigmax_cli.telemetry import LiveMetrics, RedisHeartbeat

log = get_logger(__name__)
ENVS = ("testnet", "live")


# ====================================================================== options, env files
@dataclass(frozen=True)
class LiveOptions:
    """Options of one ``sigmax run`` that are not settings.

    Attributes:
        env: ``testnet`` (default) or ``live`` (real money).
        symbols: symbols named on the command line; ``None`` = the profile's.
        strategy: ``rules`` or ``rl:MODEL.zip``.
        max_ticks: stop after this many closed bars (steps); ``None`` = until stopped.
        confirm_live: ``--confirm-live`` was given.
        metrics_port: serve Prometheus metrics on this port; ``None`` = no server.
    """

    env: str = "testnet"
    symbols: list[str] | None = None
    strategy: str = "rules"
    max_ticks: int | None = None
    confirm_live: bool = False
    metrics_port: int | None = None


def find_env_file(env: str, explicit: Path | None, home: Path | None, cwd: Path | None = None
                  ) -> tuple[Path | None, list[str]]:
    """The env file holding ``env``'s keys, and warnings about it.

    ``explicit`` (``--env-file``) wins; else ``.env.<env>`` in ``cwd``, then in ``home``
    (``SIGMAX_HOME``). A file group or others may read is used, with a warning: it holds keys.

    Raises:
        ConfigError: ``env`` is not testnet/live, or ``explicit`` does not exist.
    """
    if env not in ENVS:
        raise ConfigError(f"--env {env!r} is not an environment sigmax trades in",
                          "use --env testnet (default) or --env live")
    if explicit is not None:
        candidates = [Path(explicit)]
        if not candidates[0].is_file():
            raise ConfigError(f"env file {explicit} does not exist",
                              "create it from .env.testnet.example (chmod 600) or drop --env-file")
    else:
        candidates = [folder / f".env.{env}" for folder in (cwd or Path.cwd(), home) if folder is not None]
    for path in candidates:
        if path.is_file():
            mode = stat.S_IMODE(path.stat().st_mode)
            warnings = []
            if mode & 0o077:
                warnings.append(f"{path} holds API keys and is readable by group or others (mode {mode:04o}); "
                                f"chmod 600 {path}")
            return path, warnings
    return None, []


def key_tail(settings: Settings) -> str:
    """The API key as ``…abcd`` (its last 4 characters), for saying which account trades."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    return f"…{key[-4:]}" if len(key) >= 12 else ("(short key)" if key else "(no key)")


def refuse_unconfirmed_live(settings: Settings, options: LiveOptions) -> None:
    """``--env live`` needs ``--confirm-live`` and ``risk.max_capital``; checked before any
    network call.

    Raises:
        ConfigError: either is missing; the sentence names the exchange and the key.
    """
    where = f"{settings.exchange} with API key {key_tail(settings)}"
    if not options.confirm_live:
        raise ConfigError(f"--env live trades real money on {where}, and --confirm-live was not given",
                          "check the exchange and account, then add --confirm-live (or use --env testnet)")
    if settings.risk.max_capital is None:
        raise ConfigError(f"--env live on {where} needs a capital cap, and risk.max_capital is not set",
                          "set max_capital (quote currency) under [risk] in the profile or "
                          "SIGMAX_RISK__MAX_CAPITAL in .env.live")


# ====================================================================== the exchange's clock
class ExchangeClock:
    """The exchange's time (UTC ms): the local clock plus the offset measured by
    ``fetch_time``, measured again every ``sync_seconds`` (0: at every read).

    A failed measurement keeps the last offset (logged). ``skew_ms`` is the last offset.
    """

    def __init__(self, exchange: Any, sync_seconds: float = 60.0) -> None:
        self.exchange = exchange
        self.sync_seconds = sync_seconds
        self.skew_ms = 0
        self._synced = float("-inf")
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            if time.monotonic() - self._synced >= self.sync_seconds:
                self._sync()
            return int(time.time() * 1000) + self.skew_ms

    def _sync(self) -> None:
        from sigmax_cli.exchange.client import server_time_ms

        self._synced = time.monotonic()
        try:
            before = time.time()
            server = server_time_ms(self.exchange, retry=RetryPolicy(attempts=1))
            after = time.time()
        except SigmaxError as err:
            log.warning("could not read %s's clock: %s; keeping the last offset", self.exchange.id, err.cause)
            return
        self.skew_ms = int(server - (before + after) / 2 * 1000)


# ====================================================================== preparation
@dataclass
class AccountInfo:
    """Which exchange and account a run trades (no secret: the key's last 4 characters)."""

    exchange: str
    env: str
    url: str
    key: str
    uid: str | None
    quote: str
    quote_free: float

    def describe(self) -> str:
        what = "LIVE (real money)" if self.env == "live" else "testnet"
        uid = f", account {self.uid}" if self.uid else ""
        return (f"{what} on {self.exchange} at {self.url}, API key {self.key}{uid}, "
                f"{self.quote_free:,.2f} {self.quote} free")

    def to_dict(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "env": self.env, "url": self.url, "key": self.key, "uid": self.uid,
                "quote": self.quote, "quote_free": self.quote_free}


@dataclass
class LivePlan:
    """A checked run, ready to start."""

    settings: Settings
    options: LiveOptions
    run_id: str
    strategy: Any
    exchange: Any
    clock: ExchangeClock
    broker: LiveBroker
    markets: dict[str, MarketRules]
    quote: str
    account: AccountInfo
    warnings: list[str] = field(default_factory=list)
    metrics: LiveMetrics | None = None


def prepare_live(settings: Settings, options: LiveOptions, warnings: list[str] | None = None) -> LivePlan:
    """Check everything and connect; writes nothing and sends no order.

    Raises:
        ConfigError: bad option, live without confirmation or capital cap, no keys, unknown
            exchange or one without a testnet, unknown symbol or timeframe, mixed quote
            currencies, the clock off by more than the recvWindow (:class:`ClockSkew`), the
            metrics port cannot be bound (bound here, served from the start of the run).
        AuthenticationError: the exchange refused the keys (missing, wrong, no permission).
        RiskBlocked: the kill switch is engaged.
        TemporaryError: the exchange cannot be reached.
    """
    from sigmax_cli.exchange.client import create_exchange, load_markets, require_market, require_timeframe
    from sigmax_cli.markets import from_ccxt
    from sigmax_cli.strategy_spec import load_strategy

    live = settings.live
    env = options.env
    if env not in ENVS:
        raise ConfigError(f"--env {env!r} is not an environment sigmax trades in",
                          "use --env testnet (default) or --env live")
    if options.max_ticks is not None and options.max_ticks <= 0:
        raise ConfigError("--max-ticks must be positive", "pass e.g. --max-ticks 60, or leave it out to run on")
    if options.metrics_port is not None and not 0 < options.metrics_port < 65536:
        raise ConfigError(f"--metrics-port {options.metrics_port} is not a TCP port", "pass 1-65535, e.g. 9108")
    symbols = options.symbols or list(settings.symbols)
    quotes = {s.split("/")[1].split(":")[0] for s in symbols}
    if len(quotes) != 1:
        raise ConfigError(f"the symbols mix quote currencies ({', '.join(sorted(quotes))})",
                          "trade one quote currency per run")
    if env == "live":
        refuse_unconfirmed_live(settings, options)
    exchange = create_exchange(
        settings.exchange, api_url=settings.exchange_api_url, sandbox=env == "testnet",
        api_key=settings.api_key, api_secret=settings.api_secret, api_password=settings.api_password,
        timeout_ms=int(live.timeout_seconds * 1000))
    _require_keys(settings, exchange, env)
    refuse_if_killswitch_engaged(settings)
    strategy = load_strategy(options.strategy, settings)
    if live.rate_limit_ms is not None:
        exchange.rateLimit = live.rate_limit_ms
    exchange.options["recvWindow"] = live.recv_window_ms
    retry = RetryPolicy(attempts=live.retry_attempts, base_delay=live.retry_base_seconds,
                        max_delay=live.retry_max_seconds)
    where = f"{exchange.id}{' testnet' if env == 'testnet' else ''}"
    try:
        markets = load_markets(exchange, retry=retry)
    except TemporaryError as err:
        raise TemporaryError(f"cannot reach {where} at {api_url(exchange)} ({err.cause})",
                             "check the network, the exchange's status page and SIGMAX_EXCHANGE_API_URL") from err
    require_timeframe(exchange, settings.timeframe)
    for symbol in symbols:
        require_market(exchange, symbol)
    rules = {s: from_ccxt(markets[s], precision_mode=exchange.precisionMode) for s in symbols}
    quote = quotes.pop()
    clock = ExchangeClock(exchange, live.clock_sync_seconds)
    broker = LiveBroker(exchange, rules, env=env, clock=clock.now_ms, retry=retry,
                        submit_attempts=live.submit_attempts, recv_window_ms=live.recv_window_ms,
                        clock_offset_ms=lambda: clock.skew_ms, accept_tolerance_ms=live.accept_tolerance_ms)
    account = _check_account(broker, exchange, settings, env, quote)
    run_id = new_run_id(env)
    metrics = None
    if options.metrics_port is not None:  # bound now: a port in use is refused before the run starts
        metrics = LiveMetrics(run_id, env, exchange.id)
        metrics.serve(live.metrics_host, options.metrics_port)
    return LivePlan(settings, options, run_id, strategy, exchange, clock, broker, rules, quote, account,
                    list(warnings or []), metrics)


def _require_keys(settings: Settings, exchange: Any, env: str) -> None:
    needed = [("SIGMAX_API_KEY", settings.api_key), ("SIGMAX_API_SECRET", settings.api_secret)]
    if (getattr(exchange, "requiredCredentials", None) or {}).get("password"):
        needed.append(("SIGMAX_API_PASSWORD", settings.api_password))
    missing = [name for name, value in needed if value is None or not value.get_secret_value()]
    if missing:
        raise ConfigError(f"no {' and '.join(missing)} for {exchange.id} {env}",
                          f"put them in .env.{env} (chmod 600; see .env.testnet.example) in this directory or "
                          "SIGMAX_HOME, or pass --env-file")


def _check_account(broker: LiveBroker, exchange: Any, settings: Settings, env: str, quote: str) -> AccountInfo:
    """One signed read: proves the keys and the clock before anything trades."""
    try:
        balance = broker.call("fetch_balance")
    except AuthenticationError as err:
        raise AuthenticationError(f"{exchange.id} {env} refused the API key {key_tail(settings)} ({err.cause})",
                                  f"check SIGMAX_API_KEY and SIGMAX_API_SECRET in .env.{env}: keys of the {env}, "
                                  "with trading permission") from None
    info = balance.get("info") if isinstance(balance, dict) else None
    uid = str(info["uid"]) if isinstance(info, dict) and info.get("uid") is not None else None
    free = float((balance.get("free") or {}).get(quote) or 0.0)
    return AccountInfo(exchange.id, env, api_url(exchange), key_tail(settings), uid, quote, free)


# ====================================================================== the run
@dataclass
class LiveSummary:
    """A finished live run: the engine's :class:`RunSummary` plus the exchange side."""

    summary: RunSummary
    env: str
    account: AccountInfo
    ticks: int
    exchange: ExchangeStatus
    reconciliation: dict[str, Any]
    warnings: list[str]
    metrics_port: int | None

    @property
    def status(self) -> str:
        return self.summary.status

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "env": self.env, "account": self.account.to_dict(), "ticks": self.ticks,
                "exchange": self.exchange.to_dict(), "reconciliation": self.reconciliation,
                "warnings": self.warnings, "metrics_port": self.metrics_port}


class _Events:
    """Records an event of the live run's own parts (broker, reconciliation, feed) in the
    ledger and, once the engine runs, on its dashboard; every critical one (``order.unknown``,
    ``reconcile.discrepancy``...) also goes to ``alerts``, the dispatcher the engine shares,
    under the same policy and debounce as the engine's events
    (:func:`sigmax_cli.alerts.events.alert_for`)."""

    def __init__(self, ledger: Any, run_id: str, clock: Callable[[], int], alerts: Any = None) -> None:
        self.ledger, self.run_id, self.clock, self.alerts = ledger, run_id, clock, alerts
        self.engine: Engine | None = None

    def __call__(self, level: str, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        from sigmax_cli.alerts.events import alert_for

        ts = self.clock()
        self.ledger.record_event(self.run_id, ts, level, kind, message, data)
        if self.engine is not None:
            row = EventRow(ts, level, kind, message)
            self.engine.recent_events.append(row)
            self.engine.observer.on_event(row)
        alert = alert_for(self.run_id, ts, level, kind, message, data) if self.alerts is not None else None
        if alert is not None:
            self.alerts.notify(alert)
        if level == "critical":
            self.ledger.flush()  # visible to monitor and health at once

    def close_alerts(self) -> None:
        """Deliver what is queued and record the deliveries (``alert.*`` events) in the ledger;
        alerts raised after this (none expected) are delivered inline."""
        if self.alerts is None:
            return
        from sigmax_cli.alerts.dispatcher import record_history

        self.alerts.close()
        record_history(self.ledger, self.run_id, self.alerts.drain_history())


class _TickFeed:
    """The live feed, with the run's per-tick work done before each step is processed."""

    def __init__(self, feed: Any, on_tick: Callable[[Any], None]) -> None:
        self.feed = feed
        self.on_tick = on_tick
        self.symbols = feed.symbols
        self.timeframe = feed.timeframe

    @property
    def bars_total(self) -> int | None:
        return self.feed.bars_total

    @property
    def staleness(self) -> Any:
        return self.feed.staleness

    def data_files(self) -> list[dict[str, object]]:
        return self.feed.data_files()

    def steps(self, stop: threading.Event) -> Iterator[Any]:
        for step in self.feed.steps(stop):
            self.on_tick(step)
            yield step


def run_live(plan: LivePlan, stop: threading.Event, observer: Any = None, *,
             clock: Callable[[], int] | None = None, sleep: Callable[[float], None] | None = None) -> LiveSummary:
    """Start the run and trade until ``--max-ticks``, ``stop`` or an error.

    Args:
        plan: from :func:`prepare_live`.
        stop: set it (SIGINT/SIGTERM, a test) to end the run after the current tick.
        observer: dashboard / progress lines (``sigmax_cli.ui``).
        clock, sleep: replace the exchange clock and every wait (feed polls, back-offs);
            for tests that move time by hand.

    Raises:
        LedgerError: the ledger cannot be opened.
        AuthenticationError: the keys stop working during the run (the run is recorded failed).
        ExchangeError: reconciliation at start or the data feed cannot reach the exchange.
    """
    from sigmax_cli.alerts.dispatcher import from_settings as alerts_from_settings
    from sigmax_cli.brokers.reconcile import Reconciler
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.live_feed import LiveFeed
    from sigmax_cli.portfolio import Position
    from sigmax_cli.risk.guard import build_guard
    from sigmax_cli.risk.killswitch import KillSwitch, KillSwitchWatcher
    from sigmax_cli.timeframes import timeframe_to_ms

    s, options, broker = plan.settings, plan.options, plan.broker
    live, env, run_id = s.live, options.env, plan.run_id
    tf_ms = timeframe_to_ms(s.timeframe)
    now_fn = clock or plan.clock.now_ms
    broker.clock = now_fn
    broker.running = True
    if sleep is not None:
        broker.retry = replace(broker.retry, sleep=sleep)
    broker.signal_max_age_ms = int((live.signal_max_age_seconds or tf_ms / 1000) * 1000)
    metrics = plan.metrics
    if metrics is not None:
        broker.metrics = metrics
    bot_id = f"{env}:{socket.gethostname()}:{run_id}"
    redis_beat = (RedisHeartbeat(s.redis_url.get_secret_value(), s.redis_prefix, bot_id, live.heartbeat_ttl_seconds)
                  if s.redis_url is not None else None)
    warnings = list(plan.warnings)
    try:
        with KillSwitchWatcher(KillSwitch.from_settings(s)) as watcher, \
                Ledger(s.ledger_url, spill_dir=spill_dir(s)) as ledger:
            params = {"strategy": plan.strategy.params(), "risk": s.risk.model_dump(), "live": s.live.model_dump(),
                      "account": plan.account.to_dict()}
            ledger.start_run(run_id=run_id, mode=env, profile=s.profile, exchange=s.exchange,
                             strategy=options.strategy, params=params, symbols=list(plan.markets),
                             timeframe=s.timeframe, data_files=[], initial_equity=plan.account.quote_free)
            alerts = alerts_from_settings(s)  # one dispatcher, shared with the engine
            events = _Events(ledger, run_id, now_fn, alerts)
            broker.emit = events  # an order whose fate the exchange cannot tell is reported as an event

            def journal(order: Any) -> None:  # write-ahead: in the ledger before the exchange sees it
                reconciler.record_order(order)
                if order.status == "new":
                    _write_ahead(ledger, order)

            reconciler = Reconciler(broker, ledger, run_id=run_id, mode=env, exchange_id=s.exchange,
                                    symbols=list(plan.markets), unknown_orders=live.unknown_orders, emit=events)
            broker.journal = journal
            try:
                start_report = reconciler.at_start()
                carried = reconciler.carried_positions()
                for note in reconciler.cap_to_balances(carried):
                    warnings.append(note)
                    events("warning", "reconcile.discrepancy", note)
                capital, initial_equity = _capital(broker, s, plan.quote, carried)
            except BaseException as exc:  # the run never traded: record why, then let it surface
                cause = exc.cause if isinstance(exc, SigmaxError) else type(exc).__name__
                events.close_alerts()  # what start-up found still reaches a human
                ledger.finish_run(run_id, "failed", {"error": f"start-up reconciliation failed: {cause}"})
                raise
            broker.seed({plan.quote: capital, **{plan.markets[sym].base: p.qty for sym, p in carried.items()}})
            reconciler.set_baseline()  # later account changes the run's fills do not explain are reported
            ledger.set_initial_equity(run_id, initial_equity)
            since = _backfill_since(reconciler.last_bar_ms(s.timeframe), now_fn(), tf_ms, live.backfill_max_bars,
                                    events)
            stale_ms = int(live.stale_after_bars * tf_ms)
            backfill_until = (now_fn() // tf_ms) * tf_ms - tf_ms  # bars up to this one are backfill
            feed_retry = RetryPolicy(attempts=3, base_delay=1.0, max_delay=10.0, sleep=sleep) if sleep else None
            feed = LiveFeed(plan.exchange, list(plan.markets), s.timeframe, plan.strategy.features,
                            history=history_bars(plan.strategy) + 50,
                            poll_interval_s=live.poll_seconds,
                            stale_after_ms=stale_ms, on_stale="record", since_ms=since,
                            max_bars=options.max_ticks, sleep=sleep, clock=now_fn, retry=feed_retry)
            taker = max((r.taker_fee or 0.001) for r in plan.markets.values())
            config = EngineConfig(
                run_id=run_id, mode=env, profile=s.profile, quote=plan.quote, initial_equity=initial_equity,
                position_fraction=s.strategy.position_fraction, max_order_notional=s.risk.max_order_notional,
                max_position_notional=s.risk.max_position_notional, taker_fee=taker,
                slippage_bps=s.paper.slippage_bps, daily_loss_limit_pct=s.risk.daily_loss_limit_pct,
                max_consecutive_rejections=s.risk.max_consecutive_rejections,
                speed=0.0, max_bars=None, heartbeat_s=0.0, ledger_grace_s=s.ledger.outage_grace_seconds)
            state: dict[str, Any] = {"ticks": 0, "connection": broker.exchange_status().connection, "stale": None}

            def on_tick(step: Any) -> None:
                state["ticks"] += 1
                _report_staleness(feed, step, now_fn(), tf_ms, stale_ms, backfill_until, events, state)
                if ledger.outage is None:  # in an outage the engine halts and retries after this bar
                    ledger.try_flush()
                broker.begin_tick()
                broker.exchange_balances()  # one read per tick: balances, and a sign of life of the exchange
                if state["ticks"] > 1 and (state["ticks"] - 1) % live.reconcile_every_ticks == 0 \
                        and ledger.outage is None:  # reconciliation reads the ledger: wait until it is back
                    report = _reconcile_periodic(reconciler, ledger)
                    for problem in report.errors if report is not None else ():
                        events("warning", "reconcile.incomplete", problem)
                _after_tick(engine, broker, metrics, redis_beat, events, state, bot_id, "running")

            engine = Engine(config=config, feed=_TickFeed(feed, on_tick), strategy=plan.strategy, broker=broker,
                            guard=build_guard(s.risk, tf_ms), ledger=ledger, observer=observer, killswitch=watcher,
                            alerts=alerts)  # risk trips, kill switch ENGAGED/UNKNOWN, critical events
            events.engine = engine
            engine.on_ledger_wait = lambda: _after_tick(engine, broker, metrics, redis_beat, None, state, bot_id,
                                                        "running")
            for sym, pos in carried.items():
                engine.portfolio.positions[sym] = Position(sym, pos.qty, pos.avg_price, 0.0,
                                                           pos.opened_ms or now_fn())
            try:
                summary = engine.run(stop)  # closes the dispatcher; the close-out's alerts go inline
                _close_out(broker, reconciler, ledger, s.ledger.outage_grace_seconds, events)
            finally:
                _after_tick(engine, broker, metrics, redis_beat, None, state, bot_id, "stopped")
    finally:
        if metrics is not None:
            metrics.close()
        if redis_beat is not None:
            redis_beat.close()
    return LiveSummary(summary, env, plan.account, state["ticks"], broker.exchange_status(),
                       {"start": start_report.to_dict()}, warnings, options.metrics_port)


def _write_ahead(ledger: Any, order: Any) -> None:
    """Write a new order's record before it is sent. A record that cannot be written means an
    order that is not sent: the ledger's outage becomes :class:`OrderRejected` (the engine
    records it rejected, buffered, and halts after the bar)."""
    try:
        ledger.flush()
    except LedgerUnavailable as exc:
        raise OrderRejected(f"{order.symbol} {order.side} {order.client_order_id} was not sent: its write-ahead "
                            f"record could not be written ({ledger.outage.reason if ledger.outage else exc.cause})",
                            "trading resumes when the ledger is back") from None


def _reconcile_periodic(reconciler: Any, ledger: Any) -> Any:
    """``reconciler.periodic()``; a ledger outage met inside is noted on the ledger (the
    engine halts after the bar) instead of ending the run. ``None`` when it was cut short."""
    try:
        return reconciler.periodic()
    except Exception as exc:
        if ledger.outage_from(exc) is None:  # not an outage: a bug or bad data
            raise
        return None


def _close_out(broker: LiveBroker, reconciler: Any, ledger: Any, grace_s: float, events: _Events) -> None:
    """After the last bar: poll the orders still tracked once more and write what changed
    (an order whose fate was unknown, trades of the last bar), so the ledger ends equal to
    the exchange, with the deliveries of alerts raised after the engine stopped. Open orders
    stay open; the next run adopts them. In a ledger outage the write is retried for
    ``grace_s`` seconds (then the ledger spills it on close)."""
    for symbol in list(broker.markets):
        if not broker.has_open_orders(symbol):
            continue
        try:
            changes = broker.poll(symbol)
        except SigmaxError as err:
            log.warning("closing poll of %s failed: %s; the next run reconciles it", symbol, err.cause)
            continue
        for fill in changes.fills:
            ledger.record_fill(fill.record(reconciler.run_of(fill.client_order_id)))
        for order in changes.orders:
            reconciler.record_order(order)
    events.close_alerts()
    if not ledger.try_flush():
        ledger.ride_out(grace_s)


def _capital(broker: LiveBroker, s: Settings, quote: str, carried: dict[str, Any]) -> tuple[float, float]:
    """(quote capital of the run's book, initial equity): the exchange's quote balance, at
    most ``risk.max_capital`` minus the cost of carried positions; equity adds the carried
    positions at the exchange's last price (their cost when it has none)."""
    held = broker.exchange_balances().get(quote, (0.0, 0.0))[1]
    cost = sum(p.qty * p.avg_price for p in carried.values())
    cap = s.risk.max_capital
    capital = held if cap is None else max(0.0, min(held, cap - cost))
    equity = capital
    for symbol, pos in carried.items():
        equity += pos.qty * (broker.last_price(symbol) or pos.avg_price)
    return capital, equity


def _backfill_since(last_bar: int | None, now: int, tf_ms: int, max_bars: int, events: Callable) -> int | None:
    """The open time after which missed bars are backfilled (``None``: none missed or no
    earlier run). More than ``max_bars`` missed: the older ones are reported, not traded."""
    if last_bar is None:
        return None
    due = (now // tf_ms) * tf_ms - tf_ms  # newest closed bar
    missed = (due - last_bar) // tf_ms
    if missed <= 0:
        return None
    if missed > max_bars:
        since = due - max_bars * tf_ms
        events("warning", "feed.gap", f"{missed} bars were missed since the last run; only the newest {max_bars} are "
               "backfilled (live.backfill_max_bars)", {"last_bar_ms": last_bar, "from_ms": since})
        return since
    events("info", "feed.backfill", f"backfilling {missed} bars missed since the last run",
           {"last_bar_ms": last_bar})
    return last_bar


def _report_staleness(feed: Any, step: Any, now: int, tf_ms: int, stale_ms: int, backfill_until: int,
                      events: Callable, state: dict[str, Any]) -> None:
    """Record stale data: a symbol the feed holds as stale, or a bar that reached the
    engine later than ``stale_ms`` after the next one was due (the feed was stalled; the
    bars it missed follow in order). Backfilled bars are late by design and not reported."""
    from sigmax_cli.data.candles import _iso

    stale = feed.staleness
    if stale is not None and state["stale"] != stale.symbol:
        events("warning", "feed.stale", f"no new bar of {stale.symbol} for {stale.overdue_ms // 1000} s past its "
               "close", {"symbol": stale.symbol, "overdue_ms": stale.overdue_ms})
    state["stale"] = stale.symbol if stale is not None else None
    late = now - (step.ts_ms + 2 * tf_ms)
    is_late = step.ts_ms > backfill_until and late > stale_ms
    if is_late and not state.get("late"):  # once per stall
        events("warning", "feed.stale", f"the bar of {_iso(step.ts_ms)} arrived {late // 1000} s after the next one "
               "was due: the data feed was stalled; the bars it missed follow in order", {"late_ms": late})
    state["late"] = is_late


def _after_tick(engine: Engine, broker: LiveBroker, metrics: LiveMetrics | None, redis_beat: RedisHeartbeat | None,
                events: Callable | None, state: dict[str, Any], bot_id: str, status: str) -> None:
    exchange = broker.exchange_status()
    if events is not None and exchange.connection != state["connection"] and exchange.connection != "unknown":
        level = "info" if exchange.connection == "connected" else "warning"
        why = f" ({exchange.last_error})" if exchange.connection != "connected" and exchange.last_error else ""
        events(level, f"exchange.{exchange.connection}", f"{exchange.exchange} is {exchange.connection}{why}",
               {"latency_p50_ms": exchange.latency_p50_ms})
    state["connection"] = exchange.connection
    if metrics is not None:
        metrics.update(engine)
    if redis_beat is not None:
        redis_beat.beat({"bot_id": bot_id, "run_id": engine.cfg.run_id, "mode": engine.cfg.mode,
                         "host": socket.gethostname(), "ts_ms": int(time.time() * 1000), "status": status,
                         "bar_ms": engine.last_bar_ms, "equity": engine.equity,
                         "trading_state": engine.guard.state.value, "connection": exchange.connection})
