"""The Broker interface and the order model shared by the paper and live brokers.

Order life cycle (ccxt's statuses, refined)::

    new ──> open ──> partially_filled ──> filled
     │        │             │
     │        └─────────────┴──> cancelled | expired
     └──> rejected

Amounts are base units, prices quote currency per base unit, an order's ``fee`` its fees'
quote value and a fill's ``fee`` in the currency charged (``fee_currency``), times UTC ms.
Only the RiskGuard's :class:`~sigmax_cli.risk.guard.GuardedBroker` may
call :meth:`Broker.submit`; the engine never holds a bare broker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

from sigmax_cli.markets import MarketRules
from sigmax_cli.strategies.base import Bar

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["GTC", "IOC"]

MARKET_BUY_BUFFER_DEFAULT = 0.02
"""Fraction of quote reserved above the reference price for a market buy, whose fill price
is unknown until the next bar (covers an adverse open of up to 2 %)."""

ACTIVE_STATUSES = frozenset({"new", "open", "partially_filled"})
FINAL_STATUSES = frozenset({"filled", "cancelled", "expired", "rejected"})
_TRANSITIONS = {
    "new": {"open", "partially_filled", "filled", "rejected", "cancelled", "expired"},
    "open": {"partially_filled", "filled", "cancelled", "expired"},
    "partially_filled": {"partially_filled", "filled", "cancelled", "expired"},
}


class IllegalTransition(RuntimeError):
    """An order was moved to a status its life cycle does not allow (a bug, not input)."""


@dataclass(frozen=True)
class OrderRequest:
    """What the engine asks a broker to do.

    Attributes:
        amount: base units, already at market precision.
        price: limit price in quote; ``None`` for market orders.
        reference_price: last known price (quote) used for risk checks and fund
            reservation of market orders.
        client_order_id: unique per order; a retried submit reuses it so that the
            exchange can refuse a duplicate.
    """

    symbol: str
    side: Side
    type: OrderType
    amount: float
    client_order_id: str
    reference_price: float
    price: float | None = None
    time_in_force: TimeInForce = "GTC"
    reduce_only: bool = False
    reason: str = ""

    @property
    def notional(self) -> float:
        """Order value in quote at the limit price or the reference price."""
        return self.amount * (self.price if self.price is not None else self.reference_price)


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


@dataclass
class Order:
    """A broker's order and its state. ``filled`` and ``amount`` in base units."""

    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: float
    price: float | None
    time_in_force: TimeInForce
    reduce_only: bool
    created_ms: int
    updated_ms: int
    reason: str = ""
    status: str = "new"
    filled: float = 0.0
    cost: float = 0.0          # quote, sum of fill price * amount
    fee: float = 0.0           # quote value of the fills' fees (a third asset's count 0)
    exchange_order_id: str | None = None

    @property
    def remaining(self) -> float:
        return max(self.amount - self.filled, 0.0)

    @property
    def average(self) -> float | None:
        """Average fill price (quote), ``None`` before the first fill."""
        return self.cost / self.filled if self.filled > 0 else None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def move(self, status: str, ts_ms: int, reason: str | None = None) -> None:
        """Change status along the life cycle.

        Raises:
            IllegalTransition: the life cycle does not allow ``status`` from the current one.
        """
        if status not in _TRANSITIONS.get(self.status, ()):
            raise IllegalTransition(f"order {self.client_order_id}: {self.status} -> {status}")
        self.status = status
        self.updated_ms = ts_ms
        if reason:
            self.reason = reason

    def record(self, run_id: str) -> dict[str, object]:
        """The ledger row (``schema.orders``) of this order's current state."""
        return {
            "client_order_id": self.client_order_id, "run_id": run_id,
            "exchange_order_id": self.exchange_order_id, "symbol": self.symbol, "side": self.side,
            "type": self.type, "time_in_force": self.time_in_force, "reduce_only": self.reduce_only,
            "price": self.price, "amount": self.amount, "filled": self.filled, "average": self.average,
            "fee": self.fee, "status": self.status, "reason": self.reason,
            "created_ms": self.created_ms, "updated_ms": self.updated_ms,
        }


def split_fee(fee: float, currency: str, base: str, quote: str) -> tuple[float, float]:
    """A fill's commission as ``(base_fee, quote_fee)``: what it takes from the base balance
    (base units) and from the quote balance (quote). Charged in the base or the quote asset,
    all of it is in one of the two; charged in a third asset (BNB), it touches neither:
    ``(0.0, 0.0)``. The one rule the brokers' books, the Portfolio, the report's round trips
    and the ledger invariants apply."""
    if not fee:
        return 0.0, 0.0
    if currency == quote:
        return 0.0, fee
    if currency == base:
        return fee, 0.0
    return 0.0, 0.0


@dataclass(frozen=True)
class Fill:
    """One execution (ccxt's trade structure, reduced).

    Attributes:
        price: quote per base unit.
        amount: base units traded (before any fee taken in the base asset).
        fee: the commission, in ``fee_currency`` units as the exchange charged it: the quote
            (paper always), the base asset (Binance without BNB) or a third asset (BNB).
    """

    client_order_id: str
    symbol: str
    side: Side
    price: float
    amount: float
    fee: float
    fee_currency: str
    liquidity: Literal["maker", "taker"]
    ts_ms: int
    trade_id: str | None = None

    @property
    def notional(self) -> float:
        """``price * amount``, quote."""
        return self.price * self.amount

    def fee_in_quote(self, base: str, quote: str) -> float | None:
        """The fee's value in quote: as charged when in ``quote``, at this fill's price when
        in ``base``; ``None`` for a third asset, whose quote value this fill cannot tell."""
        if self.fee and self.fee_currency not in (base, quote):
            return None
        base_fee, quote_fee = split_fee(self.fee, self.fee_currency, base, quote)
        return quote_fee + base_fee * self.price

    def record(self, run_id: str) -> dict[str, object]:
        """The ledger row (``schema.fills``)."""
        return {
            "run_id": run_id, "client_order_id": self.client_order_id, "trade_id": self.trade_id,
            "symbol": self.symbol, "side": self.side, "price": self.price, "amount": self.amount,
            "fee": self.fee, "fee_currency": self.fee_currency, "liquidity": self.liquidity,
            "ts_ms": self.ts_ms,
        }


@dataclass(frozen=True)
class Balance:
    """One asset's balance: ``free`` + ``used`` (reserved by open orders) = ``total``."""

    asset: str
    free: float
    used: float

    @property
    def total(self) -> float:
        return self.free + self.used


@dataclass
class BrokerUpdate:
    """What changed at one bar: fills and every order whose state changed."""

    fills: list[Fill] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)


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
