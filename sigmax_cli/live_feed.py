"""``LiveFeed``: the :class:`~sigmax_cli.feeds.Feed` of closed bars polled from an
exchange's public OHLCV endpoint (no API key).

Life of a feed, per symbol:

1. **Warm-up** (first call of :meth:`LiveFeed.steps`): markets are loaded, the symbols and
   timeframe checked, the exchange clock read, and the last ``history`` closed bars fetched.
   They feed the features but are not yielded. With ``since_ms`` (the last bar a previous
   run saw, e.g. from the ledger) the bars after it are *backfilled*: yielded first, in order.
2. **Polling**: every ``poll_interval_s`` (default: a tenth of the timeframe, 1 to 60 s)
   the feed asks for the bars after the last one it holds, but only once a new bar is due
   (its ``open + timeframe`` has passed on the exchange clock), so idle polls cost no request.
   The still-forming bar is never yielded. After a stall (network down, laptop asleep,
   the generator not pulled) every missed bar is fetched and yielded in order: none is
   skipped. A bar that turns up after later bars were yielded cannot be put back in time
   order: it is logged as a warning and counted in :attr:`LiveFeed.late_bars`.
3. **Steps**: one :class:`~sigmax_cli.feeds.Step` per bar open time, holding the bar of
   every symbol that has one. A time is released only when every symbol has been polled
   through it, so a symbol whose request failed does not lose its bar.
4. **Features**: ``feature_fn`` runs over the last ``window`` bars ending at each new bar
   (causal, as in a replay); ``Bar.i`` is that bar's index (the newest) in the series.

Errors: temporary exchange errors while polling are logged and retried at the next poll
(:attr:`LiveFeed.last_error`); other exchange errors are raised. An exchange unreachable
at warm-up raises :class:`~sigmax_cli.errors.TemporaryError` ("cannot reach binance public
API at ...; check the network or use --data for an offline replay").

Staleness (``stale_after_ms``): a symbol is stale when its next bar is overdue by more
than ``stale_after_ms``, i.e. ``now - (last_bar_open + 2 * timeframe) > stale_after_ms``
(UTC ms). The feed then records a :class:`Staleness` in :attr:`LiveFeed.staleness`
(cleared when fresh bars arrive) and, with ``on_stale="raise"`` (default), raises
:class:`FeedStale` out of :meth:`steps`; with ``on_stale="record"`` it logs one warning
per episode and keeps polling.

The stop event is checked before every request, every yield and during every wait
(``stop.wait``), so setting it ends the generator within one HTTP timeout at most.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sigmax_cli.data.candles import _iso, validate
from sigmax_cli.data.download import fetch_closed_bars
from sigmax_cli.errors import ConfigError, TemporaryError
from sigmax_cli.exchange.client import (
    load_markets,
    require_market,
    require_timeframe,
    server_time_ms,
)
from sigmax_cli.exchange.errors import RetryPolicy, api_url
from sigmax_cli.feeds import FeatureFn, Step
from sigmax_cli.logs import get_logger
from sigmax_cli.model import Bar
from sigmax_cli.timeframes import timeframe_to_ms

log = get_logger(__name__)
OFFLINE_FIX = "check the network or use --data for an offline replay"


@dataclass(frozen=True)
class Staleness:
    """A symbol whose next closed bar is overdue.

    Attributes:
        symbol: the stale symbol.
        last_bar_ms: open time of the newest closed bar held (UTC ms), ``None`` if none.
        overdue_ms: how long past its expected close the next bar is (ms).
        detected_ms: exchange-clock time of the check (UTC ms).
    """

    symbol: str
    last_bar_ms: int | None
    overdue_ms: int
    detected_ms: int


class FeedStale(TemporaryError):
    """No new closed bar for longer than ``stale_after_ms``; ``staleness`` says which symbol."""

    def __init__(self, cause: str, fix: str | None = None, staleness: Staleness | None = None):
        super().__init__(cause, fix)
        self.staleness = staleness


class _Stopped(Exception):
    """The stop event was set during a wait."""


class LiveFeed:
    """Closed bars of ``symbols`` from an exchange's public OHLCV, as :class:`Step` objects.

    Args:
        exchange: ccxt exchange (``create_exchange``; no keys needed).
        symbols: unified symbols, ``["BTC/USDT", "ETH/USDT"]``.
        timeframe: ``1m``, ``1h``...
        feature_fn: the strategy's causal ``features(candles)``.
        history: closed bars per symbol for the warm-up (not yielded); a few more
            periods are fetched so that an exchange gap does not shorten it.
        window: bars the features are computed over (rolling); at least ``history``.
        poll_interval_s: seconds between polls; default ``timeframe / 10`` within 1-60 s.
        stale_after_ms: see module docstring; ``None`` disables the check.
        on_stale: ``"raise"`` (:class:`FeedStale`) or ``"record"`` (log and keep going).
        since_ms: open time of the last bar a previous run processed: later bars are
            backfilled (yielded) at start; ``None`` yields only bars closing from now on.
        max_bars: stop after this many bar open times (steps); ``bars_total`` is then
            ``max_bars * len(symbols)`` (an upper bound when a symbol misses a bar).
        sleep: ``sleep(seconds)`` for tests; default waits on the stop event.
        clock: returns the exchange's "now" in UTC ms; default: the local clock corrected
            by the exchange's time at warm-up.
        retry: back-off for each request (default: 3 attempts, waits honour ``stop``).
    """

    def __init__(
        self,
        exchange: Any,
        symbols: list[str],
        timeframe: str,
        feature_fn: FeatureFn,
        *,
        history: int = 500,
        window: int = 1000,
        poll_interval_s: float | None = None,
        stale_after_ms: int | None = None,
        on_stale: Literal["raise", "record"] = "raise",
        since_ms: int | None = None,
        max_bars: int | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], int] | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not symbols:
            raise ConfigError("the live feed has no symbol", "pass --symbols, e.g. BTC/USDT")
        if on_stale not in ("raise", "record"):
            raise ValueError("on_stale must be 'raise' or 'record'")
        self.exchange = exchange
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.tf_ms = timeframe_to_ms(timeframe)
        self.feature_fn = feature_fn
        self.history = max(1, int(history))
        self.window = max(int(window), self.history)
        self.poll_interval_s = (
            float(poll_interval_s)
            if poll_interval_s is not None
            else min(60.0, max(1.0, self.tf_ms / 10_000))
        )
        self.stale_after_ms = stale_after_ms
        self.on_stale = on_stale
        self.since_ms = since_ms
        self.max_bars = max_bars
        self._sleep = sleep
        self._clock = clock
        self._offset_ms = 0
        self._retry = retry
        self._started = False
        self._rows: dict[str, deque[list[float]]] = {
            s: deque(maxlen=self.window) for s in self.symbols
        }
        self._last: dict[str, int] = {}
        self._synced: dict[str, int] = {}
        self._pending: dict[str, list[Bar]] = {s: [] for s in self.symbols}
        self._emitted_ts: int | None = None
        self._steps = 0
        self._yielded: dict[str, dict[str, Any]] = {
            s: {"bars": 0, "first_ms": None, "last_ms": None, "gaps": 0} for s in self.symbols
        }
        self.late_bars = 0
        self.staleness: Staleness | None = None
        self.last_error: TemporaryError | None = None
        # set at the first failed poll, cleared once every symbol is in sync again (UTC ms)
        self.unreachable_since_ms: int | None = None

    # ------------------------------------------------------------------ Feed
    @property
    def bars_total(self) -> int | None:
        return None if self.max_bars is None else self.max_bars * len(self.symbols)

    def data_files(self) -> list[dict[str, object]]:
        source = f"{self.exchange.id} public OHLCV at {api_url(self.exchange)}"
        return [
            {
                "symbol": sym,
                "path": None,
                "sha256": None,
                **self._yielded[sym],
                "source": source,
            }
            for sym in self.symbols
        ]

    def last_bar_ms(self, symbol: str) -> int | None:
        """Open time of the newest closed bar held for ``symbol`` (UTC ms)."""
        return self._last.get(symbol)

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        """Yield steps of closed bars until ``stop`` is set or ``max_bars`` steps were given.

        Raises:
            TemporaryError: the exchange is unreachable at warm-up.
            FeedStale: a symbol is stale and ``on_stale="raise"``.
            ExchangeError, ConfigError: a non-temporary failure (unknown symbol...).
        """
        wait = self._waiter(stop)
        retry = self._retry or RetryPolicy(attempts=3, base_delay=1.0, max_delay=10.0, sleep=wait)
        try:
            if stop.is_set():
                return
            if not self._started:
                self._start(retry)
            while True:
                if stop.is_set():
                    return
                now = self.now_ms()
                self._poll(now, retry, stop)
                yield from self._release(stop)
                if stop.is_set() or self._done():
                    return
                self._check_stale(now)
                wait(self._wait_s(self.now_ms()))
        except _Stopped:
            return

    # ----------------------------------------------------------------- clock
    def now_ms(self) -> int:
        """The exchange's clock (UTC ms) as the feed sees it."""
        if self._clock is not None:
            return int(self._clock())
        return int(time.time() * 1000) + self._offset_ms

    def _waiter(self, stop: threading.Event) -> Callable[[float], None]:
        def wait(seconds: float) -> None:
            if self._sleep is None:
                stop.wait(max(0.0, seconds))
            else:
                self._sleep(max(0.0, seconds))
            if stop.is_set():
                raise _Stopped

        return wait

    def _wait_s(self, now: int) -> float:
        """Until the forming bar closes (plus a second), at most ``poll_interval_s``."""
        if any(self._synced.get(s, -1) < self._due(now) for s in self.symbols):
            return self.poll_interval_s
        next_close = (now // self.tf_ms + 1) * self.tf_ms
        return min(self.poll_interval_s, max(0.0, (next_close - now) / 1000) + 1.0)

    def _due(self, now: int) -> int:
        """Open time of the newest bar closed at ``now``."""
        return (now // self.tf_ms) * self.tf_ms - self.tf_ms

    # --------------------------------------------------------------- warm-up
    def _start(self, retry: RetryPolicy) -> None:
        try:
            load_markets(self.exchange, retry=retry)
            if self._clock is None:
                self._offset_ms = server_time_ms(self.exchange, retry=retry) - int(
                    time.time() * 1000
                )
        except TemporaryError as err:
            raise self._unreachable(err) from err
        require_timeframe(self.exchange, self.timeframe)
        for sym in self.symbols:
            require_market(self.exchange, sym)
        now = self.now_ms()
        due = self._due(now)
        # A little more than ``history`` periods, so that a maintenance gap does not leave
        # the warm-up short; only the last ``history`` bars are kept.
        periods = self.history - 1 + max(10, self.history // 10)
        cutoff = due if self.since_ms is None else min(due, self.since_ms)
        start = cutoff - periods * self.tf_ms
        for sym in self.symbols:
            try:
                rows = fetch_closed_bars(
                    self.exchange, sym, self.timeframe, start, None, now, retry=retry
                )
            except TemporaryError as err:
                raise self._unreachable(err) from err
            self._last[sym] = start - self.tf_ms
            warm = rows[rows[:, 0] <= cutoff][-self.history :]
            backfill = rows[rows[:, 0] > cutoff]
            if len(warm):
                self._last[sym] = int(warm[0, 0]) - self.tf_ms
            self._append(sym, warm, emit=False)
            self._append(sym, backfill, emit=True)
            self._synced[sym] = due
        if self.since_ms is not None:
            self._emitted_ts = self.since_ms
        self._started = True
        log.info(
            "live feed %s %s: warmed up with %s bars",
            self.timeframe,
            ", ".join(self.symbols),
            {s: len(r) for s, r in self._rows.items()},
        )

    def _unreachable(self, err: TemporaryError) -> TemporaryError:
        where = api_url(self.exchange)
        return TemporaryError(
            f"cannot reach {self.exchange.id} public API at {where} ({err.cause})", OFFLINE_FIX
        )

    # --------------------------------------------------------------- polling
    def _poll(self, now: int, retry: RetryPolicy, stop: threading.Event) -> None:
        due = self._due(now)
        for sym in self.symbols:
            if stop.is_set():
                raise _Stopped
            if self._synced.get(sym, -1) >= due:
                continue
            try:
                rows = fetch_closed_bars(
                    self.exchange,
                    sym,
                    self.timeframe,
                    self._last[sym] + self.tf_ms,
                    None,
                    now,
                    retry=retry,
                )
            except TemporaryError as err:
                self.last_error = err
                if self.unreachable_since_ms is None:
                    self.unreachable_since_ms = now
                log.warning("live feed %s: %s; trying again at the next poll", sym, err.cause)
                continue
            self._append(sym, rows, emit=True)
            self._synced[sym] = due
        if all(self._synced.get(sym, -1) >= due for sym in self.symbols):
            self.unreachable_since_ms = None  # every symbol is in sync again

    def _append(self, sym: str, rows: np.ndarray, *, emit: bool) -> None:
        """Add closed bars (oldest first) to ``sym``'s window; when ``emit``, queue a Bar each."""
        if len(rows) == 0:
            return
        checked = validate(rows, sym, self.timeframe, self.tf_ms)
        buf = self._rows[sym]
        for t, o, h, low, c, v in checked.rows():
            if t <= self._last[sym]:
                continue
            buf.append([t, o, h, low, c, v])
            self._last[sym] = t
            if emit:
                window = validate(
                    np.asarray(buf, dtype=np.float64), sym, self.timeframe, self.tf_ms
                )
                features = self.feature_fn(window)
                self._pending[sym].append(Bar(sym, t, o, h, low, c, v, len(window) - 1, features))
        if self.staleness is not None and self.staleness.symbol == sym:
            self.staleness = None

    def _done(self) -> bool:
        return self.max_bars is not None and self._steps >= self.max_bars

    def _release(self, stop: threading.Event) -> Iterator[Step]:
        """Steps for every open time all symbols have been polled through, oldest first.

        A step's bars leave the pending queues only when it is about to be yielded, so a
        stop (or ``max_bars``) keeps the rest for the next call of :meth:`steps`.
        """
        horizon = min(max(self._synced.get(s, -1), self._last.get(s, -1)) for s in self.symbols)
        if self._emitted_ts is not None:
            for sym in self.symbols:
                late = [b for b in self._pending[sym] if b.ts_ms <= self._emitted_ts]
                for bar in late:
                    self.late_bars += 1
                    log.warning(
                        "live feed %s: bar %s arrived after later bars were yielded; not yielded",
                        sym,
                        _iso(bar.ts_ms),
                    )
                self._pending[sym] = [b for b in self._pending[sym] if b.ts_ms > self._emitted_ts]
        times = sorted(
            {b.ts_ms for sym in self.symbols for b in self._pending[sym] if b.ts_ms <= horizon}
        )
        for ts in times:
            if stop.is_set() or self._done():
                return
            bars: list[Bar] = []
            for sym in self.symbols:
                queue = self._pending[sym]
                if queue and queue[0].ts_ms == ts:
                    bars.append(queue.pop(0))
                    seen = self._yielded[sym]
                    seen["bars"] += 1
                    if seen["last_ms"] is not None and ts - seen["last_ms"] > self.tf_ms:
                        seen["gaps"] += 1  # the exchange has no bar in between
                    seen["last_ms"] = ts
                    if seen["first_ms"] is None:
                        seen["first_ms"] = ts
            self._emitted_ts = ts
            self._steps += 1
            yield Step(ts, bars)

    def _check_stale(self, now: int) -> None:
        if self.stale_after_ms is None:
            return
        for sym in self.symbols:
            last = self._last.get(sym)
            overdue = now - ((last if last is not None else now) + 2 * self.tf_ms)
            if overdue <= self.stale_after_ms:
                continue
            fresh_episode = self.staleness is None or self.staleness.symbol != sym
            self.staleness = Staleness(sym, last, overdue, now)
            why = f" (last error: {self.last_error.cause})" if self.last_error is not None else ""
            newest = _iso(last) if last is not None else "never"
            cause = (
                f"no new {self.timeframe} bar of {sym} from {self.exchange.id} for "
                f"{overdue // 1000} s past its close; the newest opened at {newest}{why}"
            )
            if self.on_stale == "raise":
                raise FeedStale(
                    cause, "check the network and the exchange's status page", self.staleness
                )
            if fresh_episode:
                log.warning("live feed stale: %s", cause)
            return
