"""Max position notional, per symbol and across symbols."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import EXACT, OrderRule, RiskView, exact, increases_exposure, order_notional


class MaxPositionNotional(OrderRule):
    """Refuse a buy that would lift the symbol's position above ``per_symbol`` quote, or
    all positions together above ``total`` quote (valued at last prices). Compared exactly,
    in decimal (:func:`~sigmax_cli.risk.base.order_notional`, positions as the floats the
    view holds): a buy that brings a position exactly to the limit passes, one amount step
    more does not."""

    name = "max_position_notional"

    def __init__(self, per_symbol: float, total: float) -> None:
        self.per_symbol = per_symbol
        self.total = total

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if not increases_exposure(request):
            return None
        adding = order_notional(request)
        after = EXACT.add(exact(view.position_notional.get(request.symbol, 0.0)), adding)
        if after > exact(self.per_symbol):
            return Denial(self.name, f"{request.symbol} position would be {float(after):.2f} > max "
                          f"{self.per_symbol:.2f}", float(after), self.per_symbol)
        total_after = adding
        for value in view.position_notional.values():
            total_after = EXACT.add(total_after, exact(value))
        if total_after > exact(self.total):
            return Denial("max_total_notional", f"total exposure would be {float(total_after):.2f} > max "
                          f"{self.total:.2f}", float(total_after), self.total)
        return None

