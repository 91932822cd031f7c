"""Performance alerts (the seed's thresholds): drawdown steps, losing streaks, win rate.

* daily, weekly and total drawdown of 5 / 10 / 20 % -> warning / error / critical;
* 10 losing round trips in a row -> error;
* win rate under 30 % after 10 or more round trips -> warning.

Each threshold fires once when first crossed (per UTC day / ISO week for the period ones);
the dispatcher's debounce keeps repeats quiet.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigmax_cli.alerts.base import Alert

DRAWDOWN_STEPS = ((20.0, "critical"), (10.0, "error"), (5.0, "warning"))  # percent, severity
LOSING_STREAK = 10
MIN_WIN_RATE_PCT = 30.0
MIN_TRADES_FOR_WIN_RATE = 10


@dataclass(frozen=True)
class PerformanceStats:
    """What the engine knows at a mark. Money in quote currency; ``*_pct`` are percent."""

    ts_ms: int
    day_drawdown_pct: float
    week_drawdown_pct: float
    total_drawdown_pct: float
    losing_streak: int
    trades: int
    wins: int
    day: int
    week: int


class PerformanceWatch:
    """Turns :class:`PerformanceStats` into alerts when a threshold is first crossed."""

    def __init__(self) -> None:
        self._fired: set[tuple] = set()

    def check(self, s: PerformanceStats) -> list[Alert]:
        alerts: list[Alert] = []
        for period, value, key in (("daily", s.day_drawdown_pct, s.day), ("weekly", s.week_drawdown_pct, s.week),
                                   ("total", s.total_drawdown_pct, 0)):
            for step, severity in DRAWDOWN_STEPS:
                if value >= step:
                    mark = (period, step, key)
                    if mark not in self._fired:
                        self._fired.add(mark)
                        alerts.append(Alert(f"perf.{period}_drawdown.{step:g}", severity,
                                            f"{period} drawdown {value:.1f}% >= {step:g}%", "", s.ts_ms,
                                            {"value": round(value, 4), "limit": step}))
                    break
        if s.losing_streak >= LOSING_STREAK and ("streak", s.losing_streak) not in self._fired:
            self._fired.add(("streak", s.losing_streak))
            alerts.append(Alert("perf.losing_streak", "error", f"{s.losing_streak} losing trades in a row", "",
                                s.ts_ms, {"value": s.losing_streak, "limit": LOSING_STREAK}))
        if s.trades >= MIN_TRADES_FOR_WIN_RATE:
            rate = s.wins / s.trades * 100.0
            if rate < MIN_WIN_RATE_PCT and ("winrate", s.trades) not in self._fired:
                self._fired.add(("winrate", s.trades))
                alerts.append(Alert("perf.win_rate", "warning", f"win rate {rate:.0f}% < {MIN_WIN_RATE_PCT:g}% "
                                    f"after {s.trades} trades", "", s.ts_ms,
                                    {"value": round(rate, 2), "limit": MIN_WIN_RATE_PCT}))
        return alerts
