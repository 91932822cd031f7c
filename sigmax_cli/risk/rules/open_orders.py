"""Max open orders: a cap on orders resting at once."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import OrderRule, RiskView, increases_exposure


class MaxOpenOrders(OrderRule):
    """Refuse a new exposure-adding order while ``limit`` orders are active. Exits pass, so
    a full book never traps a position."""

    name = "max_open_orders"

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if increases_exposure(request) and view.open_orders >= self.limit:
            return Denial(self.name, f"{view.open_orders} open orders >= max {self.limit}",
                          view.open_orders, self.limit)
        return None

