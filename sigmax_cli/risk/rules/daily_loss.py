"""Daily loss limit: stop new entries for the rest of the UTC day."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule, pct_below
from sigmax_cli.timeframes import next_utc_day_ms


class DailyLossLimit(TripRule):
    """Trip to REDUCING when equity falls ``limit_pct`` percent below the equity at the
    start of the UTC day; trading resumes at the next UTC midnight (exits stay allowed).

    The loss is measured mark-to-market (realised and unrealised), as exchanges' and
    prop firms' daily drawdown rules do.
    """

    name = "daily_loss_limit"

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct


    def on_mark(self, view: RiskView) -> Trip | None:
        loss_pct = pct_below(view.day_start_equity, view.equity)
        if loss_pct is not None and loss_pct >= self.limit_pct:
            return Trip(self.name, TradingState.REDUCING,
                        f"daily loss {loss_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(loss_pct, 4), self.limit_pct, "next_utc_day", next_utc_day_ms(view.now_ms))
        return None
