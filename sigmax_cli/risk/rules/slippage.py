"""Slippage beyond tolerance: a fill far from the decided price pauses new entries."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule


class SlippageTolerance(TripRule):
    """Trip to REDUCING for ``cooldown_minutes`` when the newest fill's adverse slippage
    against the price the order was decided on exceeds ``max_bps`` basis points: the book
    is thin or the market gapped, so adding exposure now costs more than planned."""

    name = "slippage_tolerance"

    def __init__(self, max_bps: float, cooldown_minutes: int) -> None:
        self.max_bps = max_bps
        self.cooldown_ms = cooldown_minutes * 60_000
        self._seen: float | None = None


    def on_mark(self, view: RiskView) -> Trip | None:
        slip = view.last_slippage_bps
        if slip is None or slip == self._seen:
            return None
        self._seen = slip
        if slip > self.max_bps:
            reason = f"fill slippage {slip:.1f} bps > tolerance {self.max_bps:g} bps"
            return Trip(self.name, TradingState.REDUCING, reason, round(slip, 2), self.max_bps, "cooldown",
                        view.now_ms + self.cooldown_ms)
        return None
