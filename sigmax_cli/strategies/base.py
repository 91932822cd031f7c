"""The Strategy interface: features over candles, then one decision per closed bar.

A strategy is causal by contract: ``features(candles)[name][i]`` may use bars ``0..i``
only, never later ones, so the same code is honest in a replay (features computed once
over the whole file) and live (features recomputed over a rolling window at each bar).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from sigmax_cli.data.candles import Candles
from sigmax_cli.model import Bar, Features


@dataclass(slots=True, frozen=True)
class PositionView:
    """What a strategy may know of its position: size (base units) and average entry price."""

    qty: float
    avg_price: float
    opened_ms: int | None


@dataclass(slots=True, frozen=True)
class Signal:
    """A strategy's decision for one symbol.

    Attributes:
        target: wanted position as a fraction of the symbol's allocation, 0.0 (flat) to
            1.0 (fully long); spot and long-only.
        reason: short human text recorded with the order (e.g. ``"rsi<35 in uptrend"``).
    """

    target: float
    reason: str


@runtime_checkable
class Strategy(Protocol):
    """Turns closed bars into target positions. Implementations: rules, rl."""

    name: str
    warmup: int  # bars needed before ``on_bar`` can be trusted
    # Optional ``history: int``: bars a replay loads before ``--start`` (and a live feed fetches)
    # so that the features have settled (``sigmax strategy check`` measures it); default ``warmup``.

    def features(self, candles: Candles) -> Features:
        """Causal feature series for ``candles`` (see module docstring)."""
        ...

    def on_bar(self, bar: Bar, position: PositionView) -> Signal | None:
        """Decide on a closed bar; ``None`` keeps the current position."""
        ...

    def params(self) -> dict[str, object]:
        """The parameters to record with a run."""
        ...


def history_bars(strategy: Strategy) -> int:
    """Bars of history ``strategy`` needs before the first bar it trades: its optional
    ``history`` (what its features need to settle), at least its ``warmup``."""
    return max(int(strategy.warmup), int(getattr(strategy, "history", 0) or 0))


def settling_bars(period: int, alpha: float, tolerance: float) -> int:
    """Index of the first bar at which an exponential smoother has forgotten its seed to
    ``tolerance``: bars of history a value needs to be within ``tolerance`` of the seed's
    error of the value computed over unlimited history.

    The smoother (``sigmax_cli.strategies.indicators``: EMA with ``alpha = 2 / (N + 1)``,
    Wilder's average with ``alpha = 1 / N``) is seeded at index ``period - 1`` with the mean
    of its first ``period`` inputs and then follows ``y[i] = alpha * x[i] + (1 - alpha) *
    y[i - 1]``. Two runs of this linear recursion over the same inputs, seeded differently,
    differ by ``(1 - alpha) ** k`` times their seeds' difference ``k`` bars after the seed
    (the geometric weights of exponential smoothing: NIST/SEMATECH e-Handbook of
    Statistical Methods, section 6.4.3.1), so the error is below ``tolerance`` of the seed
    error once ``k >= ln(tolerance) / ln(1 - alpha)``.

    Args:
        period: bars of the seed mean, ``N``.
        alpha: smoothing factor, ``0 < alpha <= 1``.
        tolerance: remaining fraction of the seed error, ``0 < tolerance < 1``.

    Returns:
        ``period - 1 + ceil(ln(tolerance) / ln(1 - alpha))`` (``period - 1`` when ``alpha``
        is 1: no memory).
    """
    if alpha >= 1.0:
        return period - 1
    return period - 1 + math.ceil(math.log(tolerance) / math.log(1.0 - alpha))
