"""Weekly loss limit: stop new entries until the next ISO week."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, RiskView, TradingState, Trip

WEEK_MS = 7 * 86_400_000
MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-01 was a Thursday: ISO weeks start 4 days later


def next_week_start_ms(now_ms: int) -> int:
    """The next Monday 00:00 UTC after ``now_ms`` (UTC ms)."""
    return ((now_ms - MONDAY_OFFSET_MS) // WEEK_MS + 1) * WEEK_MS + MONDAY_OFFSET_MS


class WeeklyLossLimit:
    """Trip to REDUCING when equity is ``limit_pct`` percent below the equity at the start
    of the ISO week (mark-to-market); resume at the next Monday 00:00 UTC."""

    name = "weekly_loss_limit"
    pre_trade = False  # trips only: the guard skips it in pre-trade checks

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        return None

    def on_mark(self, view: RiskView) -> Trip | None:
        if view.week_start_equity <= 0:
            return None
        loss_pct = (view.week_start_equity - view.equity) / view.week_start_equity * 100.0
        if loss_pct >= self.limit_pct:
            return Trip(self.name, TradingState.REDUCING, f"weekly loss {loss_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(loss_pct, 4), self.limit_pct, "next_iso_week", next_week_start_ms(view.now_ms))
        return None
