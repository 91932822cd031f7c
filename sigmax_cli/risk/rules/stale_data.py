"""Stale market data: no decisions on prices that stopped updating."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule


class StaleData(TripRule):
    """Trip to HALTED while the market data is more than ``max_age_ms`` overdue; resumes as
    soon as fresh bars arrive (``resume == "condition"``)."""

    name = "stale_data"

    def __init__(self, max_age_ms: int) -> None:
        self.max_age_ms = max_age_ms


    def on_mark(self, view: RiskView) -> Trip | None:
        if view.data_age_ms > self.max_age_ms:
            return Trip(self.name, TradingState.HALTED,
                        f"market data {view.data_age_ms / 1000:.0f} s overdue > {self.max_age_ms / 1000:.0f} s",
                        view.data_age_ms, self.max_age_ms, "condition")
        return None

    def cleared(self, view: RiskView) -> bool:
        return view.data_age_ms <= self.max_age_ms
