"""Order rate: a cap on new exposure-adding orders per minute (a runaway-loop guard)."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import OrderRule, RiskView, increases_exposure


class MaxOrderRate(OrderRule):
    """Refuse an exposure-adding order when ``per_minute`` orders were already sent in the
    last 60 s. Exits pass."""

    name = "max_order_rate"

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if increases_exposure(request) and view.orders_last_minute >= self.per_minute:
            return Denial(self.name, f"{view.orders_last_minute} orders in the last minute >= max {self.per_minute}",
                          view.orders_last_minute, self.per_minute)
        return None

