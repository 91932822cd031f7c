"""Max drawdown from peak equity: halt until an operator releases."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, RiskView, Trip, TradingState


class MaxDrawdown:
    """Trip to HALTED when equity is ``limit_pct`` percent or more below its peak.

    Drawdown = (peak - equity) / peak (Magdon-Ismail & Atiya 2004 define max drawdown on
    the same running peak). Only an operator resumes trading after this trip.
    """

    name = "max_drawdown"

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        return None

    def on_mark(self, view: RiskView) -> Trip | None:
        if view.peak_equity <= 0:
            return None
        dd_pct = (view.peak_equity - view.equity) / view.peak_equity * 100.0
        if dd_pct >= self.limit_pct:
            return Trip(self.name, TradingState.HALTED, f"drawdown {dd_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(dd_pct, 4), self.limit_pct, "operator")
        return None
