"""Blocked exit: no new entry on a symbol whose exit orders keep being rejected."""

from __future__ import annotations

from sigmax_cli.model import Denial, OrderRequest
from sigmax_cli.risk.base import OrderRule, RiskView, increases_exposure


class ExitBlocked(OrderRule):
    """Refuse buys of a symbol while its exit is blocked: ``risk.max_consecutive_rejections``
    reduce-only sells in a row were rejected (see :mod:`sigmax_cli.risk.rejections`). Adding
    to a position that cannot be sold only makes the stranded amount larger. Lifts when an
    exit of the symbol is accepted or the position is flat."""

    name = "exit_blocked"

    def check_order(self, request: OrderRequest, view: RiskView) -> Denial | None:
        blocked = view.exits_blocked.get(request.symbol)
        if blocked is None or not increases_exposure(request):
            return None
        return Denial(self.name, f"{request.symbol} exits keep being rejected ({blocked}); no new entries")
