"""Cooldown after a stop-out: no new entry on a symbol right after it closed at a loss."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import OrderRule, RiskView, increases_exposure


class StopOutCooldown(OrderRule):
    """Refuse buys of a symbol for ``cooldown_minutes`` after its last losing round trip
    closed (the usual way a stop-loss ends), so a falling market is not re-entered at once.

    Time is bar time on both sides: ``view.last_loss_ms`` holds the close time of the bar at
    which the engine booked the losing exit (:meth:`Portfolio.apply`'s ``bar_ms``) and
    ``view.now_ms`` the close time of the bar being decided. A cooldown of 0 never blocks.
    """

    name = "stop_out_cooldown"

    def __init__(self, cooldown_minutes: int) -> None:
        self.cooldown_ms = cooldown_minutes * 60_000

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if self.cooldown_ms <= 0:
            return None
        last = view.last_loss_ms.get(request.symbol)
        if last is None or not increases_exposure(request):
            return None
        elapsed_ms = max(0, view.now_ms - last)
        if elapsed_ms < self.cooldown_ms:
            return Denial(self.name, f"{request.symbol} stopped out {elapsed_ms / 60_000:.0f} min ago; "
                          f"cooldown {self.cooldown_ms / 60_000:.0f} min", elapsed_ms / 60_000,
                          self.cooldown_ms / 60_000)
        return None
