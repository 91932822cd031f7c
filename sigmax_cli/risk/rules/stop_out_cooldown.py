"""Cooldown after a stop-out: no new entry on a symbol right after it closed at a loss."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, OrderRule, RiskView, increases_exposure


class StopOutCooldown(OrderRule):
    """Refuse buys of a symbol for ``cooldown_minutes`` after its last losing round trip
    closed (the usual way a stop-loss ends), so a falling market is not re-entered at once."""

    name = "stop_out_cooldown"

    def __init__(self, cooldown_minutes: int) -> None:
        self.cooldown_ms = cooldown_minutes * 60_000

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        last = view.last_loss_ms.get(request.symbol)
        if last is None or not increases_exposure(request):
            return None
        left_ms = last + self.cooldown_ms - view.now_ms
        if left_ms > 0:
            return Denial(self.name, f"{request.symbol} stopped out {(view.now_ms - last) / 60_000:.0f} min ago; "
                          f"cooldown {self.cooldown_ms / 60_000:.0f} min", (view.now_ms - last) / 60_000,
                          self.cooldown_ms / 60_000)
        return None

