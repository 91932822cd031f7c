"""Max position notional, per symbol and across symbols."""

from __future__ import annotations

from sigmax_cli.brokers.base import OrderRequest
from sigmax_cli.risk.base import Denial, OrderRule, RiskView, increases_exposure


class MaxPositionNotional(OrderRule):
    """Refuse a buy that would lift the symbol's position above ``per_symbol`` quote, or
    all positions together above ``total`` quote (valued at last prices)."""

    name = "max_position_notional"

    def __init__(self, per_symbol: float, total: float) -> None:
        self.per_symbol = per_symbol
        self.total = total

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        if not increases_exposure(request):
            return None
        after = view.position_notional.get(request.symbol, 0.0) + request.notional
        if after > self.per_symbol + 1e-9:
            return Denial(self.name, f"{request.symbol} position would be {after:.2f} > max {self.per_symbol:.2f}",
                          after, self.per_symbol)
        total_after = view.total_notional + request.notional
        if total_after > self.total + 1e-9:
            return Denial("max_total_notional", f"total exposure would be {total_after:.2f} > max {self.total:.2f}",
                          total_after, self.total)
        return None

