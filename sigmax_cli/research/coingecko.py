"""CoinGecko market data: price, changes, market cap and volume per coin.

One ``GET {base}/coins/{id}/market_chart?vs_currency=usd&days=30`` per coin (CoinGecko
answers hourly points for 2-90 days, daily ones beyond): ``{"prices": [[ms, price], ...],
"market_caps": [...], "total_volumes": [...]}``, oldest first, the last point being "now".
Prices are in USD (CoinGecko's ``vs_currency``; USDT tracks it closely). Context produced::

    {"market": {"BTC": {"coin_id": "bitcoin", "as_of_ms": ..., "price": 92898.06,
                        "change_24h_pct": ..., "change_7d_pct": ..., "change_30d_pct": ...,
                        "market_cap": ..., "volume_24h": ...}}}

``change_<span>_pct`` is percent (5.0 = +5 %) from the newest point at or before
``as_of - span`` to the last point; ``None`` when the history is shorter than the span.
A coin whose request fails is left out and the source reported as degraded; a ticker
without a known CoinGecko id is skipped with a note.
"""

from __future__ import annotations

import bisect
from typing import Any

from sigmax_cli.research.base import Fetched, Source, SourceError
from sigmax_cli.research.coins import COINGECKO_IDS
from sigmax_cli.research.http import HttpClient

HOUR_MS = 3_600_000
SPANS_MS = {"24h": 24 * HOUR_MS, "7d": 7 * 24 * HOUR_MS, "30d": 30 * 24 * HOUR_MS}
DAYS = 30


class CoinGeckoSource(Source):
    """Market data for ``coins`` (tickers) from CoinGecko.

    Args:
        base_url: API base, ``https://api.coingecko.com/api/v3`` by default.
        coins: tickers (``["BTC", "ETH"]``), mapped to ids with :data:`COINGECKO_IDS`.
        days: history requested, days (30 covers the 30-day change).
    """

    name = "coingecko"
    kind = "coingecko"

    def __init__(self, base_url: str, coins: list[str], days: int = DAYS) -> None:
        self.base_url = base_url.rstrip("/")
        self.coins = coins
        self.days = days

    def skip_reason(self) -> str | None:
        if not self.coins:
            return "no market coins configured (research.market_coins)"
        return None

    def fetch(self, http: HttpClient) -> Fetched:
        market: dict[str, Any] = {}
        notes: list[str] = []
        errors: list[str] = []
        for ticker in self.coins:
            coin_id = COINGECKO_IDS.get(ticker)
            if coin_id is None:
                notes.append(f"no CoinGecko id known for {ticker}")
                continue
            url = f"{self.base_url}/coins/{coin_id}/market_chart?vs_currency=usd&days={self.days}"
            try:
                market[ticker] = {"coin_id": coin_id, **summarise_chart(http.get_json(url, who=self.name), ticker)}
            except SourceError as exc:
                errors.append(exc.cause)
        if errors and not market:
            raise SourceError("; ".join(errors), "check research.coingecko_url and the network")
        return Fetched(context={"market": market}, notes=notes, errors=errors)


def summarise_chart(body: Any, ticker: str) -> dict[str, Any]:
    """Price, percent changes, market cap and 24 h volume from a ``market_chart`` answer.

    Raises:
        SourceError: the answer is not a market chart (no ``prices`` points).
    """
    try:
        prices = [(int(p[0]), float(p[1])) for p in body["prices"] if p[1] is not None]
        caps = body.get("market_caps") or []
        volumes = body.get("total_volumes") or []
    except (KeyError, TypeError, ValueError, IndexError):
        raise SourceError(f"coingecko: the {ticker} answer is not a market chart", "the API may have changed") from None
    if not prices:
        raise SourceError(f"coingecko: the {ticker} answer holds no prices", "try again later")
    prices.sort()
    times = [t for t, _ in prices]
    as_of, last = prices[-1]
    out: dict[str, Any] = {"as_of_ms": as_of, "price": last}
    for label, span in SPANS_MS.items():
        i = bisect.bisect_right(times, as_of - span) - 1
        ref = prices[i][1] if i >= 0 else None
        out[f"change_{label}_pct"] = (last / ref - 1.0) * 100.0 if ref else None
    out["market_cap"] = _last_value(caps)
    out["volume_24h"] = _last_value(volumes)
    return out


def _last_value(points: Any) -> float | None:
    try:
        return float(points[-1][1]) if points and points[-1][1] is not None else None
    except (TypeError, ValueError, IndexError):
        return None
