"""The rule strategy: long-only trend filter with RSI-dip / MACD-turn entries.

Rules, evaluated on each closed bar ``i`` (all thresholds from
:class:`sigmax_cli.settings.StrategySettings`; RSI after Wilder 1978, MACD after Appel
1979, trend EMA on closes; see :mod:`sigmax_cli.strategies.indicators`):

Exits, when holding (``position.qty > 0``), first match wins:

1. stop-loss: ``close <= avg_price * (1 - stop_loss_pct/100)``;
2. take-profit: ``close >= avg_price * (1 + take_profit_pct/100)``;
3. overbought: ``rsi > rsi_exit``;
4. momentum lost: the MACD histogram crosses below 0 (``hist[i-1] >= 0 > hist[i]``) while
   the position is in profit (``close > avg_price``); a losing position is left to the
   stop-loss instead of being sold on every wiggle of the histogram.

Stop-loss and take-profit depend on price only and fire even when the features are NaN
(they protect money); every other rule needs finite features and gives no signal on NaN.

Entries, when flat, only in an uptrend (``close > ema_trend``):

A. RSI dip: RSI crosses below ``rsi_entry`` (``rsi[i-1] >= rsi_entry > rsi[i]``);
B. MACD turn: the histogram crosses above 0 (``hist[i-1] <= 0 < hist[i]``) while
   ``rsi < 50`` (momentum turns up before the market is stretched).

Both entries are crossings, i.e. events, not states: after a stop-loss inside an oversold
stretch the strategy does not buy the same dip again on the next bar; it waits for the
next crossing. Every decision is a full position change (target 1.0 or 0.0).
"""

from __future__ import annotations

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import ConfigError
from sigmax_cli.model import Bar, Features
from sigmax_cli.settings import StrategySettings
from sigmax_cli.strategies import indicators
from sigmax_cli.strategies.base import PositionView, Signal, settling_bars

FEATURES = ("ema_trend", "rsi", "macd", "macd_signal", "macd_hist")


HISTORY_TOLERANCE = 1e-6
"""Fraction of a smoother's seed error left after the history a replay loads before ``--start``."""


def _settle(period: int, alpha: float) -> int:
    """Bars until an exponential smoother seeded with the mean of its first ``period`` values
    keeps less than :data:`HISTORY_TOLERANCE` of its seed's error: the seed window plus
    ``ln(tol) / ln(1 - alpha)`` bars (:func:`~sigmax_cli.strategies.base.settling_bars`)."""
    return settling_bars(period, alpha, HISTORY_TOLERANCE)


class RuleStrategy:
    """Trend filter + RSI/MACD entries, RSI/MACD/stop-loss/take-profit exits (long only).

    Args:
        settings: the strategy section of the settings (thresholds and lengths).

    Raises:
        ConfigError: ``macd_fast`` is not shorter than ``macd_slow``.
    """

    name = "rules"

    def __init__(self, settings: StrategySettings | None = None) -> None:
        s = settings if settings is not None else StrategySettings()
        if s.macd_fast >= s.macd_slow:
            raise ConfigError(
                f"strategy.macd_fast ({s.macd_fast}) must be shorter than strategy.macd_slow "
                f"({s.macd_slow})",
                "fix them in the profile or the SIGMAX_STRATEGY__* variables",
            )
        self.settings = s
        # Index of the first bar where every feature and, for the crossings, its value on
        # the bar before are defined: the trend EMA starts at index trend_ema-1, the MACD
        # histogram at macd_slow+macd_signal-2 (so its crossing at +1; one bar spare here),
        # the RSI at rsi_period (its crossing at rsi_period+1).
        self.warmup = max(s.trend_ema, s.macd_slow + s.macd_signal, s.rsi_period + 1)
        # Bars a replay loads before --start so the features have settled (the SMA seed of each
        # smoother forgotten to HISTORY_TOLERANCE): what `sigmax strategy check` measures, bounded above.
        macd_line = _settle(s.macd_slow, 2.0 / (s.macd_slow + 1))  # the slow EMA settles last
        self.history = max(self.warmup, _settle(s.trend_ema, 2.0 / (s.trend_ema + 1)),
                           _settle(s.rsi_period, 1.0 / s.rsi_period) + 1,
                           macd_line + _settle(s.macd_signal, 2.0 / (s.macd_signal + 1)))
        self._rsi_entry = float(s.rsi_entry)
        self._rsi_exit = float(s.rsi_exit)
        self._stop_factor = 1.0 - s.stop_loss_pct / 100.0
        self._take_factor = 1.0 + s.take_profit_pct / 100.0

    def features(self, candles: Candles) -> Features:
        """``ema_trend``, ``rsi``, ``macd``, ``macd_signal``, ``macd_hist`` as Python lists.

        Each list has one float per bar (quote currency; RSI in points 0..100), NaN during
        warm-up; computed causally over ``candles.close``.
        """
        s = self.settings
        close = candles.close
        line, signal, hist = indicators.macd(close, s.macd_fast, s.macd_slow, s.macd_signal)
        return {
            "ema_trend": indicators.ema(close, s.trend_ema).tolist(),
            "rsi": indicators.rsi(close, s.rsi_period).tolist(),
            "macd": line.tolist(),
            "macd_signal": signal.tolist(),
            "macd_hist": hist.tolist(),
        }

    def on_bar(self, bar: Bar, position: PositionView) -> Signal | None:
        """Apply the rules of the module docstring to one closed bar.

        NaN features need no explicit test: every comparison with NaN is False, so a NaN
        RSI, histogram or trend EMA can neither enter nor exit.
        """
        i = bar.i
        close = bar.close
        f = bar.features
        rsi = f["rsi"][i]
        hist = f["macd_hist"][i]
        if position.qty > 0.0:
            avg = position.avg_price
            if avg > 0.0:
                if close <= avg * self._stop_factor:
                    return Signal(0.0, f"stop-loss {100.0 * (close / avg - 1.0):+.1f}%")
                if close >= avg * self._take_factor:
                    return Signal(0.0, f"take-profit {100.0 * (close / avg - 1.0):+.1f}%")
            if rsi > self._rsi_exit:
                return Signal(0.0, f"rsi {rsi:.1f}>{self._rsi_exit:g}")
            if i > 0 and hist < 0.0 <= f["macd_hist"][i - 1] and close > avg > 0.0:
                return Signal(0.0, f"macd turned down {100.0 * (close / avg - 1.0):+.1f}%")
            return None
        if i == 0 or not close > f["ema_trend"][i]:  # also False on NaN
            return None
        prev_rsi = f["rsi"][i - 1]
        if rsi < self._rsi_entry <= prev_rsi:
            return Signal(1.0, f"rsi {rsi:.1f}<{self._rsi_entry:g} uptrend")
        if rsi < 50.0 and hist > 0.0 >= f["macd_hist"][i - 1]:
            return Signal(1.0, f"macd turned up, rsi {rsi:.1f} uptrend")
        return None

    def params(self) -> dict[str, object]:
        """The settings this strategy runs with, plus its name and warm-up (bars)."""
        return {"name": self.name, "warmup": self.warmup, "history": self.history,
                **self.settings.model_dump(exclude={"tables"})}
