"""Max order notional: no single exposure-adding order above ``max_order_notional``."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import OrderRule, RiskView, exact, increases_exposure, order_notional


class MaxOrderNotional(OrderRule):
    """Refuse a buy worth more than ``limit`` quote. Reduce-only exits are not capped: a
    position built by several orders must be closable by one. Compared exactly, in decimal
    (:func:`~sigmax_cli.risk.base.order_notional`): an order worth exactly ``limit`` passes,
    one amount step more does not."""

    name = "max_order_notional"

    def __init__(self, limit: float) -> None:
        self.limit = limit

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if increases_exposure(request) and order_notional(request) > exact(self.limit):
            return Denial(self.name, f"order {request.notional:.2f} > max order notional {self.limit:.2f}",
                          request.notional, self.limit)
        return None

