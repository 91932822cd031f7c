"""Market rules: precision and limits of a symbol, from ccxt's unified market structure.

Rounding follows ccxt's conventions: amounts are truncated to the amount step
(``amount_to_precision`` uses TRUNCATE) and prices rounded to the nearest tick
(``price_to_precision`` uses ROUND). ccxt ≥ 4 reports Binance precision as tick sizes
(``precisionMode == TICK_SIZE``, e.g. ``amount: 1e-05``); older structures with integer
decimal places are accepted too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError, OrderRejected

DEFAULT_STEP = 1e-8
MARKETS_FILENAME = "markets.json"
"""Name of the ccxt markets file ``sigmax data download`` writes beside the candle files."""


@lru_cache(maxsize=1024)
def _decimals(step: float) -> int:
    """Decimal places of a step size (1e-05 -> 5, 0.5 -> 1, 10 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True)
class MarketRules:
    """Precision and limits of one spot market.

    Attributes:
        symbol: ccxt unified symbol, e.g. ``"BTC/USDT"``.
        base, quote: asset codes.
        amount_step: smallest amount increment, base units (LOT_SIZE stepSize).
        price_tick: smallest price increment, quote (PRICE_FILTER tickSize).
        min_amount: smallest order amount, base units.
        min_notional: smallest order value ``price * amount``, quote (MIN_NOTIONAL / NOTIONAL).
        maker_fee, taker_fee: fractions of notional, when the market states them.
        source: where the rules came from (``"ccxt"``, a file path, or ``"default"``).
    """

    symbol: str
    base: str
    quote: str
    amount_step: float = DEFAULT_STEP
    price_tick: float = DEFAULT_STEP
    min_amount: float = 0.0
    min_notional: float = 0.0
    maker_fee: float | None = None
    taker_fee: float | None = None
    source: str = "default"

    def amount_to_precision(self, amount: float) -> float:
        """``amount`` truncated down to a multiple of ``amount_step`` (base units)."""
        q = amount / self.amount_step
        # a relative margin: 0.25092716 / 1e-8 is 25092715.999999996 in floats, still 25092716 steps
        steps = math.floor(q + max(1e-9, q * 1e-12))
        return round(max(steps, 0) * self.amount_step, _decimals(self.amount_step))

    def price_to_precision(self, price: float) -> float:
        """``price`` rounded to the nearest multiple of ``price_tick`` (quote)."""
        return round(round(price / self.price_tick) * self.price_tick, _decimals(self.price_tick))

    def check(self, amount: float, price: float) -> None:
        """Refuse an order below the market's minimums.

        Raises:
            OrderRejected: amount is zero or below ``min_amount``, or ``amount * price`` is
                below ``min_notional``.
        """
        if amount <= 0:
            raise OrderRejected(f"{self.symbol} order amount rounds to zero at step {self.amount_step:g}",
                                "order a larger amount")
        if amount < self.min_amount - 1e-15:
            raise OrderRejected(f"{self.symbol} amount {amount:g} is below the minimum {self.min_amount:g}",
                                "order a larger amount")
        if amount * price < self.min_notional - 1e-9:
            raise OrderRejected(
                f"{self.symbol} order value {amount * price:.4f} {self.quote} is below the minimum notional "
                f"{self.min_notional:g} {self.quote}", "order a larger amount")


