"""The Broker interface shared by the paper and live brokers.

The order model it speaks (:class:`~sigmax_cli.model.OrderRequest`, ``Order``, ``Fill``,
``Balance``, ``BrokerUpdate``, ``Bar``) lives in :mod:`sigmax_cli.model`.
Only the RiskGuard's :class:`~sigmax_cli.risk.guard.GuardedBroker` may
call :meth:`Broker.submit`; the engine never holds a bare broker.
"""

from __future__ import annotations

import math
from typing import Protocol

from sigmax_cli.markets import MarketRules
from sigmax_cli.model import Balance, Bar, BrokerUpdate, Order, OrderRequest

MARKET_BUY_BUFFER_DEFAULT = 0.02
"""Fraction of quote reserved above the reference price for a market buy, whose fill price
is unknown until the next bar (covers an adverse open of up to 2 %)."""


def normalise_request(request: OrderRequest, rules: MarketRules) -> tuple[float, float | None, float]:
    """Put a request at the market's precision and check its minimums (every broker's first step).

    Returns:
        ``(amount, price, reference)``: the amount truncated to the step (base units), the
        limit price rounded to the tick (``None`` for a market order) and the price the
        order is valued at (the limit price, else ``request.reference_price``), in quote.

    Raises:
        OrderRejected: a limit order without a positive price, no valid reference price, or
            an amount / notional below the market's minimums.
    """
    from sigmax_cli.errors import OrderRejected

    amount = rules.amount_to_precision(request.amount)
    price = None
    if request.type == "limit":
        if request.price is None or not request.price > 0:
            raise OrderRejected(f"{request.symbol} limit order needs a positive price", "give a price", kind="price")
        price = rules.price_to_precision(request.price)
    ref = price if price is not None else request.reference_price
    if not (ref > 0 and math.isfinite(ref)):
        raise OrderRejected(f"{request.symbol} has no valid price to check the order against", "wait for market data",
                            kind="price")
    rules.check(amount, ref)
    return amount, price, ref


class Broker(Protocol):
    """Where orders go. Implementations: ``brokers.paper.PaperBroker``, ``brokers.live``.

    Beyond the four order/balance calls and ``on_bar``, the engine reads a few cheap
    account facts per bar (``rules``, ``free``, ``total``, ``has_open_orders``,
    ``open_order_count``), so that a 380,000-bar replay does not build balance dicts.
    """

    def rules(self, symbol: str) -> MarketRules:
        """Precision and limits of ``symbol``."""
        ...

    def free(self, asset: str) -> float:
        """Free balance of ``asset``."""
        ...

    def total(self, asset: str) -> float:
        """Free plus reserved balance of ``asset``."""
        ...

    def has_open_orders(self, symbol: str) -> bool:
        """True when ``symbol`` has an active order."""
        ...

    @property
    def open_order_count(self) -> int:
        """Active orders across symbols."""
        ...

    def submit(self, request: OrderRequest, now_ms: int) -> Order:
        """Place an order; raises ``OrderRejected`` / ``InsufficientFunds`` when refused."""
        ...

    def cancel(self, client_order_id: str, now_ms: int) -> Order:
        """Cancel an active order; raises ``OrderRejected`` for an unknown or final one."""
        ...

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Active orders, optionally of one symbol."""
        ...

    def balances(self) -> dict[str, Balance]:
        """Balances per asset."""
        ...

    def on_bar(self, bar: Bar) -> BrokerUpdate:
        """Advance to a closed bar: match (paper) or poll (live) and report what changed."""
        ...
