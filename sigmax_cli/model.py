"""The shared value types of sigmax: bars, order requests, orders, fills, balances, denials.

Neutral ground: this module imports nothing else of sigmax, so that the strategies, the
brokers, the risk guard, the portfolio, the feeds and the ledger can all speak these types
without importing each other (issue 20: the package import cycles came from these types
living inside the packages that use them).

Order life cycle (ccxt's statuses, refined)::

    new ──> open ──> partially_filled ──> filled
     │        │             │
     │        └─────────────┴──> cancelled | expired
     └──> rejected

Amounts are base units, prices quote currency per base unit, an order's ``fee`` its fees'
quote value and a fill's ``fee`` in the currency charged (``fee_currency``), times UTC ms.
``Position`` stays in :mod:`sigmax_cli.portfolio`: it is not a pure value (it keeps the exact
quantity with the market helpers), and ``OrderRejected`` in :mod:`sigmax_cli.errors`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit"]
TimeInForce = Literal["GTC", "IOC"]

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


Features = dict[str, list[float]]
"""Feature name -> one value per bar (same length as the candles; NaN during warm-up)."""


@dataclass(slots=True)
class Bar:
    """One closed bar of one symbol as the engine hands it to a strategy.

    Prices in quote currency, ``volume`` in base units, ``ts_ms`` the bar's open time (UTC
    ms); ``features`` are the symbol's feature series and ``i`` this bar's index in them.
    """

    symbol: str
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    i: int
    features: Features

    def feature(self, name: str) -> float:
        """This bar's value of feature ``name``."""
        return self.features[name][self.i]


@dataclass(frozen=True)
class Denial:
    """Why the RiskGuard refused an order: rule, reason, measured value and limit."""

    rule: str
    reason: str
    value: float | None = None
    limit: float | None = None
