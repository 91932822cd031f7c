"""``sigmax strategy check``: prove a strategy's features causal and measure their warm-up.

Two analyses, after freqtrade's ``lookahead-analysis`` and ``recursive-analysis``, run on the
strategy's own ``features(candles)`` over real candles:

* **Look-ahead.** At ``checkpoints`` bars ``t`` spread over the data, the features are
  recomputed (a) on the prefix ``candles[:t + 1]`` and (b) on the whole series with every bar
  after ``t`` altered (prices scaled by a factor that changes from bar to bar, volume
  doubled). A causal feature has the same values at ``0..t`` in both as over the unaltered
  whole series; every feature that changes at some index ``<= t`` is reported, with the first
  such bar and the largest difference.
* **History (warm-up).** At ``checkpoints`` late bars ``t``, the features are recomputed on
  windows ``candles[t - L + 1 : t + 1]`` of growing length ``L``; a feature *settles* at the
  smallest ``L`` whose value at ``t`` is within the tolerance of the full-history value at
  every checkpoint (found by bisection: the error of a window shrinks as it grows). It needs
  ``L - 1`` bars of history before a bar; a strategy whose ``warmup`` is shorter is
  under-warmed. A feature that has not settled with all the data before the checkpoint
  (a cumulative sum, say) needs unbounded history.

Tolerance: ``|a - b| <= tolerance * scale``, where ``scale`` is the feature's median absolute
value over the data (1 when that is 0), so one relative figure suits prices, RSI points and
returns alike. NaN equals NaN; NaN against a number is a difference.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sigmax_cli.data.candles import Candles
from sigmax_cli.strategies.base import history_bars

DEFAULT_TOLERANCE = 1e-6
"""Relative tolerance of the history analysis (to the feature's median magnitude)."""
LOOKAHEAD_TOLERANCE = 1e-9
"""Relative tolerance of the look-ahead analysis: recomputation noise only."""


@dataclass
class FeatureReport:
    """What the analyses found for one feature.

    Attributes:
        name: the feature's name.
        lookahead: a value at some bar changed when later bars were cut off or altered.
        first_changed_bar: the earliest such bar (index into the checked candles), or ``None``.
        max_change: the largest such difference, in the feature's unit; infinite (``null`` in
            JSON) when a value appeared or vanished (a number against NaN).
        history_bars: bars of history the feature needs before a bar to be within tolerance of
            its full-history value; ``None`` when it does not settle within the data.
        scale: the feature's median absolute value (the tolerance's unit).
    """

    name: str
    lookahead: bool = False
    first_changed_bar: int | None = None
    max_change: float = 0.0
    history_bars: int | None = 0
    scale: float = 1.0


@dataclass
class CheckReport:
    """The result of :func:`check_strategy`.

    Attributes:
        strategy: the strategy's name; ``warmup`` its declared warm-up (bars); ``history`` the
            bars a replay loads before ``--start`` (its ``history``, at least ``warmup``).
        symbol, timeframe, bars: the candles checked.
        tolerance: the relative tolerance of the history analysis.
        features: one report per feature.
        needed_warmup: the largest ``history_bars`` (``None``: some feature never settles).
    """

    strategy: str
    warmup: int
    history: int
    symbol: str
    timeframe: str
    bars: int
    tolerance: float
    features: list[FeatureReport] = field(default_factory=list)

    @property
    def lookahead(self) -> list[str]:
        """Names of the features that look ahead."""
        return [f.name for f in self.features if f.lookahead]

    @property
    def needed_warmup(self) -> int | None:
        needs = [f.history_bars for f in self.features if not f.lookahead]
        known = [n for n in needs if n is not None]
        if len(known) < len(needs):
            return None
        return max(known, default=0)

    @property
    def underwarmed(self) -> list[str]:
        """Names of the causal features that need more history than ``warmup`` gives."""
        return [f.name for f in self.features
                if not f.lookahead and (f.history_bars is None or f.history_bars > self.warmup)]

    @property
    def exit_code(self) -> int:
        """0 causal and warm enough, 1 look-ahead, 3 causal but under-warmed."""
        return 1 if self.lookahead else 3 if self.underwarmed else 0

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "warmup": self.warmup, "history": self.history, "symbol": self.symbol,
                "timeframe": self.timeframe, "bars": self.bars, "tolerance": self.tolerance,
                "lookahead": self.lookahead, "underwarmed": self.underwarmed,
                "needed_warmup": self.needed_warmup, "ok": self.exit_code == 0,
                "features": [{**dataclasses.asdict(f), "max_change": f.max_change if math.isfinite(f.max_change)
                              else None} for f in self.features]}


def _cut(c: Candles, lo: int, hi: int) -> Candles:
    """Bars ``lo..hi-1`` of ``c`` as candles (same symbol and timeframe)."""
    return dataclasses.replace(c, ts=c.ts[lo:hi], open=c.open[lo:hi], high=c.high[lo:hi], low=c.low[lo:hi],
                               close=c.close[lo:hi], volume=c.volume[lo:hi], gaps=[])


