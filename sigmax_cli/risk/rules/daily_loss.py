"""Daily loss limit: stop new entries for the rest of the UTC day."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, RiskView, TradingState, Trip

DAY_MS = 86_400_000


class DailyLossLimit:
    """Trip to REDUCING when equity falls ``limit_pct`` percent below the equity at the
    start of the UTC day; trading resumes at the next UTC midnight (exits stay allowed).

    The loss is measured mark-to-market (realised and unrealised), as exchanges' and
    prop firms' daily drawdown rules do.
    """

    name = "daily_loss_limit"
    pre_trade = False  # trips only: the guard skips it in pre-trade checks

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        return None

    def on_mark(self, view: RiskView) -> Trip | None:
        if view.day_start_equity <= 0:
            return None
        loss_pct = (view.day_start_equity - view.equity) / view.day_start_equity * 100.0
        if loss_pct >= self.limit_pct:
            next_day = (view.now_ms // DAY_MS + 1) * DAY_MS
            return Trip(self.name, TradingState.REDUCING,
                        f"daily loss {loss_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(loss_pct, 4), self.limit_pct, "next_utc_day", next_day)
        return None
