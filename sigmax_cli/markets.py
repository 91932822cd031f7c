"""Market rules: precision and limits of a symbol, from ccxt's unified market structure.

Amounts and prices are put at the market's precision by ccxt's own
``decimal_to_precision`` (the function ccxt's ``amount_to_precision`` and
``price_to_precision`` call, and the one freqtrade's ``exchange_utils`` delegates to):
amounts TRUNCATE (never more than asked or held), prices ROUND (half away from zero), in
the market's real ``precisionMode``:

* ``TICK_SIZE`` (4): ``precision.amount`` is the step, e.g. ``1e-05`` (Binance in ccxt >= 4);
* ``DECIMAL_PLACES`` (2): ``precision.amount`` counts decimals, e.g. ``5`` means 0.00001
  and ``0`` means whole units;
* ``SIGNIFICANT_DIGITS`` (3): ``precision.amount`` counts significant digits, so the step
  depends on the magnitude (``4`` gives 12340 at 12345.6 and 0.01234 at 0.0123456).

The mode is the exchange's (``exchange.precisionMode``), saved in each market of a
``markets.json`` by ``sigmax data download``; it is never guessed from the numbers. A
market without it is accepted only when Binance's raw filters (``info.filters``
LOT_SIZE / PRICE_FILTER) give the steps themselves.

Quantities are compared in units of the market's step with a tolerance of half a step
(:meth:`MarketRules.same_amount`, :meth:`~MarketRules.covers`), never against an absolute
epsilon: at 1e9 units a float's own resolution is larger than 1e-9, and at a step of 1 an
epsilon of 1e-9 is meaningless. A position is flat when it holds no whole step
(:meth:`~MarketRules.is_flat`): nothing is left that an order could sell.
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import math
import sys
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from sigmax_cli.errors import ConfigError, OrderRejected

DECIMAL_PLACES = 2
SIGNIFICANT_DIGITS = 3
TICK_SIZE = 4
"""ccxt's ``precisionMode`` constants (``ccxt.base.decimal_to_precision``)."""
PRECISION_MODES = {DECIMAL_PLACES: "DECIMAL_PLACES", SIGNIFICANT_DIGITS: "SIGNIFICANT_DIGITS", TICK_SIZE: "TICK_SIZE"}

DEFAULT_STEP = 1e-8
MARKETS_FILENAME = "markets.json"
"""Name of the ccxt markets file ``sigmax data download`` writes beside the candle files."""
PRECISION_MODE_KEY = "precisionMode"
"""Key under which ``sigmax data download`` stores the exchange's precision mode in each market."""

_HALF = Decimal("0.5")
_CONTEXT = decimal.Context(prec=40)  # 1e12 at a 1e-8 step is 20 digits: exact with room to spare


