"""Consecutive losses: pause new entries for a cooldown after N losing round trips in a row."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule


class ConsecutiveLosses(TripRule):
    """Trip to REDUCING for ``cooldown_minutes`` when ``limit`` round trips in a row lost
    money (net of fees). While the streak lasts, each further loss trips it again; a
    winning trip resets the streak. After freqtrade's StoplossGuard protection."""

    name = "consecutive_losses"

    def __init__(self, limit: int, cooldown_minutes: int) -> None:
        self.limit = limit
        self.cooldown_ms = cooldown_minutes * 60_000
        self._tripped_at = 0


    def on_mark(self, view: RiskView) -> Trip | None:
        if view.losing_streak < self.limit:
            self._tripped_at = 0
            return None
        if view.losing_streak == self._tripped_at:
            return None
        self._tripped_at = view.losing_streak
        return Trip(self.name, TradingState.REDUCING, f"{view.losing_streak} losing trades in a row >= {self.limit}",
                    view.losing_streak, self.limit, "cooldown", view.now_ms + self.cooldown_ms)
