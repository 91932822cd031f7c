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
* Fees (the paper convention): charged in the quote currency on every fill,
  ``price * amount * fee_rate``, deducted from the quote a buy pays or a sell receives;
  the base asset moves by exactly the filled amount. So a fill's ``fee_currency`` is
  always the quote and a sell of the whole position leaves no base dust.

Funds: a buy reserves quote (``amount * price * (1 + fee)``, with ``MARKET_BUY_BUFFER`` on
top for market orders, whose price is unknown until the fill); a sell reserves base. An
order the free balance cannot cover is refused with :class:`InsufficientFunds`; that
check is made in the market's amount steps with half a step of tolerance
(:meth:`~sigmax_cli.markets.MarketRules.covers`), and a sell within half a step of the free
balance sells exactly that balance. A fill never spends more than its order reserved, so
no balance can go negative; this is checked after every change
(:class:`BalanceInvariantError`).

Exact money: balances, reservations and fills are kept as :class:`~decimal.Decimal`
(amounts are whole market steps from ccxt's ``decimal_to_precision``, prices the bar's
floats through their shortest repr), so sums of fills never drift off the step grid; the
:class:`Broker` interface reads them as floats. Precision and minimums come from
:class:`~sigmax_cli.markets.MarketRules` (ccxt market structures): amounts truncated to
the step, limit prices rounded to the tick.
"""

from __future__ import annotations

from decimal import Context, Decimal, localcontext

from sigmax_cli.brokers.base import MARKET_BUY_BUFFER_DEFAULT, normalise_request
from sigmax_cli.errors import InsufficientFunds, OrderRejected
from sigmax_cli.markets import MarketRules, default_rules, to_decimal
from sigmax_cli.model import Balance, Bar, BrokerUpdate, Fill, Order, OrderRequest

MARKET_BUY_BUFFER = MARKET_BUY_BUFFER_DEFAULT
_ZERO = Decimal(0)
_ONE = Decimal(1)
QUOTE_QUANTUM = Decimal("1e-18")
"""Quote amounts (reservations, notionals, fees, balances) are fixed-point with 18 decimals,
the finest unit any exchange uses (ETH's wei): every sum of them is then exact."""
_CTX = Context(prec=60)  # base steps (<= 20 digits) x prices (<= 17 digits) x fee rates: exact


def _q(value: Decimal) -> Decimal:
    """``value`` at :data:`QUOTE_QUANTUM` (run inside ``localcontext(_CTX)``)."""
    return value.quantize(QUOTE_QUANTUM)


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

    Raises:
        ValueError: a starting balance is negative or not finite.
    """

    def __init__(
        self, balances: dict[str, float], markets: dict[str, MarketRules] | None = None,
        maker_fee: float = 0.001, taker_fee: float = 0.001, slippage_bps: float = 5.0,
        participation: float = 0.1,
    ) -> None:
        start = {k: to_decimal(v) for k, v in balances.items()}
        if any(v < 0 for v in start.values()):
            raise ValueError("starting balances must be >= 0")
        self._free: dict[str, Decimal] = dict(start)
        self._used: dict[str, Decimal] = {k: _ZERO for k in start}
        self._free_f: dict[str, float] = {k: float(v) for k, v in start.items()}  # float views, read per bar
        self._total_f: dict[str, float] = dict(self._free_f)
        self.markets = dict(markets or {})
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self._fee = {maker_fee: to_decimal(maker_fee), taker_fee: to_decimal(taker_fee)}
        self.slippage = slippage_bps / 10_000.0
        self.participation = participation
        self._orders: dict[str, Order] = {}
        self._active: dict[str, list[Order]] = {}
        self._reserved: dict[str, Decimal] = {}  # client order id -> quote (buy) or base (sell) held
        self._amounts: dict[str, tuple[Decimal, Decimal]] = {}  # client order id -> (amount, filled), base units
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

        A sell for exactly the float :meth:`free` reports, or for at most half a step more
        than the free base balance, sells exactly that balance.

        Raises:
            OrderRejected: duplicate client order id, bad price, below market minimums.
            InsufficientFunds: the free balance does not cover the reservation (compared in
                the market's amount steps).
        """
        with localcontext(_CTX):
            return self._submit(request, now_ms)

    def _submit(self, request: OrderRequest, now_ms: int) -> Order:
        if request.client_order_id in self._orders:
            raise OrderRejected(f"client order id {request.client_order_id} was already used",
                                "use a new client order id per order", kind="duplicate")
        rules = self.rules(request.symbol)
        amount_f, price, ref = normalise_request(request, rules)
        amount = rules.amount_to_decimal(amount_f)
        if request.side == "buy":
            asset = rules.quote
            free = self._free.get(asset, _ZERO)
            fee = self.maker_fee if request.type == "limit" else self.taker_fee
            buffer = 0.0 if request.type == "limit" else self.slippage + MARKET_BUY_BUFFER
            unit_cost = to_decimal(ref) * to_decimal(1.0 + buffer) * (_ONE + self._fee[fee])  # quote per base unit
            need = _q(amount * unit_cost)
            if not rules.covers(free / unit_cost, amount):  # compared in base steps: what the quote buys
                raise InsufficientFunds(
                    f"{request.symbol} buy needs {need:.8g} {asset} but {free:.8g} is free",
                    "order less or free funds")
            need = min(need, free)
        else:
            asset = rules.base
            free = self._free.get(asset, _ZERO)
            # free() is a float, and at 1e9 units a float cannot hold 1e-8 steps: asking for
            # exactly the float free() reports (or, above the exact balance, no more than it)
            # means "all of it", which is sold exactly
            free_f = self._free_f.get(asset, 0.0)
            everything = amount_f == free_f or (amount > free and amount_f <= free_f)
            if not (everything or rules.covers(free, amount)):
                raise InsufficientFunds(
                    f"{request.symbol} sell needs {amount:f} {asset} but {free:f} is free",
                    "order less or free funds")
            if everything or amount > free:  # or within half a step above it: sell exactly the balance
                amount = free
                rules.check(amount, ref)
            need = amount
        order = Order(
            client_order_id=request.client_order_id, symbol=request.symbol, side=request.side,
            type=request.type, amount=float(amount), price=price, time_in_force=request.time_in_force,
            reduce_only=request.reduce_only, created_ms=now_ms, updated_ms=now_ms, reason=request.reason,
        )
        self._move(asset, need)
        self._reserved[order.client_order_id] = need
        self._amounts[order.client_order_id] = (amount, _ZERO)
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
        with localcontext(_CTX):
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
        return {a: Balance(a, float(self._free.get(a, _ZERO)), float(self._used.get(a, _ZERO)))
                for a in set(self._free) | set(self._used)}

    def free(self, asset: str) -> float:
        """Free balance of ``asset`` (not reserved by open orders), as a float."""
        return self._free_f.get(asset, 0.0)

    def total(self, asset: str) -> float:
        """Free plus reserved balance of ``asset``, as a float."""
        return self._total_f.get(asset, 0.0)

    def total_exact(self, asset: str) -> Decimal:
        """Free plus reserved balance of ``asset``, exactly."""
        return self._free.get(asset, _ZERO) + self._used.get(asset, _ZERO)

    def get_order(self, client_order_id: str) -> Order:
        return self._orders[client_order_id]

    # -- matching --------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> BrokerUpdate:
        """Match the active orders of ``bar.symbol`` against this closed bar."""
        active = self._active.get(bar.symbol)
        if not active:
            return BrokerUpdate()
        with localcontext(_CTX):
            return self._on_bar(bar, active)

    def _on_bar(self, bar: Bar, active: list[Order]) -> BrokerUpdate:
        update = BrokerUpdate()
        rules = self.rules(bar.symbol)
        capacity = to_decimal(self.participation) * to_decimal(float(bar.volume))
        for order in list(active):
            if order.created_ms > bar.ts_ms:  # decided after this bar opened: not yet
                continue
            fill = self._match(order, bar, rules, capacity)
            changed = False
            if fill is not None:
                capacity -= to_decimal(fill.amount)
                update.fills.append(fill)
                changed = True
            if order.is_active and (
                order.time_in_force == "IOC"
                or (order.side == "buy" and self._reserved[order.client_order_id] <= 0)
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

    def _match(self, order: Order, bar: Bar, rules: MarketRules, capacity: Decimal) -> Fill | None:
        if order.type == "market":
            px_f = bar.open * (1.0 + self.slippage) if order.side == "buy" else bar.open * (1.0 - self.slippage)
            liquidity, fee_rate = "taker", self.taker_fee
        else:
            limit = order.price
            if order.side == "buy":
                if bar.low > limit:
                    return None
                crossed = bar.open <= limit
                px_f = min(limit, bar.open)
            else:
                if bar.high < limit:
                    return None
                crossed = bar.open >= limit
                px_f = max(limit, bar.open)
            liquidity, fee_rate = ("taker", self.taker_fee) if crossed else ("maker", self.maker_fee)
        px_f = float(px_f)
        px, rate = to_decimal(px_f), self._fee[fee_rate]
        amount, filled = self._amounts[order.client_order_id]
        qty = min(amount - filled, max(capacity, _ZERO))
        if qty < amount - filled:  # the volume cap cuts it: whole steps only
            qty = rules.amount_to_decimal(qty)
        if qty <= 0:
            return None
        reserved = self._reserved[order.client_order_id]
        if order.side == "buy":
            if px * qty * (_ONE + rate) > reserved:  # gapped up beyond the reservation: fill what it covers
                qty = rules.amount_to_decimal(reserved / (px * (_ONE + rate)))
                if qty <= 0:
                    return None
            notional = _q(px * qty)
            fee = _q(notional * rate)
            spend = min(notional + fee, reserved)
            self._reserved[order.client_order_id] = reserved - spend
            self._used[rules.quote] -= spend
            self._credit(rules.base, qty)
            self._sync(rules.quote)
        else:
            qty = min(qty, reserved)
            notional = _q(px * qty)
            fee = _q(notional * rate)
            self._reserved[order.client_order_id] = reserved - qty
            self._used[rules.base] -= qty
            self._credit(rules.quote, notional - fee)
            self._sync(rules.base)
        self._check(rules.base, rules.quote)
        filled += qty
        self._amounts[order.client_order_id] = (amount, filled)
        order.filled = float(filled)
        order.cost += float(notional)
        order.fee += float(fee)
        order.move("filled" if filled >= amount else "partially_filled", bar.ts_ms)
        self._trade_seq += 1
        return Fill(order.client_order_id, order.symbol, order.side, px_f, float(qty), float(fee), rules.quote,
                    liquidity, bar.ts_ms, trade_id=f"paper-{self._trade_seq}")

    # -- balance bookkeeping -----------------------------------------------------------------
    def _sync(self, asset: str) -> None:
        """Refresh the float views of ``asset``."""
        free = self._free.get(asset, _ZERO)
        self._free_f[asset] = float(free)
        self._total_f[asset] = float(free + self._used.get(asset, _ZERO))

    def _move(self, asset: str, amount: Decimal) -> None:
        """free -> used."""
        self._free[asset] = self._free.get(asset, _ZERO) - amount
        self._used[asset] = self._used.get(asset, _ZERO) + amount
        self._check(asset)
        self._sync(asset)

    def _credit(self, asset: str, amount: Decimal) -> None:
        self._free[asset] = self._free.get(asset, _ZERO) + amount
        self._used.setdefault(asset, _ZERO)
        self._sync(asset)

    def _finish(self, order: Order) -> None:
        """Release what a final order still reserves and drop it from the active book."""
        left = self._reserved.pop(order.client_order_id, _ZERO)
        self._amounts.pop(order.client_order_id, None)
        rules = self.rules(order.symbol)
        asset = rules.quote if order.side == "buy" else rules.base
        if left:
            self._used[asset] -= left
            self._free[asset] = self._free.get(asset, _ZERO) + left
            self._sync(asset)
        self._check(asset)
        active = self._active.get(order.symbol)
        if active and order in active:
            active.remove(order)
            self._open_count -= 1

    def _check(self, *assets: str) -> None:
        for asset in assets:
            for book in (self._free, self._used):
                value = book.get(asset, _ZERO)
                if value < 0:
                    raise BalanceInvariantError(f"{asset} balance went negative ({value!r})")