def from_ccxt(market: dict[str, Any], source: str = "ccxt") -> MarketRules:
    """Build rules from one ccxt unified market dict (``exchange.markets[symbol]``).

    ``precision`` is read as tick sizes (ccxt ``TICK_SIZE`` mode) unless both amount and
    price precision are integers, which ccxt's ``DECIMAL_PLACES`` mode uses (e.g. 5 means
    a step of 1e-05). Binance's raw filters in ``info`` (LOT_SIZE, PRICE_FILTER,
    MIN_NOTIONAL / NOTIONAL), when present, are authoritative. A NaN or infinite value
    (ccxt passes an exchange's ``"NaN"`` through) counts as missing, like ``None``.

    Raises:
        KeyError, TypeError, ValueError: ``market`` is not a ccxt market structure
            (:func:`load_markets_file` turns these into a :class:`ConfigError`).
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    p_amount, p_price = _finite(precision.get("amount")), _finite(precision.get("price"))
    decimal_places = all(isinstance(v, int) or (isinstance(v, float) and v.is_integer() and v >= 1)
                         for v in (p_amount, p_price) if v is not None)

    def step(value: Any) -> float:
        if value is None:
            return DEFAULT_STEP
        return 10.0 ** -int(value) if decimal_places else float(value)

    amount_step, price_tick = step(p_amount), step(p_price)
    min_amount = float(_finite((limits.get("amount") or {}).get("min")) or 0.0)
    min_notional = float(_finite((limits.get("cost") or {}).get("min")) or 0.0)
    filters = {f.get("filterType"): f for f in (market.get("info") or {}).get("filters", []) if isinstance(f, dict)}
    if "LOT_SIZE" in filters:
        amount_step = _finite(float(filters["LOT_SIZE"]["stepSize"])) or amount_step
        min_qty = filters["LOT_SIZE"].get("minQty")
        if min_qty and _finite(float(min_qty)) is not None:
            min_amount = float(min_qty)
    if "PRICE_FILTER" in filters:
        price_tick = _finite(float(filters["PRICE_FILTER"]["tickSize"])) or price_tick
    for name in ("NOTIONAL", "MIN_NOTIONAL"):
        value = filters.get(name, {}).get("minNotional")
        if value is not None and _finite(float(value)) is not None:
            min_notional = float(value)
            break
    return MarketRules(
        symbol=market["symbol"], base=market["base"], quote=market["quote"],
        amount_step=amount_step, price_tick=price_tick, min_amount=min_amount, min_notional=min_notional,
        maker_fee=_finite(market.get("maker")), taker_fee=_finite(market.get("taker")), source=source,
    )


def _finite(value: Any) -> Any:
    """``value`` unchanged, except a NaN or infinite float, which becomes ``None``."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def default_rules(symbol: str) -> MarketRules:
    """Rules for a symbol without market metadata: step and tick 1e-8, no minimums."""
    base, _, quote = symbol.partition("/")
    return MarketRules(symbol=symbol, base=base, quote=quote.split(":")[0])


def load_markets_file(path: Path) -> dict[str, MarketRules]:
    """Read ccxt market structures saved as JSON (a list, or a dict keyed by symbol).

    Raises:
        ConfigError: the file is missing, not JSON, or holds no ccxt markets.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"markets file {path} does not exist", "check --markets / SIGMAX_MARKETS_FILE") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"markets file {path} is not readable JSON ({exc})", "check the file") from None
    items = doc.values() if isinstance(doc, dict) else doc
    rules: dict[str, MarketRules] = {}
    try:
        for market in items:
            if isinstance(market, dict) and market.get("spot", True) and "symbol" in market:
                rules[market["symbol"]] = from_ccxt(market, source=str(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"markets file {path} does not hold ccxt markets ({exc})", "check the file") from None
    if not rules:
        raise ConfigError(f"markets file {path} holds no spot markets", "save exchange.markets from ccxt into it")
    return rules


def markets_file_beside(data: Path) -> Path | None:
    """The ``markets.json`` that ``sigmax data download`` writes beside candle files.

    Args:
        data: the ``--data`` path: a directory of candle files, or one candle file.

    Returns:
        ``<data>/markets.json`` for a directory, ``<parent>/markets.json`` for a file, when
        that path exists (it is not read here); ``None`` otherwise.
    """
    data = Path(data)
    candidate = (data if data.is_dir() else data.parent) / MARKETS_FILENAME
    return candidate if candidate.exists() else None
