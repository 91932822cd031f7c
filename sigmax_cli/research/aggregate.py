"""Sentiment aggregates per coin and overall, plain and time-decayed.

Over the items stored in the ledger whose publication time (first sight when none) lies in
``[now - lookback, now]``:

* ``count``: number of items; ``mean``: arithmetic mean of their scores (in [-1, 1]);
* ``decayed``: exponentially time-weighted mean, weight ``w = 0.5 ** (age / half_life)``
  (age = now - item time; the usual half-life form of exponential decay), so a 6-hour-old
  headline counts half as much as a fresh one with a 6 h half-life. Computed with ages
  shifted by the youngest item's age, which leaves the ratio unchanged and keeps old
  weights from underflowing;
* ``bullish`` / ``bearish`` / ``neutral``: item counts per label (VADER's ±0.05 cut-offs,
  see :mod:`sigmax_cli.research.sentiment`);
* ``newest_ms``: the newest item time (UTC ms).

Means are ``None`` when ``count`` is 0. Items dated up to an hour in the future (a
publisher's clock skew) count as age 0; items dated later are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sigmax_cli.research.sentiment import label
from sigmax_cli.research.store import StoredItem

HOUR_MS = 3_600_000


def summarise(items: list[StoredItem], now_ms: int, half_life_hours: float) -> dict[str, Any]:
    """Aggregate of ``items`` (see the module docstring for the keys)."""
    out: dict[str, Any] = {"count": len(items), "mean": None, "decayed": None, "bullish": 0, "bearish": 0,
                           "neutral": 0, "newest_ms": None}
    if not items:
        return out
    ages = [max(0, now_ms - it.ts_ms) for it in items]
    youngest = min(ages)
    half_life_ms = half_life_hours * HOUR_MS
    weights = [0.5 ** ((age - youngest) / half_life_ms) for age in ages]
    scores = [it.sentiment for it in items]
    out["mean"] = sum(scores) / len(scores)
    out["decayed"] = sum(w * x for w, x in zip(weights, scores, strict=True)) / sum(weights)
    for x in scores:
        out[label(x)] += 1
    out["newest_ms"] = max(it.ts_ms for it in items)
    return out


def aggregate(items: Iterable[StoredItem], symbols: list[str], now_ms: int, half_life_hours: float,
              lookback_hours: float) -> dict[str, Any]:
    """Per-coin and overall aggregates over the lookback window ending at ``now_ms``.

    Returns ``{"overall": {...}, "coins": {ticker: {...}}, "window": {"since_ms", "until_ms",
    "half_life_hours", "lookback_hours"}}``; every configured ticker has an entry, with
    ``count`` 0 when no item mentions it.
    """
    since_ms = now_ms - int(lookback_hours * HOUR_MS)
    window = [it for it in items if since_ms <= it.ts_ms <= now_ms + HOUR_MS]
    per_coin: dict[str, list[StoredItem]] = {sym: [] for sym in symbols}
    for it in window:
        for coin in it.coins:
            if coin in per_coin:
                per_coin[coin].append(it)
    return {
        "overall": summarise(window, now_ms, half_life_hours),
        "coins": {sym: summarise(rows, now_ms, half_life_hours) for sym, rows in per_coin.items()},
        "window": {"since_ms": since_ms, "until_ms": now_ms, "half_life_hours": half_life_hours,
                   "lookback_hours": lookback_hours},
    }
