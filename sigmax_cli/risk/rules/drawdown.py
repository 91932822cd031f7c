"""Max drawdown from peak equity: no new entries until an operator releases."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, RiskView, TradingState, Trip


class MaxDrawdown:
    """Trip to REDUCING when equity is ``limit_pct`` percent or more below its peak.

    Drawdown = (peak - equity) / peak on the running peak (Magdon-Ismail & Atiya 2004).
    REDUCING, not HALTED: exits stay possible, so the strategy's stop-losses can still cut
    the positions that caused the drawdown (a HALTED bot would sit on them while they fall;
    HALTED is the kill switch's). Only an operator resumes new entries after this trip.
    """

    name = "max_drawdown"
    pre_trade = False  # trips only: the guard skips it in pre-trade checks

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        return None

    def on_mark(self, view: RiskView) -> Trip | None:
        if view.peak_equity <= 0:
            return None
        dd_pct = (view.peak_equity - view.equity) / view.peak_equity * 100.0
        if dd_pct >= self.limit_pct:
            return Trip(self.name, TradingState.REDUCING, f"drawdown {dd_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(dd_pct, 4), self.limit_pct, "operator")
        return None
