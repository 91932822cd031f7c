"""Weekly loss limit: stop new entries until the next ISO week."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule, pct_below
from sigmax_cli.timeframes import next_iso_week_ms


class WeeklyLossLimit(TripRule):
    """Trip to REDUCING when equity is ``limit_pct`` percent below the equity at the start
    of the ISO week (mark-to-market); resume at the next Monday 00:00 UTC."""

    name = "weekly_loss_limit"

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct


    def on_mark(self, view: RiskView) -> Trip | None:
        loss_pct = pct_below(view.week_start_equity, view.equity)
        if loss_pct is not None and loss_pct >= self.limit_pct:
            return Trip(self.name, TradingState.REDUCING, f"weekly loss {loss_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(loss_pct, 4), self.limit_pct, "next_iso_week", next_iso_week_ms(view.now_ms))
        return None
