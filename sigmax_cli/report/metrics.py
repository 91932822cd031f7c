"""Performance metrics of a run: pure functions over numpy arrays and fill records.

No I/O here: :mod:`sigmax_cli.report.build` reads the ledger and calls these functions,
so the same figures can be computed in a test, by the paper engine for its summary, or
by a notebook.

Units and conventions (the same as the ledger's):

* times are UTC milliseconds since the epoch (``ts_ms``), durations are milliseconds;
* money (equity, P&L, fees) is in the run's quote currency; quantities in base units;
* fields ending in ``_pct`` are percent (``12.5`` means 12.5 %); ratios (Sharpe, Sortino,
  Calmar, profit factor) are plain numbers;
* drawdowns are reported as positive percent below the running peak (``max_drawdown_pct
  = 20.0`` means equity fell 20 % below its peak); :func:`drawdown_series` is the signed
  series (``<= 0``) used for plots;
* an equity *curve* is ``(ts_ms, values)``, two arrays of shape ``(n,)``, oldest first.
  :func:`sigmax_cli.report.build.build_report` starts the curve at the run's initial
  equity one bar before the first snapshot, so the first bar's result is a return too.

Edge cases are answered honestly, never with NaN or infinity: a figure that is not
defined (Sharpe of a flat curve, profit factor without a losing trade, CAGR of a zero
length period) is ``None``, which JSON writes as ``null``.

Sources:

* Sharpe ratio: W. F. Sharpe, "The Sharpe Ratio", Journal of Portfolio Management 21(1),
  1994: mean of the excess return over its *sample* standard deviation (divisor ``T - 1``,
  numpy ``ddof=1``). The risk-free rate is taken as 0.
* Sortino ratio: F. A. Sortino and L. N. Price, "Performance Measurement in a Downside
  Risk Framework", Journal of Investing 3(3), 1994: mean excess return over the downside
  deviation ``sqrt(sum(min(0, r - MAR)^2) / N)`` where ``N`` counts *every* period (those
  above target contribute 0). The minimum acceptable return MAR is 0.
* Annualisation: per-bar ratios are multiplied by ``sqrt(bars_per_year)`` (the
  square-root-of-time rule, exact for IID returns; A. W. Lo, "The Statistics of Sharpe
  Ratios", Financial Analysts Journal 58(4), 2002). ``bars_per_year`` comes from
  :func:`sigmax_cli.timeframes.bars_per_year` (365-day year; crypto trades daily).
* CAGR: ``(end / start) ** (1 / years) - 1`` with ``years = period_ms / (365 days)``.
* Calmar ratio: T. W. Young, "Calmar Ratio: A Smoother Tool", Futures, October 1991:
  CAGR over the absolute maximum drawdown. Young used the last 36 months; here it spans
  the whole run, which is the usual choice for backtests.
* Maximum drawdown: the largest peak-to-trough fall of the curve, relative to the peak
  (M. Magdon-Ismail and A. F. Atiya, "Maximum drawdown", Risk 17(10), 2004).
* Profit factor (gross profit / gross loss) and win rate: R. Pardo, "The Evaluation and
  Optimization of Trading Strategies", 2nd ed., Wiley 2008, ch. 9. Expectancy is the mean
  net P&L per round trip in quote currency (Van K. Tharp's expectancy, in money instead of
  R-multiples).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np

from sigmax_cli.errors import DataError
from sigmax_cli.model import split_fee
from sigmax_cli.timeframes import MS_PER_YEAR

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
DUST_FRACTION = 1e-9
"""A position below this fraction of its largest size in the round trip counts as closed
(absorbs floating-point residue from summing partial fills)."""
_STD_EPS = 1e-12
"""A per-bar standard deviation at or below this is treated as zero (flat curve)."""


def _num(value: float | np.floating | None) -> float | None:
    """A finite Python float, or None for None / NaN / +-inf (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- curves -------------------------------------------------------------------------------
def bar_returns(values: np.ndarray) -> np.ndarray:
    """Simple per-bar returns ``r[i] = values[i+1] / values[i] - 1`` (fractions).

    Args:
        values: equity curve, shape ``(n,)``, quote currency.

    Returns:
        shape ``(n - 1,)`` float64; empty for ``n < 2``.

    Raises:
        DataError: a value before the last is zero or negative (a return is undefined).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return np.empty(0, dtype=np.float64)
    if np.any(v[:-1] <= 0) or not np.all(np.isfinite(v)):
        raise DataError(
            "the equity curve holds a zero, negative or non-finite value",
            "check the run's equity rows; returns are undefined there",
        )
    return v[1:] / v[:-1] - 1.0


def total_return_pct(values: np.ndarray) -> float:
    """``(last / first - 1) * 100``: the curve's total return in percent.

    Raises:
        DataError: empty curve or a first value that is not positive.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or v[0] <= 0:
        raise DataError(
            "the equity curve is empty or starts at zero", "check the run's equity rows"
        )
    return float((v[-1] / v[0] - 1.0) * 100.0)


def cagr_pct(start_value: float, end_value: float, period_ms: int) -> float | None:
    """Compound annual growth rate in percent over ``period_ms`` (365-day years).

    ``((end / start) ** (MS_PER_YEAR / period_ms) - 1) * 100``. ``-100.0`` when the end
    value is zero or below; ``None`` when ``period_ms <= 0``, ``start <= 0`` or the
    annualised figure overflows a float (a big gain over a few bars).
    """
    if period_ms <= 0 or start_value <= 0:
        return None
    if end_value <= 0:
        return -100.0
    exponent = math.log(end_value / start_value) * MS_PER_YEAR / period_ms
    try:
        return _num(math.expm1(exponent) * 100.0)
    except OverflowError:
        return None


def sharpe_ratio(returns: np.ndarray, bars_per_year: float) -> float | None:
    """Annualised Sharpe ratio of per-bar returns, risk-free rate 0 (Sharpe 1994).

    ``mean(r) / std(r, ddof=1) * sqrt(bars_per_year)``. ``None`` with fewer than two
    returns (sample std undefined) or a standard deviation of (numerically) zero.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return None
    sd = float(np.std(r, ddof=1))
    if not math.isfinite(sd) or sd <= _STD_EPS:
        return None
    return _num(float(np.mean(r)) / sd * math.sqrt(bars_per_year))


def downside_deviation(returns: np.ndarray, target: float = 0.0) -> float | None:
    """Sortino & Price (1994) downside deviation: ``sqrt(sum(min(0, r - target)^2) / N)``.

    ``N`` is the number of all returns (not only those below target). Per bar, a
    fraction. ``None`` for no returns.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0:
        return None
    below = np.minimum(r - target, 0.0)
    return float(math.sqrt(float(np.mean(below * below))))


def sortino_ratio(returns: np.ndarray, bars_per_year: float) -> float | None:
    """Annualised Sortino ratio, target (MAR) 0 (Sortino & Price 1994).

    ``mean(r) / downside_deviation(r) * sqrt(bars_per_year)``. ``None`` with no returns
    or no return below 0 (downside deviation 0: the ratio is unbounded, not infinite).
    """
    r = np.asarray(returns, dtype=np.float64)
    dd = downside_deviation(r)
    if dd is None or dd <= _STD_EPS:
        return None
    return _num(float(np.mean(r)) / dd * math.sqrt(bars_per_year))


def annual_volatility_pct(returns: np.ndarray, bars_per_year: float) -> float | None:
    """``std(r, ddof=1) * sqrt(bars_per_year) * 100``; ``None`` with fewer than 2 returns."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return None
    return _num(float(np.std(r, ddof=1)) * math.sqrt(bars_per_year) * 100.0)


def drawdown_series(values: np.ndarray) -> np.ndarray:
    """Percent below the running peak at each point, ``<= 0`` (``-20.0`` = 20 % under).

    ``(values / maximum.accumulate(values) - 1) * 100``, shape ``(n,)``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.empty(0, dtype=np.float64)
    peak = np.maximum.accumulate(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, v / peak - 1.0, 0.0) * 100.0
    return dd


@dataclass(frozen=True)
class Drawdown:
    """The maximum drawdown of a curve and how long it lasted.

    Attributes:
        max_drawdown_pct: largest fall below the running peak, positive percent; 0.0 when
            the curve never fell.
        peak_ms: time of the peak the fall started from (the last time at that peak
            before the trough); None without a drawdown.
        trough_ms: time of the lowest point of that drawdown.
        recovery_ms: first time after the trough the curve was back at or above the
            peak; None when it has not recovered by the end of the curve.
        duration_ms: peak to recovery, or peak to the curve's last point when not
            recovered; 0 without a drawdown.
        duration_bars: the same in curve points (bars).
        recovered: whether the curve regained the peak.
    """

    max_drawdown_pct: float
    peak_ms: int | None
    trough_ms: int | None
    recovery_ms: int | None
    duration_ms: int
    duration_bars: int
    recovered: bool


def max_drawdown(ts_ms: np.ndarray, values: np.ndarray) -> Drawdown:
    """The maximum drawdown of the curve ``(ts_ms, values)`` and its duration.

    Args:
        ts_ms: shape ``(n,)`` int, UTC ms, increasing.
        values: shape ``(n,)`` float, quote currency, positive.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    dd = drawdown_series(v)
    if v.size == 0 or float(dd.min()) >= 0.0:
        return Drawdown(0.0, None, None, None, 0, 0, True)
    trough = int(np.argmin(dd))
    peak_value = float(np.maximum.accumulate(v)[trough])
    peak = int(np.flatnonzero(v[: trough + 1] >= peak_value)[-1])
    after = np.flatnonzero(v[trough + 1 :] >= peak_value)
    if after.size:
        end = trough + 1 + int(after[0])
        recovered = True
    else:
        end = v.size - 1
        recovered = False
    return Drawdown(
        max_drawdown_pct=float(-dd[trough]),
        peak_ms=int(ts[peak]),
        trough_ms=int(ts[trough]),
        recovery_ms=int(ts[end]) if recovered else None,
        duration_ms=int(ts[end] - ts[peak]),
        duration_bars=end - peak,
        recovered=recovered,
    )


@dataclass(frozen=True)
class Performance:
    """Return and risk of one equity curve (the strategy's, or the buy-and-hold benchmark).

    Attributes:
        start_equity, end_equity: first and last value of the curve, quote.
        return_pct: total return, percent.
        cagr_pct: compound annual growth rate, percent (None: see :func:`cagr_pct`).
        volatility_pct: annualised standard deviation of bar returns, percent.
        sharpe, sortino: annualised ratios, risk-free / target 0 (None when undefined).
        calmar: ``cagr_pct / max_drawdown_pct`` (None without drawdown or CAGR).
        drawdown: the maximum drawdown and its duration.
    """

    start_equity: float
    end_equity: float
    return_pct: float
    cagr_pct: float | None
    volatility_pct: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    drawdown: Drawdown


def curve_performance(ts_ms: np.ndarray, values: np.ndarray, bars_per_year: float) -> Performance:
    """All curve metrics of ``(ts_ms, values)``; see the module docstring for sources.

    Args:
        ts_ms: shape ``(n,)``, UTC ms, increasing; ``n >= 1``.
        values: shape ``(n,)``, quote currency, positive.
        bars_per_year: annualisation factor (bars in 365 days).

    Raises:
        DataError: empty curve or non-positive values.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    ret = total_return_pct(v)
    r = bar_returns(v)
    dd = max_drawdown(ts, v)
    cagr = cagr_pct(float(v[0]), float(v[-1]), int(ts[-1] - ts[0]))
    calmar = cagr / dd.max_drawdown_pct if cagr is not None and dd.max_drawdown_pct > 0 else None
    return Performance(
        start_equity=float(v[0]),
        end_equity=float(v[-1]),
        return_pct=ret,
        cagr_pct=cagr,
        volatility_pct=annual_volatility_pct(r, bars_per_year),
        sharpe=sharpe_ratio(r, bars_per_year),
        sortino=sortino_ratio(r, bars_per_year),
        calmar=_num(calmar),
        drawdown=dd,
    )


def exposure_pct(exposure: np.ndarray) -> float:
    """Percent of bars that held a position: ``mean(exposure > 0) * 100``.

    Args:
        exposure: quote notional of open positions per equity snapshot, shape ``(n,)``.
    """
    e = np.asarray(exposure, dtype=np.float64)
    if e.size == 0:
        return 0.0
    return float(np.count_nonzero(e > 0) / e.size * 100.0)


# -- round trips ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundTrip:
    """One closed trade of a symbol: its position went from 0 to > 0 and back to 0.

    Attributes:
        symbol: e.g. ``BTC/USDT``.
        entry_ms, exit_ms: time of the first buy and of the sell that closed it, UTC ms.
        holding_ms: ``exit_ms - entry_ms``.
        qty: largest position held during the trip, base units.
        entry_price: average buy price (buy notional / bought qty), quote.
        exit_price: average sell price (sell notional / sold qty), quote.
        gross_pnl: sum over sells of ``amount * (price - average cost)``, quote, before fees.
        fees: fees of every fill of the trip (both sides), quote.
        pnl: ``gross_pnl - fees``: the net result, quote.
        return_pct: ``pnl / buy notional * 100``.
        fills: number of fills in the trip.
    """

    symbol: str
    entry_ms: int
    exit_ms: int
    holding_ms: int
    qty: float
    entry_price: float
    exit_price: float
    gross_pnl: float
    fees: float
    pnl: float
    return_pct: float
    fills: int


@dataclass(frozen=True)
class TradeBook:
    """Fills matched into round trips.

    Attributes:
        closed: the closed round trips, in order of exit (then entry) time.
        open_qty: symbol -> base quantity still held at the last fill (open trips).
        fees: symbol -> fees of all its fills (closed and open trips), quote.
    """

    closed: list[RoundTrip]
    open_qty: dict[str, float]
    fees: dict[str, float]


_REQUIRED = object()


def _field(fill: Mapping[str, Any] | Any, name: str, default: Any = _REQUIRED) -> Any:
    if default is _REQUIRED:
        return fill[name] if isinstance(fill, Mapping) else getattr(fill, name)
    value = fill.get(name) if isinstance(fill, Mapping) else getattr(fill, name, None)
    return default if value is None else value


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def round_trips(
    fills: Iterable[Mapping[str, Any] | Any], dust_fraction: float = DUST_FRACTION
) -> TradeBook:
    """Match spot long-only fills into round trips, average-cost accounting.

    Each fill (a ledger ``fills`` row as a dict, or any object with these attributes)
    needs ``symbol``, ``side`` (``buy``/``sell``), ``price`` (quote), ``amount`` (base),
    ``fee`` and ``ts_ms``, and may give ``fee_currency`` (default: the quote). A fee in the
    base asset moves the position (a buy gets ``amount - fee``, a sell gives up
    ``amount + fee``) and counts at the fill's price; a third asset's fee counts 0 quote.
    Fills are taken in ``ts_ms`` order (stable: ties keep
    the given order, which is the ledger's insertion order).

    Per symbol, a trip opens with a buy from a flat position; buys add to the position at
    the average cost, sells realise ``amount * (price - average cost)``; the trip closes
    when the position is back to zero, within ``dust_fraction`` of its largest size (the
    residue is dropped). Partial exits and scale-ins inside a trip are part of it. The
    P&L of a trip is net of the fees of both sides, so the sum of closed trips' ``pnl``
    equals sell proceeds minus buy cost minus fees of those fills.

    Raises:
        DataError: a fill with a side other than buy/sell, or a sell of more than is held
            (short selling: the report covers spot long-only runs).
    """
    ordered = sorted(fills, key=lambda f: int(_field(f, "ts_ms")))
    state: dict[str, dict[str, float]] = {}
    closed: list[RoundTrip] = []
    fees: dict[str, float] = {}
    residue: dict[str, float] = {}  # dust left by the last closed trip of each symbol
    for f in ordered:
        symbol = str(_field(f, "symbol"))
        side = str(_field(f, "side")).lower()
        price, amount = float(_field(f, "price")), float(_field(f, "amount"))
        fee, ts = float(_field(f, "fee")), int(_field(f, "ts_ms"))
        base, _, quote = symbol.partition("/")
        quote = quote.split(":")[0]
        # a base-asset fee moves the position and counts at this fill's price; a third asset's
        # (BNB) counts 0: its quote value is not known here
        base_fee, quote_fee = split_fee(fee, _field(f, "fee_currency", quote), base, quote)
        moved = amount - base_fee if side == "buy" else amount + base_fee  # base units in or out
        fee = quote_fee + base_fee * price
        fees[symbol] = fees.get(symbol, 0.0) + fee
        trip = state.get(symbol)
        if side == "buy":
            if trip is None:
                trip = state[symbol] = {
                    "entry_ms": ts,
                    "qty": 0.0,
                    "avg": 0.0,
                    "peak": 0.0,
                    "bought": 0.0,
                    "buy_cost": 0.0,
                    "sold": 0.0,
                    "sell_value": 0.0,
                    "gross": 0.0,
                    "fees": 0.0,
                    "fills": 0,
                }
            new_qty = trip["qty"] + moved
            trip["avg"] = (
                (trip["qty"] * trip["avg"] + moved * price) / new_qty if new_qty > 0 else 0.0
            )
            trip["qty"] = new_qty
            trip["peak"] = max(trip["peak"], new_qty)
            trip["bought"] += amount
            trip["buy_cost"] += amount * price
        elif side == "sell" and trip is None and moved <= residue.get(symbol, 0.0):
            # the dust a closed trip left (dropped within dust_fraction) sold on its own
            residue[symbol] -= moved
            continue
        elif side == "sell":
            held = trip["qty"] if trip else 0.0
            tolerance = dust_fraction * (trip["peak"] if trip else 0.0)
            if trip is None or moved > held + tolerance:
                raise DataError(
                    f"a {symbol} sell of {moved:g} at {_iso(ts)} exceeds the {held:g} held",
                    "the report covers spot long-only runs; check the run's fills",
                )
            trip["qty"] = held - moved
            trip["sold"] += moved
            trip["sell_value"] += moved * price
            trip["gross"] += moved * (price - trip["avg"])
        else:
            raise DataError(
                f"a {symbol} fill at {_iso(ts)} has side {side!r}", "sides must be buy or sell"
            )
        trip["fees"] += fee
        trip["fills"] += 1
        if side == "sell" and trip["qty"] <= dust_fraction * trip["peak"]:
            pnl = trip["gross"] - trip["fees"]
            closed.append(
                RoundTrip(
                    symbol=symbol,
                    entry_ms=int(trip["entry_ms"]),
                    exit_ms=ts,
                    holding_ms=ts - int(trip["entry_ms"]),
                    qty=trip["peak"],
                    entry_price=trip["buy_cost"] / trip["bought"],
                    exit_price=trip["sell_value"] / trip["sold"],
                    gross_pnl=trip["gross"],
                    fees=trip["fees"],
                    pnl=pnl,
                    return_pct=pnl / trip["buy_cost"] * 100.0 if trip["buy_cost"] > 0 else 0.0,
                    fills=int(trip["fills"]),
                )
            )
            residue[symbol] = max(trip["qty"], 0.0) + dust_fraction * trip["peak"]
            del state[symbol]
    closed.sort(key=lambda t: (t.exit_ms, t.entry_ms))
    return TradeBook(closed=closed, open_qty={k: v["qty"] for k, v in state.items()}, fees=fees)


@dataclass(frozen=True)
class TradeStats:
    """Statistics over closed round trips (quote currency unless noted).

    Attributes:
        trades: number of closed round trips.
        wins, losses: trips with ``pnl > 0`` / ``pnl < 0`` (break-even trips are neither).
        win_rate_pct: ``wins / trades * 100``; None without trades.
        gross_profit: sum of winning trips' pnl (>= 0).
        gross_loss: absolute sum of losing trips' pnl (>= 0).
        profit_factor: ``gross_profit / gross_loss``; None without trades or without a
            losing trip (the ratio would be infinite; read ``gross_profit`` instead);
            0.0 when there are losers but no winners.
        expectancy: mean net pnl per trip; None without trades.
        avg_holding_ms: mean holding time, ms; None without trades.
        best_trade, worst_trade: largest and smallest trip pnl; None without trades.
        total_fees: fees of every fill of the run, open trips included.
        open_positions: symbols still holding a position after the last fill.
    """

    trades: int
    wins: int
    losses: int
    win_rate_pct: float | None
    gross_profit: float
    gross_loss: float
    profit_factor: float | None
    expectancy: float | None
    avg_holding_ms: int | None
    best_trade: float | None
    worst_trade: float | None
    total_fees: float
    open_positions: int


def trade_stats(book: TradeBook) -> TradeStats:
    """Win rate, profit factor, expectancy and friends of a :class:`TradeBook`."""
    pnl = np.array([t.pnl for t in book.closed], dtype=np.float64)
    n = int(pnl.size)
    wins, losses = int(np.count_nonzero(pnl > 0)), int(np.count_nonzero(pnl < 0))
    gross_profit = float(pnl[pnl > 0].sum()) if n else 0.0
    gross_loss = float(-pnl[pnl < 0].sum()) if n else 0.0
    return TradeStats(
        trades=n,
        wins=wins,
        losses=losses,
        win_rate_pct=wins / n * 100.0 if n else None,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        profit_factor=_num(gross_profit / gross_loss) if gross_loss > 0 else None,
        expectancy=_num(float(pnl.mean())) if n else None,
        avg_holding_ms=int(round(float(np.mean([t.holding_ms for t in book.closed]))))
        if n
        else None,
        best_trade=float(pnl.max()) if n else None,
        worst_trade=float(pnl.min()) if n else None,
        total_fees=float(sum(book.fees.values())),
        open_positions=sum(1 for q in book.open_qty.values() if q > 0),
    )


@dataclass(frozen=True)
class SymbolRow:
    """One symbol's closed trips: count, wins, win rate (percent), net pnl and fees (quote).

    ``fees`` counts every fill of the symbol, open trip included; ``win_rate_pct`` is None
    without trades.
    """

    symbol: str
    trades: int
    wins: int
    win_rate_pct: float | None
    net_pnl: float
    fees: float


def per_symbol(book: TradeBook, symbols: Sequence[str] = ()) -> list[SymbolRow]:
    """One row per symbol: those in ``symbols`` first (in that order, even without
    trades), then any other symbol that has fills, alphabetically."""
    names = list(dict.fromkeys(symbols))
    names += sorted(({t.symbol for t in book.closed} | set(book.fees)) - set(names))
    rows = []
    for name in names:
        trips = [t for t in book.closed if t.symbol == name]
        wins = sum(1 for t in trips if t.pnl > 0)
        rows.append(
            SymbolRow(
                symbol=name,
                trades=len(trips),
                wins=wins,
                win_rate_pct=wins / len(trips) * 100.0 if trips else None,
                net_pnl=float(sum(t.pnl for t in trips)),
                fees=float(book.fees.get(name, 0.0)),
            )
        )
    return rows


# -- calendar P&L ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PeriodPnl:
    """Profit and loss of one UTC calendar day or ISO week (Monday to Sunday).

    Attributes:
        period: ``"2021-01-04"`` for a day, ``"2021-W01"`` (ISO 8601 week) for a week.
        start_ms: the period's first instant (00:00 UTC of the day / of the Monday).
        end_ms: time of the last equity snapshot inside the period.
        end_equity: equity at that snapshot, quote.
        pnl: ``end_equity`` minus the previous period's ``end_equity`` (the starting
            equity for the first period), quote.
        return_pct: ``pnl`` relative to that previous equity, percent.
    """

    period: str
    start_ms: int
    end_ms: int
    end_equity: float
    pnl: float
    return_pct: float | None


def period_pnl(
    ts_ms: np.ndarray,
    equity: np.ndarray,
    start_equity: float,
    period: Literal["day", "week"] = "day",
) -> list[PeriodPnl]:
    """P&L per UTC day or ISO week, from the equity at each period's end.

    A snapshot belongs to the period containing its ``ts_ms``. Periods without snapshots
    (gaps in the data) get no row; their change lands in the next period that has one.
    The pnl of all rows sums to ``equity[-1] - start_equity``.

    Args:
        ts_ms: snapshot times, shape ``(n,)``, UTC ms, increasing.
        equity: snapshot equity, shape ``(n,)``, quote.
        start_equity: equity before the first snapshot (the run's initial equity), quote.
        period: ``"day"`` or ``"week"``.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    if ts.size == 0:
        return []
    days = ts // DAY_MS
    if period == "day":
        keys = days
    elif period == "week":
        keys = days - (days + 3) % 7  # epoch day 0 (1970-01-01) was a Thursday: Monday = 0
    else:
        raise ValueError(f"unknown period {period!r}")
    ends = np.flatnonzero(np.diff(keys) != 0).tolist() + [ts.size - 1]
    rows: list[PeriodPnl] = []
    prev = float(start_equity)
    for end in ends:
        start_ms = int(keys[end]) * DAY_MS
        day = datetime.fromtimestamp(start_ms / 1000, tz=UTC).date()
        if period == "day":
            label = day.isoformat()
        else:
            iso = day.isocalendar()
            label = f"{iso.year}-W{iso.week:02d}"
        value = float(eq[end])
        pnl = value - prev
        rows.append(
            PeriodPnl(
                period=label,
                start_ms=start_ms,
                end_ms=int(ts[end]),
                end_equity=value,
                pnl=pnl,
                return_pct=_num(pnl / prev * 100.0) if prev > 0 else None,
            )
        )
        prev = value
    return rows
