"""Max drawdown from peak equity: no new entries until an operator releases."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule, pct_below


class MaxDrawdown(TripRule):
    """Trip to REDUCING when equity is ``limit_pct`` percent or more below its peak.

    Drawdown = (peak - equity) / peak on the running peak (Magdon-Ismail & Atiya 2004).
    REDUCING, not HALTED: exits stay possible, so the strategy's stop-losses can still cut
    the positions that caused the drawdown (a HALTED bot would sit on them while they fall;
    HALTED is the kill switch's). Only an operator resumes new entries after this trip.
    """

    name = "max_drawdown"

    def __init__(self, limit_pct: float) -> None:
        self.limit_pct = limit_pct


    def on_mark(self, view: RiskView) -> Trip | None:
        dd_pct = pct_below(view.peak_equity, view.equity)
        if dd_pct is not None and dd_pct >= self.limit_pct:
            return Trip(self.name, TradingState.REDUCING, f"drawdown {dd_pct:.2f}% >= limit {self.limit_pct:.2f}%",
                        round(dd_pct, 4), self.limit_pct, "operator")
        return None
