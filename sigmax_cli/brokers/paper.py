"""The paper broker: a simulated spot exchange with a fill model, fees and slippage.

Fill model (one bar at a time, never looking ahead):

* An order submitted at a bar's close (``now_ms`` = close time) can fill from the next bar.
* Market orders fill at the bar's open moved against us by ``slippage_bps`` (taker fee).
* Limit orders fill when the bar trades through the limit: a buy when ``low <= price``,
  at ``min(price, open)``; a sell when ``high >= price``, at ``max(price, open)``. A limit
  the open already crossed is a taker fill, otherwise a maker fill at the limit. No slippage.
* Volume participation cap: all fills of a symbol in one bar together take at most
  ``participation * bar.volume`` base units; the rest stays open for later bars
  (``partially_filled``), or expires for IOC orders. A bar with zero volume fills nothing.
* Fees are charged in the quote currency on every fill: ``price * amount * fee_rate``.

Funds: a buy reserves quote (``amount * price * (1 + fee)``, with ``MARKET_BUY_BUFFER`` on
top for market orders, whose price is unknown until the fill); a sell reserves base. An
order the free balance cannot cover is refused with :class:`InsufficientFunds`. A fill
never spends more than its order reserved, so no balance can go negative; this is
checked after every change (:class:`BalanceInvariantError`).

Precision and minimums come from :class:`~sigmax_cli.markets.MarketRules` (ccxt
market structures); amounts are truncated to the step, prices rounded to the tick.
"""

from __future__ import annotations

from sigmax_cli.brokers.base import (
    MARKET_BUY_BUFFER_DEFAULT,
    Balance,
    BrokerUpdate,
    Fill,
    Order,
    OrderRequest,
    normalise_request,
)
from sigmax_cli.errors import InsufficientFunds, OrderRejected
from sigmax_cli.markets import MarketRules, default_rules
from sigmax_cli.strategies.base import Bar

MARKET_BUY_BUFFER = MARKET_BUY_BUFFER_DEFAULT
_EPS = 1e-9


class BalanceInvariantError(AssertionError):
    """A balance went negative: a bug in the fill model, never a user error."""


