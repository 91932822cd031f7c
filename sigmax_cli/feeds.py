"""Market-data feeds for the engine: a replay of candle files, or live closed bars.

A feed yields :class:`Step` objects in time order: one per bar open time, holding the
closed bar of every symbol that has one at that time (a symbol missing a bar, e.g. in an
exchange maintenance gap, is simply absent from that step, never filled in).

Implementations: :class:`ReplayFeed` (here, files) and ``sigmax_cli.live_feed.LiveFeed``
(ccxt public OHLCV). Both compute features through the strategy's causal
``features(candles)`` so that the strategy sees the same thing in both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import DataError
from sigmax_cli.model import Bar, Features

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
        skip: bars at the start of each symbol to use as warm-up only (not yielded): one
            count for every symbol, or a count per symbol (missing symbols: 0).

    Raises:
        DataError: no candles, mixed timeframes, or nothing left to replay after warm-up.
    """

    def __init__(self, candles: dict[str, Candles], feature_fn: FeatureFn, skip: int | dict[str, int] = 0) -> None:
        if not candles or all(len(c) == 0 for c in candles.values()):
            raise DataError("the data holds no candles", "check --data, --start and --end")
        tfs = {c.timeframe for c in candles.values()}
        if len(tfs) != 1:
            raise DataError(f"the data mixes timeframes {sorted(tfs)}", "replay one timeframe at a time")
        self.timeframe = tfs.pop()
        self.symbols = list(candles)
        self.candles = candles
        self.skips = {sym: max(0, skip.get(sym, 0) if isinstance(skip, dict) else skip) for sym in candles}
        self.skip = max(self.skips.values())
        self._features = {sym: feature_fn(c) for sym, c in candles.items()}
        self._lists = {
            sym: (c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                  c.volume.tolist())
            for sym, c in candles.items()
        }
        total = sum(max(0, len(c) - self.skips[sym]) for sym, c in candles.items())
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
             "gaps": len(c.gaps), "duplicates": c.duplicates.count if c.duplicates else 0,
             "out_of_order": c.out_of_order.count if c.out_of_order else 0}
            for sym, c in self.candles.items()
        ]

    def warnings(self) -> list[str]:
        """One sentence per repeated or out-of-order stretch of the replayed files
        (:meth:`Candles.warnings`)."""
        return [w for c in self.candles.values() for w in c.warnings()]

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        # One stable sort of every (time, symbol) pair replaces a per-bar heap merge.
        times, owners, rows = [], [], []
        for order, sym in enumerate(self.symbols):
            n = len(self.candles[sym])
            skip = self.skips[sym]
            if n > skip:
                times.append(self.candles[sym].ts[skip:])
                owners.append(np.full(n - skip, order, dtype=np.int32))
                rows.append(np.arange(skip, n, dtype=np.int64))
        ts_all = np.concatenate(times)
        sort = np.lexsort((np.concatenate(owners), ts_all))
        ts_sorted = ts_all[sort].tolist()
        owner_sorted = np.concatenate(owners)[sort].tolist()
        row_sorted = np.concatenate(rows)[sort].tolist()
        lists = [self._lists[sym] for sym in self.symbols]
        feats = [self._features[sym] for sym in self.symbols]
        symbols = self.symbols
        k, total = 0, len(ts_sorted)
        while k < total:
            if stop.is_set():
                return
            ts = ts_sorted[k]
            bars: list[Bar] = []
            while k < total and ts_sorted[k] == ts:
                o, i = owner_sorted[k], row_sorted[k]
                _, op, hi, lo, cl, vo = lists[o]
                bars.append(Bar(symbols[o], ts, op[i], hi[i], lo[i], cl[i], vo[i], i, feats[o]))
                k += 1
            yield Step(ts, bars)
