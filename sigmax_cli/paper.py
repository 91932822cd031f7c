"""Paper trading: wires candles (files or live public data), the strategy, the paper
broker, the RiskGuard and the ledger into one :class:`~sigmax_cli.engine.Engine` run.

Everything a user can get wrong is checked in :func:`prepare_paper` before anything is
written: dates, data files, symbols, strategy, markets, balance. Only then
:func:`run_paper` opens the ledger and starts the run.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigmax_cli.data.candles import Candles, discover, load_discovered
from sigmax_cli.engine import Engine, EngineConfig, RunSummary
from sigmax_cli.errors import ConfigError, DataError, RiskBlocked
from sigmax_cli.markets import MarketRules, load_markets_file, markets_file_beside
from sigmax_cli.settings import Settings
from sigmax_cli.strategies.base import history_bars
from sigmax_cli.timeframes import parse_time

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PaperOptions:
    """Options of one paper run that are not settings.

    Attributes:
        data: a candle file or a directory in freqtrade's layout; ``None`` = live public data.
        symbols: symbols named on the command line; ``None`` = every file of the timeframe
            in a ``data`` directory (or the profile's symbols for live data).
        start, end: ISO dates/times (UTC) bounding the replay, ``start <= t < end``.
        strategy: ``"rules"`` or ``"rl:MODEL.zip"``.
        speed: replay at N x real time; 0 = as fast as possible.
        max_bars: stop after N bars (all symbols counted).
        run_id: ledger id of the run; generated when ``None``.
    """

    data: Path | None = None
    symbols: list[str] | None = None
    start: str | None = None
    end: str | None = None
    strategy: str = "rules"
    speed: float = 0.0
    max_bars: int | None = None
    run_id: str | None = None


@dataclass
class PaperPlan:
    """A validated paper run, ready to start.

    Attributes:
        markets: market rules per symbol; a symbol missing here trades with
            :func:`~sigmax_cli.markets.default_rules` (and has a line in ``warnings``).
        markets_file: the ccxt markets file the rules came from (``--markets`` /
            ``SIGMAX_MARKETS_FILE``, or the ``markets.json`` beside ``--data``); ``None``
            when there is none (live data takes the exchange's markets).
        markets_beside_data: ``markets_file`` was found beside ``--data``, not given.
    """

    settings: Settings
    options: PaperOptions
    run_id: str
    strategy: Any
    feed: Any
    markets: dict[str, MarketRules]
    quote: str
    warnings: list[str] = field(default_factory=list)
    markets_file: Path | None = None
    markets_beside_data: bool = False


def new_run_id(mode: str) -> str:
    """``paper-20261121T151200-1a2b3c``: mode, UTC start time, random suffix."""
    return f"{mode}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def prepare_paper(settings: Settings, options: PaperOptions) -> PaperPlan:
    """Validate everything and build the feed, strategy and markets; writes nothing.

    Market rules come from ``settings.markets_file`` (``--markets`` / ``SIGMAX_MARKETS_FILE``)
    when set; otherwise, for a replay, from the ``markets.json`` that ``sigmax data download``
    wrote beside the data (in ``options.data`` when it is a directory, in its parent when it
    is a file), if there is one; for live data, from the exchange (an explicit file wins per
    symbol). Symbols without rules get defaults and a line in ``warnings``.

    Raises:
        ConfigError: bad dates, run id, strategy, markets file (given, or corrupt beside the
            data) or mixed quote currencies.
        DataError: missing, corrupt, empty or too short data.
        ExchangeError: live data requested and the exchange cannot be reached.
    """
    from sigmax_cli.strategy_spec import load_strategy

    start_ms = parse_time(options.start, "--start") if options.start else None
    end_ms = parse_time(options.end, "--end") if options.end else None
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"--start {options.start} is not before --end {options.end}", "swap or correct the dates")
    run_id = options.run_id or new_run_id("paper")
    if not _RUN_ID_RE.match(run_id):
        raise ConfigError(f"run id {run_id!r} has characters a run id cannot have",
                          "use letters, digits, '.', '_' and '-' (at most 64)")
    if options.speed < 0:
        raise ConfigError("--speed must be 0 (as fast as possible) or more", "pass e.g. --speed 0 or --speed 60")
    if options.max_bars is not None and options.max_bars <= 0:
        raise ConfigError("--max-bars must be positive", "pass e.g. --max-bars 1000")
    refuse_if_killswitch_engaged(settings)
    strategy = load_strategy(options.strategy, settings)
    warnings: list[str] = []
    markets: dict[str, MarketRules] = {}
    markets_file, beside_data = settings.markets_file, False
    if markets_file is not None:
        markets = load_markets_file(markets_file)
    if options.data is not None:
        feed = _replay_feed(settings, options, strategy, start_ms, end_ms)
        if markets_file is None and (markets_file := markets_file_beside(options.data)) is not None:
            markets, beside_data = _load_markets_beside_data(markets_file), True
    else:
        if end_ms is not None:
            raise ConfigError("--end needs --data: a live run has no end date",
                              "stop it with --max-bars or Ctrl-C, or replay files with --data")
        feed, live_markets = _live_feed(settings, options, strategy, start_ms)
        markets = {**live_markets, **markets}
    quotes = {s.split("/")[1].split(":")[0] for s in feed.symbols}
    if len(quotes) != 1:
        raise ConfigError(f"the symbols mix quote currencies ({', '.join(sorted(quotes))})",
                          "paper-trade one quote currency per run")
    for sym in feed.symbols:
        if sym not in markets:
            warnings.append(f"no market metadata for {sym}: amount step 1e-8 and no minimum notional assumed "
                            "(pass --markets FILE with ccxt markets for real precision)")
    return PaperPlan(settings, options, run_id, strategy, feed, markets, quotes.pop(), warnings,
                     markets_file=markets_file, markets_beside_data=beside_data)


def _load_markets_beside_data(path: Path) -> dict[str, MarketRules]:
    """:func:`load_markets_file` for the ``markets.json`` found beside ``--data``.

    Raises:
        ConfigError: the file is unusable; the sentence says where it was found and how to
            replace or bypass it.
    """
    try:
        return load_markets_file(path)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.cause}, found beside --data",
            "delete it or rerun `sigmax data download` into that directory, or pass --markets FILE",
        ) from None


def spill_dir(settings: Settings) -> Path:
    """Where a run leaves the ledger rows it could not write before giving up on a ledger
    outage (``$SIGMAX_HOME/ledger-spill``); the next run on the same ledger writes them in."""
    return settings.home / "ledger-spill"


def refuse_if_killswitch_engaged(settings: Settings) -> None:
    """A bot started while the kill switch is engaged, or while its state is unknown,
    refuses to trade (unknown is never released).

    Raises:
        RiskBlocked: the switch is engaged (file or Redis), with who, when and why; or a
            store cannot be read (Redis unreachable or hung, the flag file unreadable).
    """
    from sigmax_cli.risk.killswitch import KillSwitch

    status = KillSwitch.from_settings(settings).status()
    if status.engaged:
        since = datetime.fromtimestamp(status.since_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") \
            if status.since_ms else "an unknown time"
        raise RiskBlocked(
            f"the kill switch is engaged (since {since} by {status.by or 'unknown'}: {status.reason}), "
            "so no bot may trade", "release it with `sigmax panic --release --reason ...` once it is safe")
    if not status.released:
        raise RiskBlocked(
            f"the kill switch state is unknown ({status.unknown_reason}), so no bot may start",
            "bring Redis back or fix SIGMAX_REDIS_URL / the flag file's permissions, then check "
            "`sigmax panic --status`")


def _replay_feed(settings: Settings, options: PaperOptions, strategy, start_ms, end_ms):
    from sigmax_cli.feeds import ReplayFeed

    path = Path(options.data)
    timeframe = settings.timeframe
    files = discover(path, options.symbols, timeframe)
    candles: dict[str, Candles] = {}
    skips: dict[str, int] = {}
    # bars loaded before --start: the history the features need to settle (``strategy.history``,
    # measured by `sigmax strategy check`), at least the warm-up; trading still starts at --start
    history = history_bars(strategy)
    for file in files:
        # a single file keeps the timeframe of its name (BTC_USDT-5m.json); prices.csv: the options'
        c = load_discovered(path, file, (options.symbols or [None])[0], timeframe)
        if options.symbols and path.is_file() and c.symbol not in options.symbols:
            raise DataError(f"{file.name} holds {c.symbol}, not {', '.join(options.symbols)}",
                            "pass the matching --symbols or another file")
        if len(c) == 0:
            raise DataError(f"{file} holds no candles", "download data with `sigmax data download`")
        if start_ms is not None:
            import numpy as np

            at = int(np.searchsorted(c.ts, start_ms))
            lo = max(0, at - history)
            start_cut = int(c.ts[lo]) if lo < len(c) else start_ms
            skip = max(strategy.warmup, at - lo)
        else:
            start_cut, skip = None, strategy.warmup
        sliced = c.slice(start_cut, end_ms)
        if len(sliced) <= skip or (start_ms is not None and not (sliced.ts >= start_ms).any()):
            raise DataError(
                f"{c.symbol} has {max(0, len(sliced) - skip)} bars to trade in the chosen period "
                f"after the strategy's {strategy.warmup}-bar warm-up",
                "widen --start/--end or check the data covers that period",
            )
        candles[c.symbol] = sliced
        skips[c.symbol] = skip
    return ReplayFeed(candles, strategy.features, skip=skips)


def _live_feed(settings: Settings, options: PaperOptions, strategy, start_ms: int | None):
    """Live public candles via ccxt (no keys). With ``start_ms`` the bars since then are
    replayed first (catch-up), then new closed bars as they appear.

    Raises:
        ConfigError: unknown symbol or timeframe on the exchange.
        ExchangeError / TemporaryError: the exchange cannot be reached.
    """
    import math

    from sigmax_cli.exchange.client import exchange_from_settings, load_markets, require_market
    from sigmax_cli.live_feed import LiveFeed
    from sigmax_cli.markets import from_ccxt
    from sigmax_cli.timeframes import timeframe_to_ms

    exchange = exchange_from_settings(settings, sandbox=False, with_keys=False)
    ccxt_markets = load_markets(exchange)
    symbols = options.symbols or list(settings.symbols)
    for sym in symbols:
        require_market(exchange, sym)
    markets = {s: from_ccxt(ccxt_markets[s], precision_mode=exchange.precisionMode) for s in symbols}
    tf_ms = timeframe_to_ms(settings.timeframe)
    steps = math.ceil(options.max_bars / len(symbols)) if options.max_bars else None
    feed = LiveFeed(
        exchange, symbols, settings.timeframe, strategy.features,
        history=history_bars(strategy) + 50,
        since_ms=start_ms - tf_ms if start_ms is not None else None, max_bars=steps,
        stale_after_ms=3 * tf_ms, on_stale="record",
    )
    return feed, markets


class SentimentFeed:
    """The newest overall research sentiment from the Redis signal stream, cached.

    Reads ``latest_signal(...).value("score")`` at most every ``refresh_s`` seconds of wall
    time (the risk guard asks at every bar); signals older than ``max_age_ms`` count as none.
    Redis trouble also counts as none: the sentiment rule then does nothing, it never halts.
    """

    def __init__(self, redis_url: str, stream: str, refresh_s: float = 60.0,
                 max_age_ms: int = 6 * 3_600_000) -> None:
        self.redis_url, self.stream = redis_url, stream
        self.refresh_s, self.max_age_ms = refresh_s, max_age_ms
        self._value: float | None = None
        self._checked = float("-inf")

    def __call__(self) -> float | None:
        import time as _time

        now = _time.monotonic()
        if now - self._checked < self.refresh_s:
            return self._value
        self._checked = now
        try:
            from sigmax_cli.research.signals import connect, latest_signal

            signal = latest_signal(connect(self.redis_url, timeout_s=2.0), self.stream)
        except Exception:  # noqa: BLE001 - StreamUnavailable, redis errors: no sentiment, no halt
            self._value = None
            return None
        fresh = signal is not None and _time.time() * 1000 - signal.ms <= self.max_age_ms
        self._value = signal.value("score") if fresh else None
        return self._value


def run_paper(plan: PaperPlan, stop: threading.Event, observer: Any = None) -> RunSummary:
    """Open the ledger, record the run and drive the engine until done or ``stop``.

    Raises:
        LedgerError: the ledger cannot be opened.
    """
    from sigmax_cli.brokers.paper import PaperBroker
    from sigmax_cli.ledger import Ledger, now_ms
    from sigmax_cli.risk.guard import build_guard

    s = plan.settings
    paper = s.paper
    broker = PaperBroker({plan.quote: paper.balance}, plan.markets, maker_fee=paper.maker_fee,
                         taker_fee=paper.taker_fee, slippage_bps=paper.slippage_bps,
                         participation=paper.participation)
    from sigmax_cli.timeframes import timeframe_to_ms

    guard = build_guard(s.risk, timeframe_to_ms(plan.feed.timeframe))
    config = EngineConfig(
        run_id=plan.run_id, mode="paper", profile=s.profile, quote=plan.quote, initial_equity=paper.balance,
        position_fraction=s.strategy.position_fraction, max_order_notional=s.risk.max_order_notional,
        max_position_notional=s.risk.max_position_notional, taker_fee=paper.taker_fee,
        slippage_bps=paper.slippage_bps, daily_loss_limit_pct=s.risk.daily_loss_limit_pct,
        max_consecutive_rejections=s.risk.max_consecutive_rejections,
        speed=plan.options.speed, max_bars=plan.options.max_bars, ledger_grace_s=s.ledger.outage_grace_seconds,
    )
    params = {"strategy": plan.strategy.params(), "risk": s.risk.model_dump(), "paper": paper.model_dump(),
              "speed": plan.options.speed, "start": plan.options.start, "end": plan.options.end,
              "markets_file": str(plan.markets_file) if plan.markets_file else None}
    from sigmax_cli.ledger.liveness import paper_interval_ms
    from sigmax_cli.risk.killswitch import KillSwitch, KillSwitchWatcher

    with KillSwitchWatcher(KillSwitch.from_settings(s)) as watcher, \
            Ledger(s.ledger_url, spill_dir=spill_dir(s)) as ledger:
        ledger.start_run(
            run_id=plan.run_id, mode="paper", profile=s.profile, exchange=s.exchange,
            strategy=plan.options.strategy, params=params, symbols=list(plan.feed.symbols),
            timeframe=plan.feed.timeframe, data_files=plan.feed.data_files(), initial_equity=paper.balance,
            heartbeat_interval_ms=paper_interval_ms(timeframe_to_ms(plan.feed.timeframe), plan.options.speed,
                                                    replay=plan.options.data is not None),
        )
        for warning in plan.warnings:
            ledger.record_event(plan.run_id, now_ms(), "warning", "markets.default", warning)
        from sigmax_cli.alerts.dispatcher import from_settings as alerts_from_settings

        sentiment = SentimentFeed(s.redis_url.get_secret_value(), s.research.stream) if s.redis_url else None
        engine = Engine(config=config, feed=plan.feed, strategy=plan.strategy, broker=broker, guard=guard,
                        ledger=ledger, observer=observer, killswitch=watcher, alerts=alerts_from_settings(s),
                        sentiment_fn=sentiment)
        return engine.run(stop)
