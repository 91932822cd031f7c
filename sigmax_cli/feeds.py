"""Market-data feeds for the engine: a replay of candle files, or live closed bars.

A feed yields :class:`Step` objects in time order: one per bar open time, holding the
closed bar of every symbol that has one at that time (a symbol missing a bar, e.g. in an
exchange maintenance gap, is simply absent from that step, never filled in).

Implementations: :class:`ReplayFeed` (here, files) and ``sigmax_cli.exchange.feed.LiveFeed``
(ccxt public OHLCV). Both compute features through the strategy's causal
``features(candles)`` so that the strategy sees the same thing in both.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import DataError
from sigmax_cli.strategies.base import Bar, Features

FeatureFn = Callable[[Candles], Features]


@dataclass(slots=True)
class Step:
    """The bars that closed at one bar open time ``ts_ms`` (UTC ms), one per symbol."""

    ts_ms: int
    bars: list[Bar]


class Feed(Protocol):
    """What the engine reads bars from."""

    symbols: list[str]
    timeframe: str

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        """Yield steps in time order until exhausted or ``stop`` is set."""
        ...

    @property
    def bars_total(self) -> int | None:
        """Bars the feed will yield in all (``None`` when live / unbounded)."""
        ...

    def data_files(self) -> list[dict[str, object]]:
        """Provenance for the ledger: ``[{"path", "sha256", "bars", "symbol"}]``."""
        ...


class ReplayFeed:
    """Replays validated candles of several symbols, merged in time order.

    Args:
        candles: one :class:`Candles` per symbol, same timeframe.
        feature_fn: the strategy's ``features``; computed once per symbol over the whole
            series (causal by the Strategy contract).
        skip: bars at the start of each symbol to use as warm-up only (not yielded).

    Raises:
        DataError: no candles, mixed timeframes, or nothing left to replay after warm-up.
    """

    def __init__(self, candles: dict[str, Candles], feature_fn: FeatureFn, skip: int = 0) -> None:
        if not candles or all(len(c) == 0 for c in candles.values()):
            raise DataError("the data holds no candles", "check --data, --start and --end")
        tfs = {c.timeframe for c in candles.values()}
        if len(tfs) != 1:
            raise DataError(f"the data mixes timeframes {sorted(tfs)}", "replay one timeframe at a time")
        self.timeframe = tfs.pop()
        self.symbols = list(candles)
        self.candles = candles
        self.skip = max(0, skip)
        self._features = {sym: feature_fn(c) for sym, c in candles.items()}
        self._lists = {
            sym: (c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                  c.volume.tolist())
            for sym, c in candles.items()
        }
        total = sum(max(0, len(c) - self.skip) for c in candles.values())
        if total == 0:
            longest = max(len(c) for c in candles.values())
            raise DataError(
                f"the data has {longest} bars per symbol at most, all needed for the strategy's "
                f"{self.skip}-bar warm-up",
                "give a longer period (--start earlier) or a shorter warm-up",
            )
        self._total = total

    @property
    def bars_total(self) -> int:
        return self._total

    def features(self, symbol: str) -> Features:
        """The precomputed feature series of ``symbol``."""
        return self._features[symbol]

    def data_files(self) -> list[dict[str, object]]:
        return [
            {"symbol": sym, "path": str(c.source) if c.source else None, "sha256": c.sha256, "bars": len(c),
             "first_ms": int(c.ts[0]) if len(c) else None, "last_ms": int(c.ts[-1]) if len(c) else None,
             "gaps": len(c.gaps)}
            for sym, c in self.candles.items()
        ]

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        heap: list[tuple[int, int, str]] = []
        for order, sym in enumerate(self.symbols):
            if len(self.candles[sym]) > self.skip:
                heap.append((self._lists[sym][0][self.skip], order, sym))
        heapq.heapify(heap)
        cursor = {sym: self.skip for sym in self.symbols}
        while heap:
            if stop.is_set():
                return
            ts = heap[0][0]
            bars: list[Bar] = []
            while heap and heap[0][0] == ts:
                _, order, sym = heapq.heappop(heap)
                i = cursor[sym]
                t, o, h, low, c, v = self._lists[sym]
                bars.append(Bar(sym, ts, o[i], h[i], low[i], c[i], v[i], i, self._features[sym]))
                cursor[sym] = i + 1
                if i + 1 < len(t):
                    heapq.heappush(heap, (t[i + 1], order, sym))
            yield Step(ts, bars)