def _altered(c: Candles, t: int, rng: np.random.Generator) -> Candles:
    """``c`` with every bar after ``t`` changed (prices scaled by 0.8..1.2, volume doubled)."""
    n = len(c)
    factor = np.ones(n)
    factor[t + 1:] = rng.uniform(0.8, 1.2, n - t - 1)
    high = c.high * factor
    low = c.low * factor
    vol = c.volume.copy()
    vol[t + 1:] = vol[t + 1:] * 2.0 + 1.0
    return dataclasses.replace(c, open=c.open * factor, high=high, low=low, close=c.close * factor, volume=vol)


def _arrays(strategy: Any, candles: Candles) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=np.float64) for k, v in strategy.features(candles).items()}


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|`` with NaN == NaN counted as 0 and NaN against a number as infinity."""
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    d = np.where(nan_a & nan_b, 0.0, d)
    return np.where(nan_a ^ nan_b, np.inf, d)


def check_strategy(strategy: Any, candles: Candles, *, tolerance: float = DEFAULT_TOLERANCE,
                   checkpoints: int = 8, seed: int = 0) -> CheckReport:
    """Run both analyses (module docstring) of ``strategy`` over ``candles``.

    Args:
        strategy: a loaded strategy (``features`` and ``warmup``), e.g. from
            :func:`~sigmax_cli.strategies.load_strategy`.
        candles: the data, oldest first; at least 3 bars.
        tolerance: relative, > 0 (see module docstring).
        checkpoints: bars tested by each analysis.
        seed: of the random alteration of future bars.

    Raises:
        StrategyCodeError: the strategy's own ``features`` raised (its traceback attached).
    """
    n = len(candles)
    full = _arrays(strategy, candles)
    history = history_bars(strategy)
    report = CheckReport(strategy.name, int(strategy.warmup), history, candles.symbol, candles.timeframe, n, tolerance)
    scales = {}
    for name, values in full.items():
        finite = np.abs(values[np.isfinite(values)])
        scale = float(np.median(finite)) if finite.size else 1.0
        scales[name] = scale if scale > 0 else 1.0
        report.features.append(FeatureReport(name, scale=scales[name]))
    by_name = {f.name: f for f in report.features}
    rng = np.random.default_rng(seed)

    # look-ahead: prefixes and altered futures
    lo = min(max(1, strategy.warmup), n - 2)
    points = sorted({int(x) for x in np.linspace(lo, n - 2, checkpoints)})
    for t in points:
        for variant in (_arrays(strategy, _cut(candles, 0, t + 1)), _arrays(strategy, _altered(candles, t, rng))):
            for name, ref in full.items():
                got = variant.get(name)
                rep = by_name[name]
                if got is None or got.shape[0] < t + 1:
                    rep.lookahead, rep.max_change = True, math.inf
                    rep.first_changed_bar = t if rep.first_changed_bar is None else min(rep.first_changed_bar, t)
                    continue
                d = _diff(got[: t + 1], ref[: t + 1])
                bad = np.flatnonzero(d > LOOKAHEAD_TOLERANCE * scales[name])
                if bad.size:
                    rep.lookahead = True
                    first = int(bad[0])
                    rep.first_changed_bar = first if rep.first_changed_bar is None else min(rep.first_changed_bar,
                                                                                             first)
                    rep.max_change = max(rep.max_change, float(d[bad].max()))

    # history: bisection on the window length at late checkpoints
    late = sorted({int(x) for x in np.linspace(n // 2, n - 1, max(1, checkpoints // 2))})
    causal = [name for name in full if not by_name[name].lookahead]
    cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}

    def at(t: int, length: int) -> dict[str, np.ndarray]:
        key = (t, length)
        if key not in cache:
            try:
                cache[key] = _arrays(strategy, _cut(candles, t - length + 1, t + 1))
            except Exception:  # noqa: BLE001 - a window too short for the user's code counts as not settled
                cache[key] = {}
        return cache[key]

    def settled(name: str, t: int, length: int) -> bool:
        got = at(t, length).get(name)
        if got is None or got.shape[0] != length:
            return False
        return bool(_diff(got[-1:], full[name][t: t + 1])[0] <= tolerance * scales[name])

    for name in causal:
        need: int | None = 0
        for t in late:
            if not settled(name, t, t + 1):  # the whole history itself: always equal, unless non-deterministic
                need = None
                break
            a, b = 1, t + 1  # smallest settled length in [a, b]
            while a < b:
                mid = (a + b) // 2
                if settled(name, t, mid):
                    b = mid
                else:
                    a = mid + 1
            if a == t + 1 and t > 0:  # only the whole history gives the value: not settled within the data
                need = None
                break
            need = max(need or 0, a - 1)
        by_name[name].history_bars = need
    return report
