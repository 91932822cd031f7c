"""API error burst: too many exchange errors in a minute halts trading for a cooldown."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule


class ApiErrorBurst(TripRule):
    """Trip to HALTED for ``cooldown_minutes`` when the broker saw ``max_per_minute`` or more
    exchange errors in the last 60 s: orders sent into a failing API are orders whose fate is
    unknown. Trading resumes by itself after the cooldown (auto-pause)."""

    name = "api_error_burst"

    def __init__(self, max_per_minute: int, cooldown_minutes: int) -> None:
        self.max_per_minute = max_per_minute
        self.cooldown_ms = cooldown_minutes * 60_000


    def on_mark(self, view: RiskView) -> Trip | None:
        if view.api_errors_last_minute >= self.max_per_minute:
            return Trip(self.name, TradingState.HALTED,
                        f"{view.api_errors_last_minute} exchange errors in a minute >= {self.max_per_minute}",
                        view.api_errors_last_minute, self.max_per_minute, "cooldown",
                        view.now_ms + self.cooldown_ms)
        return None