class PaperBroker:
    """Simulated spot account. See the module docstring for the fill model.

    Args:
        balances: starting free balances per asset, e.g. ``{"USDT": 10_000.0}``.
        markets: market rules per symbol; symbols without rules get
            :func:`~sigmax_cli.markets.default_rules`.
        maker_fee, taker_fee: fractions of notional (0.001 = 0.1 %).
        slippage_bps: adverse move of market fills, basis points of the open.
        participation: fraction (0, 1] of a bar's volume one symbol may fill per bar.
    """

    def __init__(
        self, balances: dict[str, float], markets: dict[str, MarketRules] | None = None,
        maker_fee: float = 0.001, taker_fee: float = 0.001, slippage_bps: float = 5.0,
        participation: float = 0.1,
    ) -> None:
        if any(v < 0 for v in balances.values()):
            raise ValueError("starting balances must be >= 0")
        self._free: dict[str, float] = {k: float(v) for k, v in balances.items()}
        self._used: dict[str, float] = {k: 0.0 for k in balances}
        self.markets = dict(markets or {})
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.slippage = slippage_bps / 10_000.0
        self.participation = participation
        self._orders: dict[str, Order] = {}
        self._active: dict[str, list[Order]] = {}
        self._reserved: dict[str, float] = {}  # client order id -> quote (buy) or base (sell) held
        self._trade_seq = 0
        self._open_count = 0

    # -- Broker interface ---------------------------------------------------------------
    def rules(self, symbol: str) -> MarketRules:
        """Market rules of ``symbol`` (defaults when none were given)."""
        rules = self.markets.get(symbol)
        if rules is None:
            rules = self.markets[symbol] = default_rules(symbol)
        return rules

    def submit(self, request: OrderRequest, now_ms: int) -> Order:
        """Accept an order at ``now_ms`` (the close time of the bar it was decided on).

        Raises:
            OrderRejected: duplicate client order id, bad price, below market minimums.
            InsufficientFunds: the free balance does not cover the reservation.
        """
        if request.client_order_id in self._orders:
            raise OrderRejected(f"client order id {request.client_order_id} was already used",
                                "use a new client order id per order")
        rules = self.rules(request.symbol)
        amount, price, ref = normalise_request(request, rules)
        if request.side == "buy":
            asset = rules.quote
            fee = self.maker_fee if request.type == "limit" else self.taker_fee
            buffer = 0.0 if request.type == "limit" else self.slippage + MARKET_BUY_BUFFER
            need = amount * ref * (1.0 + buffer) * (1.0 + fee)
        else:
            asset = rules.base
            need = amount
        free = self._free.get(asset, 0.0)
        if need > free + _EPS:
            raise InsufficientFunds(
                f"{request.symbol} {request.side} needs {need:.8g} {asset} but {free:.8g} is free",
                "order less or free funds")
        order = Order(
            client_order_id=request.client_order_id, symbol=request.symbol, side=request.side,
            type=request.type, amount=amount, price=price, time_in_force=request.time_in_force,
            reduce_only=request.reduce_only, created_ms=now_ms, updated_ms=now_ms, reason=request.reason,
        )
        need = min(need, free)
        self._move(asset, need)
        self._reserved[order.client_order_id] = need
        order.move("open", now_ms)
        self._orders[order.client_order_id] = order
        self._active.setdefault(order.symbol, []).append(order)
        self._open_count += 1
        return order

    def cancel(self, client_order_id: str, now_ms: int) -> Order:
        """Cancel an active order and release its reservation.

        Raises:
            OrderRejected: unknown id, or the order is already final.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderRejected(f"no order {client_order_id}", "check the client order id")
        if not order.is_active:
            raise OrderRejected(f"order {client_order_id} is already {order.status}", "nothing to cancel")
        order.move("cancelled", now_ms)
        self._finish(order)
        return order

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self._active.get(symbol, ()))
        return [o for orders in self._active.values() for o in orders]

    def has_open_orders(self, symbol: str) -> bool:
        """True when ``symbol`` has an active order (cheaper than ``open_orders``)."""
        return bool(self._active.get(symbol))

    @property
    def open_order_count(self) -> int:
        return self._open_count

    def balances(self) -> dict[str, Balance]:
        return {a: Balance(a, self._free.get(a, 0.0), self._used.get(a, 0.0))
                for a in set(self._free) | set(self._used)}

    def free(self, asset: str) -> float:
        """Free balance of ``asset`` (not reserved by open orders)."""
        return self._free.get(asset, 0.0)

    def total(self, asset: str) -> float:
        """Free plus reserved balance of ``asset``."""
        return self._free.get(asset, 0.0) + self._used.get(asset, 0.0)

    def get_order(self, client_order_id: str) -> Order:
        return self._orders[client_order_id]

    # -- matching --------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> BrokerUpdate:
        """Match the active orders of ``bar.symbol`` against this closed bar."""
        active = self._active.get(bar.symbol)
        update = BrokerUpdate()
        if not active:
            return update
        rules = self.rules(bar.symbol)
        capacity = self.participation * bar.volume
        for order in list(active):
            if order.created_ms > bar.ts_ms:  # decided after this bar opened: not yet
                continue
            fill = self._match(order, bar, rules, capacity)
            changed = False
            if fill is not None:
                capacity -= fill.amount
                update.fills.append(fill)
                changed = True
            if order.is_active and (
                order.time_in_force == "IOC"
                or (order.side == "buy" and self._reserved[order.client_order_id] <= _EPS)
            ):
                # IOC: what did not fill now expires. A buy whose reservation a price gap used
                # up cannot pay for more: its remainder expires too.
                order.move("expired", bar.ts_ms)
                changed = True
            if not order.is_active:
                self._finish(order)
            if changed:
                update.orders.append(order)
        return update

    def _match(self, order: Order, bar: Bar, rules: MarketRules, capacity: float) -> Fill | None:
        if order.type == "market":
            px = bar.open * (1.0 + self.slippage) if order.side == "buy" else bar.open * (1.0 - self.slippage)
            liquidity, fee_rate = "taker", self.taker_fee
        else:
            limit = order.price
            if order.side == "buy":
                if bar.low > limit:
                    return None
                crossed = bar.open <= limit
                px = min(limit, bar.open)
            else:
                if bar.high < limit:
                    return None
                crossed = bar.open >= limit
                px = max(limit, bar.open)
            liquidity, fee_rate = ("taker", self.taker_fee) if crossed else ("maker", self.maker_fee)
        qty = rules.amount_to_precision(min(order.remaining, max(capacity, 0.0)))
        if qty <= 0:
            return None
        reserved = self._reserved[order.client_order_id]
        if order.side == "buy":
            cost = px * qty * (1.0 + fee_rate)
            if cost > reserved + _EPS:  # gapped up beyond the reservation: fill what it covers
                qty = rules.amount_to_precision(reserved / (px * (1.0 + fee_rate)))
                if qty <= 0:
                    return None
            notional = px * qty
            fee = notional * fee_rate
            spend = min(notional + fee, reserved)
            self._reserved[order.client_order_id] = reserved - spend
            self._used[rules.quote] -= spend
            self._credit(rules.base, qty)
        else:
            qty = min(qty, reserved)
            notional = px * qty
            fee = notional * fee_rate
            self._reserved[order.client_order_id] = reserved - qty
            self._used[rules.base] -= qty
            self._credit(rules.quote, notional - fee)
        self._check(rules.base, rules.quote)
        order.filled += qty
        order.cost += notional
        order.fee += fee
        status = "filled" if order.remaining < rules.amount_step - _EPS else "partially_filled"
        order.move(status, bar.ts_ms)
        self._trade_seq += 1
        return Fill(order.client_order_id, order.symbol, order.side, px, qty, fee, rules.quote, liquidity,
                    bar.ts_ms, trade_id=f"paper-{self._trade_seq}")

    # -- balance bookkeeping -----------------------------------------------------------------
    def _move(self, asset: str, amount: float) -> None:
        """free -> used."""
        self._free[asset] = self._free.get(asset, 0.0) - amount
        self._used[asset] = self._used.get(asset, 0.0) + amount
        self._check(asset)

    def _credit(self, asset: str, amount: float) -> None:
        self._free[asset] = self._free.get(asset, 0.0) + amount
        self._used.setdefault(asset, 0.0)

    def _finish(self, order: Order) -> None:
        """Release what a final order still reserves and drop it from the active book."""
        left = self._reserved.pop(order.client_order_id, 0.0)
        rules = self.rules(order.symbol)
        asset = rules.quote if order.side == "buy" else rules.base
        if left:
            self._used[asset] -= left
            self._free[asset] = self._free.get(asset, 0.0) + left
        self._check(asset)
        active = self._active.get(order.symbol)
        if active and order in active:
            active.remove(order)
            self._open_count -= 1

    def _check(self, *assets: str) -> None:
        for asset in assets:
            for book in (self._free, self._used):
                value = book.get(asset, 0.0)
                if value < 0:
                    if value < -1e-7 * max(1.0, abs(self._free.get(asset, 0.0)) + abs(self._used.get(asset, 0.0))):
                        raise BalanceInvariantError(f"{asset} balance went negative ({value!r})")
                    book[asset] = 0.0  # float dust from repeated subtraction