@lru_cache(maxsize=1)
def _dtp() -> ModuleType:
    """ccxt's ``decimal_to_precision`` module.

    When ccxt is already imported (live runs, downloads) its module is used. Otherwise the
    module's file is loaded on its own: ``import ccxt`` runs ccxt's package ``__init__``,
    which imports every exchange class (~0.45 s here), and an offline replay needs only this
    one self-contained file (it imports ``decimal``, ``numbers``, ``itertools`` and ``re``).
    """
    if "ccxt" in sys.modules:
        from ccxt.base import decimal_to_precision

        return decimal_to_precision
    spec = importlib.util.find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("ccxt is not installed", "install sigmax with `pip install -e .`")
    path = Path(next(iter(spec.submodule_search_locations))) / "base" / "decimal_to_precision.py"
    module_spec = importlib.util.spec_from_file_location("_sigmax_ccxt_decimal_to_precision", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def to_decimal(value: float | int | str | Decimal) -> Decimal:
    """``value`` as a Decimal through its shortest repr (``0.1`` -> ``Decimal('0.1')``, not
    the binary expansion), as ccxt does (``Decimal(str(n))``).

    Raises:
        ValueError: NaN or infinity.
    """
    if isinstance(value, Decimal):
        result = value
    else:
        result = Decimal(repr(value) if isinstance(value, float) else str(value))
    if not result.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return result


def decimal_to_precision(value: float | Decimal | str, truncate: bool, precision: float | int, mode: int) -> str:
    """ccxt's ``decimal_to_precision`` (no padding) run in a private decimal context.

    ccxt's function sets traps and the rounding mode on the *current* decimal context; it
    runs here inside :func:`decimal.localcontext`, so sigmax's own Decimal arithmetic is
    not changed behind its back.

    Args:
        value: the number (its ``str`` is what ccxt reads).
        truncate: TRUNCATE (toward zero) when true, ROUND (half away from zero) otherwise.
        precision: the step (``TICK_SIZE``) or the digit count (the other modes).
        mode: ``TICK_SIZE``, ``DECIMAL_PLACES`` or ``SIGNIFICANT_DIGITS``.

    Returns:
        The decimal string, e.g. ``"26082.42044866"``.
    """
    dtp = _dtp()
    with decimal.localcontext():
        return dtp.decimal_to_precision(value, dtp.TRUNCATE if truncate else dtp.ROUND, precision, mode,
                                        dtp.NO_PADDING)


@dataclass(frozen=True)
class MarketRules:
    """Precision and limits of one spot market.

    Attributes:
        symbol: ccxt unified symbol, e.g. ``"BTC/USDT"``.
        base, quote: asset codes.
        amount_step: smallest amount increment, base units (LOT_SIZE stepSize). In
            ``DECIMAL_PLACES`` mode ``10 ** -amount_digits``; in ``SIGNIFICANT_DIGITS`` mode
            the step at 1.0 (informative only: use :meth:`amount_step_at`).
        price_tick: smallest price increment, quote (PRICE_FILTER tickSize); same rule.
        min_amount: smallest order amount, base units.
        min_notional: smallest order value ``price * amount``, quote (MIN_NOTIONAL / NOTIONAL).
        maker_fee, taker_fee: fractions of notional, when the market states them.
        source: where the rules came from (``"ccxt"``, a file path, or ``"default"``).
        precision_mode: ccxt's ``TICK_SIZE`` (4), ``DECIMAL_PLACES`` (2) or
            ``SIGNIFICANT_DIGITS`` (3).
        amount_digits, price_digits: ccxt's ``precision`` counts in the two digit modes
            (``None`` in ``TICK_SIZE`` mode).
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
    precision_mode: int = TICK_SIZE
    amount_digits: int | None = None
    price_digits: int | None = None

    def __post_init__(self) -> None:
        if self.precision_mode not in PRECISION_MODES:
            raise ValueError(f"{self.symbol}: unknown precision mode {self.precision_mode!r}")
        if self.precision_mode == TICK_SIZE:
            for name in ("amount_step", "price_tick"):
                value = getattr(self, name)
                if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                    raise ValueError(f"{self.symbol}: {name} must be a positive number in TICK_SIZE mode, "
                                     f"not {value!r}")
        else:
            for name in ("amount_digits", "price_digits"):
                value = getattr(self, name)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"{self.symbol}: {name} must be an integer in "
                                     f"{PRECISION_MODES[self.precision_mode]} mode, not {value!r}")

    # -- rounding (ccxt's) -----------------------------------------------------------------
    @property
    def _amount_precision(self) -> float | int:
        return self.amount_step if self.precision_mode == TICK_SIZE else self.amount_digits  # type: ignore[return-value]

    @property
    def _price_precision(self) -> float | int:
        return self.price_tick if self.precision_mode == TICK_SIZE else self.price_digits  # type: ignore[return-value]

    def amount_str(self, amount: float | Decimal) -> str:
        """``amount`` truncated to the market's amount precision, as a decimal string
        (ccxt ``decimal_to_precision``, TRUNCATE); base units.

        A float cannot hold every multiple of a step (above ~1e11 at a 5e-4 step, the grid
        is finer than the float's own resolution): ``float("549755813888.6015")`` is
        ``549755813888.6014...``, whose digits truncate a whole step lower. When ``amount``
        is a float that is not the float of the truncated multiple but is exactly the float
        nearest to the next one, it stands for that next multiple, which is returned: the only
        reading under which truncating an amount already at precision gives it back.
        """
        text = decimal_to_precision(amount, True, self._amount_precision, self.precision_mode)
        if isinstance(amount, float) and amount > 0:
            down = Decimal(text)
            up = down + self.amount_step_at(down or amount)
            if float(down) != amount and float(up) == amount:
                return str(up)
        return text

    def amount_to_precision(self, amount: float | Decimal) -> float:
        """``amount`` truncated to the market's amount precision (base units).

        Never above ``amount`` and less than one step below it (ccxt TRUNCATE on the
        number's shortest decimal repr). Negative amounts truncate toward zero.
        """
        return float(self.amount_str(amount))

    def amount_to_decimal(self, amount: float | Decimal) -> Decimal:
        """:meth:`amount_to_precision` as an exact Decimal (base units)."""
        return Decimal(self.amount_str(amount))

    def price_to_precision(self, price: float | Decimal) -> float:
        """``price`` rounded to the market's price precision, half away from zero (ccxt
        ``decimal_to_precision``, ROUND; 62540.5 at tick 1 gives 62541); quote."""
        return float(decimal_to_precision(price, False, self._price_precision, self.precision_mode))

    # -- comparisons in steps ----------------------------------------------------------------
    def amount_step_at(self, amount: float | Decimal) -> Decimal:
        """The amount step at ``amount``'s magnitude (base units): constant in ``TICK_SIZE``
        and ``DECIMAL_PLACES`` modes; ``10 ** (exponent - digits + 1)`` in
        ``SIGNIFICANT_DIGITS`` mode (at zero: the step at ``min_amount``, else one unit of
        the last digit at 1.0)."""
        if self.precision_mode == TICK_SIZE:
            return _step_decimal(self.amount_step)
        digits = self.amount_digits or 0
        if self.precision_mode == DECIMAL_PLACES:
            return Decimal(1).scaleb(-digits)
        value = abs(to_decimal(amount)) or to_decimal(self.min_amount) or Decimal(1)
        return Decimal(1).scaleb(value.adjusted() - max(digits, 1) + 1)

    def same_amount(self, a: float | Decimal, b: float | Decimal) -> bool:
        """True when ``a`` and ``b`` (base units) differ by less than half a step."""
        da, db = to_decimal(a), to_decimal(b)
        step = self.amount_step_at(max(abs(da), abs(db)))
        return abs(_CONTEXT.subtract(da, db)) < step * _HALF

    def covers(self, available: float | Decimal, need: float | Decimal) -> bool:
        """True when ``need`` exceeds ``available`` (base units) by less than half a step:
        the funds check of a sell and the "sell everything" comparison."""
        da, dn = to_decimal(available), to_decimal(need)
        return _CONTEXT.subtract(dn, da) < self.amount_step_at(max(abs(da), abs(dn))) * _HALF

    def is_flat(self, amount: float | Decimal) -> bool:
        """True when ``amount`` (base units) holds no whole step, or less than
        ``min_amount``: nothing an order could sell (the dust a base-asset commission leaves,
        e.g. 0.16825 BTC bought with 0.1 % taken in BTC holds 0.16808175, of which 0.16808
        sells and 0.00000175 stays). Exact: amounts are summed as Decimal, so a whole step
        never shows up as 0.99999999 of one."""
        value = abs(to_decimal(amount))
        if value == 0 or (self.min_amount and value < to_decimal(self.min_amount)):
            return True
        return self.amount_to_decimal(value) == 0

    def amount_held(self, amount: float | Decimal) -> Decimal:
        """The whole number of steps a held ``amount`` stands for (base units, exact).

        A balance built from fills of whole steps is a whole number of steps; float sums of
        such fills land within a hair of it, above or below. This rounds to the nearest
        step (ccxt ROUND) when ``amount`` is within half a step of one, which it then is.
        """
        return Decimal(decimal_to_precision(amount, False, self._amount_precision, self.precision_mode))

    def check(self, amount: float | Decimal, price: float) -> None:
        """Refuse an order below the market's minimums.

        Args:
            amount: base units, already at precision.
            price: the price the order is valued at, quote.

        Raises:
            OrderRejected: amount is zero or below ``min_amount`` (by half a step or more),
                or ``amount * price`` is below ``min_notional`` (compared exactly as Decimal).
        """
        value = to_decimal(amount)
        if value <= 0:
            raise OrderRejected(f"{self.symbol} order amount rounds to zero at step {self.amount_step_at(1):f}",
                                "order a larger amount", kind="precision")
        if self.min_amount and not self.covers(value, self.min_amount):
            raise OrderRejected(f"{self.symbol} amount {value:f} is below the minimum {self.min_amount:g}",
                                "order a larger amount", kind="min_amount")
        if self.min_notional:
            notional = _CONTEXT.multiply(value, to_decimal(price))
            if notional < to_decimal(self.min_notional):
                raise OrderRejected(
                    f"{self.symbol} order value {notional:.4f} {self.quote} is below the minimum notional "
                    f"{self.min_notional:g} {self.quote}", "order a larger amount", kind="min_notional")


@lru_cache(maxsize=1024)
def _step_decimal(step: float) -> Decimal:
    return to_decimal(step)


def from_ccxt(market: dict[str, Any], source: str = "ccxt", precision_mode: int | None = None) -> MarketRules:
    """Build rules from one ccxt unified market dict (``exchange.markets[symbol]``).

    Args:
        market: the ccxt market structure.
        source: recorded in :attr:`MarketRules.source`.
        precision_mode: the exchange's ``precisionMode``; when ``None``, the market's own
            ``"precisionMode"`` key (which ``sigmax data download`` saves) is read.

    ``precision`` is read in that mode: tick sizes in ``TICK_SIZE``, digit counts in the
    other two (``0`` decimal places means whole units). Binance's raw filters in ``info``
    (LOT_SIZE, PRICE_FILTER, MIN_NOTIONAL / NOTIONAL), when present, are authoritative in
    ``TICK_SIZE`` mode; a market without a precision mode is accepted only when it has both
    LOT_SIZE and PRICE_FILTER, whose step and tick are then used (its ``precision`` numbers,
    which older ccxt wrote as digit counts, are not read). A NaN or infinite value (ccxt
    passes an exchange's ``"NaN"`` through) counts as missing, like ``None``.

    Raises:
        KeyError, TypeError, ValueError: ``market`` is not a ccxt market structure, names no
            precision mode (and has no Binance filters), or holds a precision that mode
            cannot use (e.g. a zero tick); :func:`load_markets_file` turns these into a
            :class:`ConfigError`.
    """
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    filters = {f.get("filterType"): f for f in (market.get("info") or {}).get("filters", []) if isinstance(f, dict)}
    mode = precision_mode if precision_mode is not None else market.get(PRECISION_MODE_KEY)
    from_filters = mode is None and "LOT_SIZE" in filters and "PRICE_FILTER" in filters
    if from_filters:  # Binance's own step and tick: the precision numbers beside them are not read
        mode = TICK_SIZE
        precision = {}
    if mode is None:
        raise ValueError(f"{market.get('symbol', '?')} has no precisionMode")
    if mode not in PRECISION_MODES:
        raise ValueError(f"{market.get('symbol', '?')} has an unknown precisionMode {mode!r}")
    p_amount, p_price = _finite(precision.get("amount")), _finite(precision.get("price"))
    fields: dict[str, Any] = {"precision_mode": mode}
    if mode == TICK_SIZE:
        fields["amount_step"] = float(p_amount) if p_amount is not None else DEFAULT_STEP
        fields["price_tick"] = float(p_price) if p_price is not None else DEFAULT_STEP
    else:
        for name, value in (("amount", p_amount), ("price", p_price)):
            if value is None:
                value = 8
            if float(value) != int(float(value)):
                raise ValueError(f"{market['symbol']} precision.{name} {value!r} is not a digit count")
            fields[f"{name}_digits"] = int(float(value))
        if mode == DECIMAL_PLACES:
            fields["amount_step"] = 10.0 ** -fields["amount_digits"]
            fields["price_tick"] = 10.0 ** -fields["price_digits"]
        else:
            fields["amount_step"] = 10.0 ** (1 - max(fields["amount_digits"], 1))
            fields["price_tick"] = 10.0 ** (1 - max(fields["price_digits"], 1))
    min_amount = float(_finite((limits.get("amount") or {}).get("min")) or 0.0)
    min_notional = float(_finite((limits.get("cost") or {}).get("min")) or 0.0)
    if mode == TICK_SIZE and "LOT_SIZE" in filters:
        fields["amount_step"] = _finite(float(filters["LOT_SIZE"]["stepSize"])) or fields["amount_step"]
        min_qty = filters["LOT_SIZE"].get("minQty")
        if min_qty and _finite(float(min_qty)) is not None:
            min_amount = float(min_qty)
    if mode == TICK_SIZE and "PRICE_FILTER" in filters:
        fields["price_tick"] = _finite(float(filters["PRICE_FILTER"]["tickSize"])) or fields["price_tick"]
    for name in ("NOTIONAL", "MIN_NOTIONAL"):
        value = filters.get(name, {}).get("minNotional")
        if value is not None and _finite(float(value)) is not None:
            min_notional = float(value)
            break
    return MarketRules(
        symbol=market["symbol"], base=market["base"], quote=market["quote"], min_amount=min_amount,
        min_notional=min_notional, maker_fee=_finite(market.get("maker")), taker_fee=_finite(market.get("taker")),
        source=source, **fields,
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
    except ValueError as exc:
        if "precisionMode" in str(exc):
            raise ConfigError(
                f"markets file {path}: {exc}, so its precision cannot be read",
                "rerun `sigmax data download` (it saves the exchange's precisionMode) or add "
                '"precisionMode": 4 (TICK_SIZE), 2 (DECIMAL_PLACES) or 3 (SIGNIFICANT_DIGITS) to each market') from None
        raise ConfigError(f"markets file {path} does not hold ccxt markets ({exc})", "check the file") from None
    except (KeyError, TypeError) as exc:
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
