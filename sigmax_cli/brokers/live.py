"""The live broker: orders on an exchange (its testnet, or live) through ccxt.

It implements :class:`~sigmax_cli.brokers.base.Broker` like the paper broker, so the same
engine loop trades through it; the RiskGuard's ``GuardedBroker`` is still the only caller
of :meth:`LiveBroker.submit`. Every exchange call goes through
:func:`sigmax_cli.exchange.errors.invoke` (ccxt errors mapped once onto the sigmax tree);
this module never imports ccxt.

Orders. Amounts and prices are put to the market's precision and checked against its
minimums (:class:`~sigmax_cli.markets.MarketRules`) before anything is sent. Each order
carries the engine's client order id (``sx-...``). Submitting is not idempotent, so a send
whose outcome is unknown (timeout, dropped connection, 5xx) is never blindly repeated. The
lost request can still be accepted until the exchange's clock passes its signed
``timestamp`` plus its ``recvWindow`` (Binance's guarantee), so the broker computes that
acceptance deadline on the local wall clock from the request's own timestamp and
recvWindow as ccxt signed them (read back from the signed request), plus the known clock
offset when the local clock is ahead of the exchange's, plus a tolerance
(``accept_tolerance_ms``, the setting ``live.accept_tolerance_ms``, default 1000 ms: Binance
refuses timestamps 1000 ms or more ahead of its clock, so even an unmeasured offset it
accepts is covered). It looks the order
up by client order id at once (a lost answer of an accepted order) and, when not there,
waits out the deadline and looks again; only when the exchange then says it does not exist
is it sent again, with the same client order id, at most ``submit_attempts`` times. When
the exchange cannot say (the lookup fails), nothing is sent: the order is kept as ``new``
(its symbol blocked: the engine makes no decision for a symbol with an active order),
a critical ``order.unknown`` event is emitted, and later polls look it up again; it is
recorded ``rejected`` ("never reached the exchange") only once a lookup after its deadline
finds nothing. A 429/418 answer means the request was refused unprocessed: the order is
resent after ``Retry-After``. "Duplicate order sent" means an earlier send landed: the
order is looked up.

State machine: ccxt statuses map onto :data:`~sigmax_cli.brokers.base.ACTIVE_STATUSES` and
the final ones (``open`` with a fill -> ``partially_filled``, ``closed`` -> ``filled``,
``canceled`` -> ``cancelled``, ``expired``, ``rejected``). Fills come from the exchange's
trades (the FULL order response, then ``fetch_my_trades`` by order id), each trade once by
its id.

Fees are booked once, in the currency the exchange charged them
(:class:`~sigmax_cli.model.Fill` ``fee`` / ``fee_currency``, as ccxt's trade
``fee``); the fill's ``amount`` is the traded amount. In the book: a quote commission comes
out of the quote; a base commission out of the base (a buy receives ``amount - fee``, a sell
gives up ``amount + fee``), never out of the quote as well; a third asset's (BNB) out of that
asset's own entry (the book moves exactly as the account does). An order's ``fee`` is the
quote value of its fills' fees (a third asset's count 0).

Quantities are compared in the market's steps (:meth:`MarketRules.same_amount`,
:meth:`~MarketRules.covers`, :meth:`~MarketRules.is_flat`), never with an absolute epsilon:
the trades of an order are summed as exact step counts (Decimal), and an order is fully
reported when they cover its executed quantity within half a step.

Book. The broker trades a sub-account of the exchange account: ``total(quote)`` is the
capital it was given (:meth:`seed`: at most ``risk.max_capital``), moved by its own fills;
``total(base)`` is what its own fills bought (plus positions carried over from earlier runs).
``free()`` is that minus what its active orders reserve, and never more than the exchange
says is free. So the bot never spends more than its capital and never sells coins it did not
buy, whatever else the account holds.

Errors: every failed call is counted with its time (:meth:`error_count`, read by the
``api_error_burst`` risk rule that pauses trading) and its class (temporary, rate_limited,
invalid_order, authentication, clock, operational). Temporary errors of idempotent calls
(queries, cancels) are retried with exponential back-off and full jitter
(:class:`~sigmax_cli.exchange.errors.RetryPolicy`). A rejected request timestamp (Binance
-1021) raises :class:`ClockSkew` before trading starts (see :attr:`LiveBroker.running`).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from sigmax_cli.brokers.base import MARKET_BUY_BUFFER_DEFAULT, normalise_request
from sigmax_cli.errors import (
    AuthenticationError,
    ConfigError,
    ExchangeError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    RiskBlocked,
    SigmaxError,
    TemporaryError,
)
from sigmax_cli.exchange.errors import RetryPolicy, invoke
from sigmax_cli.logs import get_logger
from sigmax_cli.markets import MarketRules, to_decimal
from sigmax_cli.model import Balance, BrokerUpdate, Fill, IllegalTransition, Order, OrderRequest, split_fee

log = get_logger(__name__)

CLIENT_ID_PREFIX = "sx-"
"""Client order ids the engine generates start with this: reconciliation knows them as ours."""
_ZERO = Decimal(0)
_CCXT_STATUS = {"canceled": "cancelled", "cancelled": "cancelled", "closed": "filled", "expired": "expired",
                "rejected": "rejected"}
LATENCY_WINDOW = 512  # calls kept for the latency percentiles
ACCEPT_TOLERANCE_MS = 1000
"""Slack added to a lost request's acceptance deadline (ms): Binance refuses a timestamp
1000 ms or more ahead of its clock, so a local clock ahead by any amount it still accepts
is covered even when the offset was never measured. The default of the setting
``live.accept_tolerance_ms``, which ``sigmax run`` passes to the broker."""
_MSG_RE = re.compile(r'"msg"\s*:\s*"([^"]{1,200})"')


class ClockSkew(ConfigError):
    """The exchange refused a request's timestamp (Binance -1021): the clock is off."""


class MetricsSink(Protocol):
    """Where the broker reports what it does (``sigmax_cli.telemetry.LiveMetrics``)."""

    def call(self, method: str, seconds: float, error_class: str | None) -> None:
        """One exchange call took ``seconds``; ``error_class`` when it failed."""
        ...

    def order(self, order: Order, event: str) -> None:
        """``event``: ``placed`` or ``rejected``."""
        ...

    def fill(self, fill: Fill) -> None:
        """One new execution."""
        ...


def error_class(err: BaseException) -> str:
    """The group an exchange error belongs to: what the operator must do about it."""
    if isinstance(err, ClockSkew) or _ccxt_kind(err, "InvalidNonce"):
        return "clock"
    if isinstance(err, RateLimited):
        return "rate_limited"
    if isinstance(err, TemporaryError):
        return "temporary"
    if isinstance(err, AuthenticationError):
        return "authentication"
    if isinstance(err, OrderRejected):
        return "invalid_order"
    return "operational"


def _ccxt_kind(err: BaseException, name: str) -> bool:
    """True when the ccxt exception behind ``err`` is (a subclass of) ccxt's ``name``."""
    cause = err.__cause__
    return cause is not None and any(c.__name__ == name for c in type(cause).__mro__)


def _said(err: SigmaxError) -> str:
    """The exchange's own message behind ``err`` (Binance's ``msg``), else its cause."""
    found = _MSG_RE.search(str(err.__cause__ or ""))
    return found.group(1) if found else err.cause


def _is_duplicate(err: BaseException) -> bool:
    text = f"{err} {err.__cause__ or ''}".lower()
    return "duplicate" in text or "duplicated" in text


@dataclass
class ExchangeStatus:
    """What the dashboard and the summary show about the exchange connection.

    Attributes:
        connection: ``connected`` (last call answered), ``degraded`` (the last call failed
            temporarily), ``down`` (3 or more in a row failed), ``unknown`` (no call yet).
        latency_p50_ms, latency_p99_ms: of the last calls, milliseconds (``None`` before any).
        errors: failed calls per error class since start.
    """

    exchange: str
    env: str
    connection: str = "unknown"
    requests: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "env": self.env, "connection": self.connection,
                "requests": self.requests, "latency_p50_ms": self.latency_p50_ms,
                "latency_p99_ms": self.latency_p99_ms, "errors": dict(self.errors), "last_error": self.last_error}


class LiveBroker:
    """Spot orders on a ccxt exchange (see the module docstring).

    Args:
        exchange: a ccxt exchange with keys and loaded markets
            (:func:`sigmax_cli.exchange.client.create_exchange`).
        markets: rules of every symbol the run trades.
        env: ``testnet`` or ``live`` (shown in status and messages).
        clock: the exchange's "now", UTC ms (order times, error times, signal age).
        retry: back-off of idempotent calls (its ``sleep`` is used for Retry-After waits).
        submit_attempts: sends of one order, same client order id.
        recv_window_ms: after this, a lost request can no longer be accepted (Binance).
        signal_max_age_ms: orders decided on a bar that closed longer ago (a backfilled bar)
            are denied; ``None`` disables the check.
        journal: called with an order before it is sent and on every change seen here
            (write-ahead: the ledger knows an order before the exchange does).
        metrics: optional :class:`MetricsSink`.
        wall_sleep: waits real seconds (the recvWindow of a lost request runs on the
            exchange's real clock, whatever clock the run uses).
        clock_offset_ms: the measured offset of the exchange's real clock from this
            machine's wall clock (exchange minus local, ms; e.g. ``ExchangeClock.skew_ms``);
            ``None``: unknown (0). Only a negative offset (local clock ahead) lengthens
            the wait for a lost answer; a positive one never shortens it.
        accept_tolerance_ms: added to every acceptance deadline (ms): covers an offset
            that is unknown or measured wrong, and the exchange's own slack.
        emit: ``emit(level, kind, message, data)`` records an event (the run's ledger and
            dashboard): an order whose fate the exchange cannot tell is reported there.
    """

    def __init__(
        self, exchange: Any, markets: dict[str, MarketRules], *, env: str = "testnet",
        clock: Callable[[], int] | None = None, retry: RetryPolicy | None = None, submit_attempts: int = 3,
        recv_window_ms: int = 5000, signal_max_age_ms: int | None = None,
        journal: Callable[[Order], None] | None = None, metrics: MetricsSink | None = None,
        wall_sleep: Callable[[float], None] = time.sleep,
        clock_offset_ms: Callable[[], int] | None = None, accept_tolerance_ms: int = ACCEPT_TOLERANCE_MS,
        emit: Callable[[str, str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.exchange = exchange
        self.markets = dict(markets)
        self.env = env
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.retry = retry or RetryPolicy(attempts=4, base_delay=0.5, max_delay=10.0)
        self.submit_attempts = max(1, int(submit_attempts))
        self.recv_window_s = recv_window_ms / 1000.0
        self.signal_max_age_ms = signal_max_age_ms
        self.journal = journal
        self.metrics = metrics
        self.wall_sleep = wall_sleep
        self.clock_offset_ms = clock_offset_ms
        self.accept_tolerance_ms = int(accept_tolerance_ms)
        self.emit = emit
        self._deadline: dict[str, int] = {}          # client order id -> wall ms after which a lost send cannot land
        self._orders: dict[str, Order] = {}
        self._active: dict[str, list[Order]] = {}    # symbol -> orders to poll (active, or final with fills to fetch)
        self._pending: dict[str, BrokerUpdate] = {}  # symbol -> changes not yet reported by on_bar
        self._ref: dict[str, float] = {}             # client order id -> reference price (quote)
        self._gross: dict[str, Decimal] = {}         # client order id -> base amount of its trades seen (steps)
        self._by_exchange_id: dict[str, str] = {}
        self.seen_trades: set[str] = set()
        self._book: dict[str, float] = {}
        self._exchange_bal: dict[str, tuple[float, float]] = {}  # asset -> (free, total) on the exchange
        self._bal_stale = True
        self._errors: deque[tuple[int, str]] = deque()
        self._latency: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._fail_streak = 0
        self.status = ExchangeStatus(getattr(exchange, "id", "exchange"), env)
        self.running = False
        """False while a run is being prepared: a refused timestamp is then :class:`ClockSkew`
        (the clock is off); once trading, one is a temporary error (a request delayed past the
        recvWindow is refused, a re-signed retry is not), and a lasting one pauses trading
        through the error count."""

    # ================================================================ Broker: account facts
    def rules(self, symbol: str) -> MarketRules:
        """Precision and limits of ``symbol`` (loaded from the exchange)."""
        try:
            return self.markets[symbol]
        except KeyError:
            raise ConfigError(f"{self.status.exchange} market {symbol} was not loaded for this run",
                              "add it to --symbols") from None

    def seed(self, balances: dict[str, float]) -> None:
        """Set the book: the quote capital and the base positions this run owns (asset ->
        amount), e.g. ``{"USDT": 1000.0, "BTC": 0.01}``."""
        self._book = {asset: float(v) for asset, v in balances.items()}

    def free(self, asset: str) -> float:
        """What the run may still spend of ``asset``: its book minus active reservations,
        at most the exchange's free balance."""
        self._refresh_balances()
        own = self._book.get(asset, 0.0) - self._reserved(asset)
        if not self._exchange_bal:  # never read: the book alone
            return max(0.0, own)
        return max(0.0, min(own, self._exchange_bal.get(asset, (0.0, 0.0))[0]))

    def total(self, asset: str) -> float:
        """The run's book of ``asset`` (reserved included)."""
        return self._book.get(asset, 0.0)

    def balances(self) -> dict[str, Balance]:
        """The run's book per asset; ``used`` is what active orders reserve."""
        out = {}
        for asset in self._book:
            used = max(0.0, min(self._reserved(asset), self._book[asset]))
            out[asset] = Balance(asset, max(self._book[asset] - used, 0.0), used)
        return out

    def exchange_balances(self, fresh: bool = False) -> dict[str, tuple[float, float]]:
        """The exchange account's ``(free, total)`` per asset at the last refresh; empty when
        never read.

        Args:
            fresh: read them now; a failed read is raised, not replaced by the last ones.

        Raises:
            ExchangeError: with ``fresh``, the exchange could not be asked.
        """
        if fresh:
            self._bal_stale = True
        self._refresh_balances(strict=fresh)
        return dict(self._exchange_bal)

    def has_open_orders(self, symbol: str) -> bool:
        """True while ``symbol`` has an order to poll or changes not yet reported."""
        return bool(self._active.get(symbol)) or symbol in self._pending

    @property
    def open_order_count(self) -> int:
        return sum(1 for orders in self._active.values() for o in orders if o.is_active)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        groups = [self._active.get(symbol, [])] if symbol is not None else list(self._active.values())
        return [o for orders in groups for o in orders if o.is_active]

    def get_order(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)

    def error_count(self, since_ms: int) -> int:
        """Failed exchange calls at or after ``since_ms`` (exchange clock, UTC ms)."""
        errors = self._errors
        while errors and errors[0][0] < since_ms - 3_600_000:  # keep an hour at most
            errors.popleft()
        return sum(1 for ts, _ in errors if ts >= since_ms)

    def begin_tick(self) -> None:
        """A new bar: balances are read again from the exchange at their next use."""
        self._bal_stale = True

    # ================================================================ Broker: orders
    def submit(self, request: OrderRequest, now_ms: int) -> Order:
        """Place an order decided at ``now_ms`` (the close time of its bar, UTC ms).

        Raises:
            RiskBlocked: the bar it was decided on closed more than ``signal_max_age_ms`` ago.
            OrderRejected: precision/minimums, a reused client order id, the exchange's
                refusal, or no send succeeded (the order does not exist on the exchange).
            InsufficientFunds: the run's book or the exchange cannot pay for it.
            AuthenticationError, ClockSkew: keys or clock are wrong (nothing was created).
        """
        now = self.clock()
        if self.signal_max_age_ms is not None and now - now_ms > self.signal_max_age_ms:
            from sigmax_cli.model import Denial

            age_s, limit_s = (now - now_ms) / 1000.0, self.signal_max_age_ms / 1000.0
            err = RiskBlocked(f"{request.symbol} {request.side} was decided on a bar that closed {age_s:.0f} s ago "
                              f"(more than {limit_s:g} s: a backfilled bar), so it is not sent")
            err.denial = Denial("stale_signal", err.cause, age_s, limit_s)  # type: ignore[attr-defined]
            raise err
        cid = request.client_order_id
        if cid in self._orders:
            raise OrderRejected(f"client order id {cid} was already used", "use a new client order id per order")
        rules = self.rules(request.symbol)
        amount, price, ref = normalise_request(request, rules)
        asset, need = self._need(request.side, request.type, amount, ref, rules)
        free = self.free(asset)
        if not self._affordable(request.side, amount, need, free, rules):
            raise InsufficientFunds(
                f"{request.symbol} {request.side} needs {need:.8g} {asset} but the run has {free:.8g} free",
                "order less, or give the run more capital (risk.max_capital) / fund the account")
        order = Order(client_order_id=cid, symbol=request.symbol, side=request.side, type=request.type,
                      amount=amount, price=price, time_in_force=request.time_in_force,
                      reduce_only=request.reduce_only, created_ms=now, updated_ms=now, reason=request.reason)
        self._orders[cid] = order
        self._ref[cid] = ref
        self._gross[cid] = _ZERO
        self._track(order)
        try:
            self._write(order)  # write-ahead: an order whose record cannot be written is not sent
            self._place(order)
        except (OrderRejected, AuthenticationError, ConfigError) as err:
            if order.status == "new":
                order.move("rejected", self.clock(), err.cause)
            self._untrack(order)
            self._write(order)
            if self.metrics is not None:
                self.metrics.order(order, "rejected")
            raise
        self._bal_stale = True
        if self.metrics is not None:
            self.metrics.order(order, "placed")
        return order

    def cancel(self, client_order_id: str, now_ms: int) -> Order:
        """Cancel an active order; returns it in its final state (``filled`` if it filled first).

        Raises:
            OrderRejected: unknown client order id, or the order is already final.
            ExchangeError: the exchange could not be reached after the retries.
        """
        order = self._orders.get(client_order_id)
        if order is None:
            raise OrderRejected(f"no order {client_order_id}", "check the client order id")
        if not order.is_active:
            raise OrderRejected(f"order {client_order_id} is already {order.status}", "nothing to cancel")
        try:
            raw = self._call("cancel_order", order.exchange_order_id, order.symbol, self._id_params(order),
                             missing_ok=True)
        except OrderRejected as err:  # unknown to the exchange as an active order: it ended meanwhile
            if not _ccxt_kind(err, "OrderNotFound"):
                raise
            self._refresh(order)
        else:
            self._absorb(order, raw)
            if order.is_active:  # the exchange acknowledged the cancel without a final status
                self._advance(order, "cancelled", self.clock())
            self._fetch_trades(order)
        self._settle(order)
        self._bal_stale = True
        return order

    def on_bar(self, bar: Any) -> BrokerUpdate:
        """Poll ``bar.symbol``'s orders on the exchange; report fills and changed orders.

        Temporary failures are counted and retried at the next bar; keys or clock failing
        (:class:`AuthenticationError`, :class:`ClockSkew`) are raised: a human must act.
        """
        return self.poll(bar.symbol)

    def poll(self, symbol: str) -> BrokerUpdate:
        """Ask the exchange about ``symbol``'s tracked orders; the changes not yet reported."""
        for order in list(self._active.get(symbol, ())):
            try:
                self._refresh(order)
            except (AuthenticationError, ClockSkew):
                raise
            except SigmaxError as err:
                log.warning("could not poll order %s: %s; trying again at the next bar",
                            order.client_order_id, err.cause)
        return self._pending.pop(symbol, BrokerUpdate())

    # ================================================================ adoption (reconciliation)
    def adopt(self, raw: dict[str, Any], *, reference_price: float | None = None, reason: str = "") -> Order:
        """Take over an order that exists on the exchange (ccxt order dict) but that this
        broker did not place: one of an earlier run, or an unknown one adopted by setting.
        Its trades not in :attr:`seen_trades` are reported as fills."""
        cid = raw.get("clientOrderId") or f"exchange-{raw.get('id')}"
        order = self._orders.get(cid)
        if order is None:
            created = int(raw.get("timestamp") or self.clock())
            kind = "limit" if str(raw.get("type", "")).lower() == "limit" else "market"
            tif = "IOC" if str(raw.get("timeInForce") or "GTC").upper() in ("IOC", "FOK") else "GTC"
            order = Order(client_order_id=cid, symbol=raw["symbol"], side=str(raw["side"]).lower(), type=kind,
                          amount=float(raw.get("amount") or 0.0), price=raw.get("price") if kind == "limit" else None,
                          time_in_force=tif, reduce_only=False, created_ms=created, updated_ms=created,
                          reason=reason)
            self._orders[cid] = order
            self._ref[cid] = float(raw.get("price") or reference_price or raw.get("average") or 0.0)
            self._gross[cid] = _ZERO
        self._track(order)
        self._absorb(order, raw)
        self._fetch_trades(order)
        self._settle(order)
        return order

    def adopt_unplaced(self, order: Order) -> None:
        """Track an order of an earlier run that the exchange does not show: polled until it
        appears or can no longer land (then ``rejected``, "never reached the exchange")."""
        cid = order.client_order_id
        self._orders[cid] = order
        self._ref[cid] = float(order.price or 0.0)
        self._gross[cid] = self.rules(order.symbol).amount_held(order.filled)
        if order.exchange_order_id is not None:
            self._by_exchange_id[order.exchange_order_id] = cid
        self._track(order)

    def drain(self) -> dict[str, BrokerUpdate]:
        """Take every change not yet reported by :meth:`on_bar` (reconciliation at start
        writes them to the ledger itself)."""
        pending, self._pending = self._pending, {}
        return pending

    def last_price(self, symbol: str) -> float | None:
        """The exchange's last traded price of ``symbol`` (quote), ``None`` when unavailable."""
        try:
            ticker = self._call("fetch_ticker", symbol)
        except (AuthenticationError, ClockSkew):
            raise
        except SigmaxError as err:
            log.warning("no price for %s: %s", symbol, err.cause)
            return None
        value = ticker.get("last") or ticker.get("close")
        return float(value) if value else None

    def lookup(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        """The exchange's order ``client_order_id`` (ccxt dict), or ``None`` if it has none.

        Raises:
            TemporaryError: the exchange could not be asked (after the retries).
        """
        try:
            return self._call("fetch_order", None, symbol, {"clientOrderId": client_order_id}, missing_ok=True)
        except OrderRejected as err:
            if _ccxt_kind(err, "OrderNotFound"):
                return None
            raise

    def fetch_open(self, symbol: str) -> list[dict[str, Any]]:
        """Open orders of ``symbol`` on the exchange (ccxt dicts)."""
        return self._call("fetch_open_orders", symbol)

    def fetch_trades(self, symbol: str, since_ms: int | None = None, order_id: str | None = None) -> list[dict]:
        """The account's trades of ``symbol`` since ``since_ms`` (or of one exchange order)."""
        params = {"orderId": order_id} if order_id is not None else {}
        return self._call("fetch_my_trades", symbol, since_ms, None, params)

    def fetch_orders(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Every order of ``symbol`` since ``since_ms`` (open and closed), when the exchange lists them."""
        return self._call("fetch_orders", symbol, since_ms)

    def cancel_foreign(self, raw: dict[str, Any]) -> None:
        """Cancel an exchange order this run does not own (an unknown one)."""
        try:
            self._call("cancel_order", raw["id"], raw["symbol"], missing_ok=True)
        except OrderRejected as err:
            if not _ccxt_kind(err, "OrderNotFound"):
                raise
        self._bal_stale = True

    def ingest_trade(self, trade: dict[str, Any]) -> bool:
        """Report a trade found by reconciliation if it belongs to an order of this run and
        was not seen yet; True when it was new."""
        cid = self._by_exchange_id.get(str(trade.get("order")))
        order = self._orders.get(cid) if cid else None
        if order is None or str(trade.get("id")) in self.seen_trades:
            return False
        self._trade(order, trade)
        self._track(order)
        return True

    def owns_exchange_id(self, exchange_order_id: str) -> bool:
        return str(exchange_order_id) in self._by_exchange_id

    def client_id_of(self, exchange_order_id: str) -> str | None:
        """The client order id of one of this broker's orders, by exchange order id."""
        return self._by_exchange_id.get(str(exchange_order_id))

    # ================================================================ placing
    def _place(self, order: Order) -> None:
        kind = order.type
        params = {"clientOrderId": order.client_order_id}
        if kind == "limit" and order.time_in_force != "GTC":
            params["timeInForce"] = order.time_in_force
        last: SigmaxError | None = None
        for attempt in range(self.submit_attempts):
            try:
                raw = self._once("create_order", order.symbol, kind, order.side, order.amount, order.price, params)
            except RateLimited as err:  # refused unprocessed: resend after Retry-After
                last = err
                self.retry.sleep(self.retry.delay(attempt, err))
                continue
            except OrderRejected as err:
                if not _is_duplicate(err):
                    raise
                last = err  # an earlier send landed: find it
                self._note_deadline(order)
                if self._resolve(order, attempt):
                    return
                continue
            except TemporaryError as err:  # unknown outcome: look before sending again
                last = err
                self._note_deadline(order)
                log.warning("%s order %s: %s; looking it up by client order id", order.symbol,
                            order.client_order_id, err.cause)
                if self._resolve(order, attempt):
                    return
                continue
            except (AuthenticationError, ConfigError):
                raise
            except ExchangeError as err:  # any other refusal (e.g. Binance -1013 filter failure): not created
                raise OrderRejected(f"{self.status.exchange} refused the {order.symbol} {order.side} order "
                                    f"({_said(err)})", "check the market's filters and the order") from err
            self._absorb(order, raw)
            self._fetch_trades(order)
            self._settle(order)
            return
        cause = last.cause if last is not None else "no answer"
        raise OrderRejected(f"{order.symbol} {order.side} order {order.client_order_id} was not placed after "
                            f"{self.submit_attempts} sends ({cause})",
                            "check the exchange's status; the order does not exist there")

    def signed_stamp(self, client_order_id: str) -> tuple[int, int]:
        """``(timestamp, recvWindow)`` in ms of the last request ccxt signed, when it was the
        send of ``client_order_id``, read back from the signed request (body or query).

        Falls back to a bound that is never earlier than the real stamp: ccxt's ``nonce()``
        (else the wall clock) now, after the send failed, and the broker's recvWindow.
        """
        ex = self.exchange
        text = getattr(ex, "last_request_body", None)
        if not isinstance(text, str) or "timestamp=" not in text:
            text = urlsplit(str(getattr(ex, "last_request_url", "") or "")).query
        found = dict(parse_qsl(text))
        window_ms = int(round(self.recv_window_s * 1000))
        if found.get("newClientOrderId") == client_order_id and found.get("timestamp", "").isdigit():
            window = found.get("recvWindow", "")
            return int(found["timestamp"]), int(window) if window.isdigit() else window_ms
        try:
            now = int(ex.nonce())
        except Exception:  # noqa: BLE001 - an exchange without a usable nonce: the wall clock bounds it
            now = int(time.time() * 1000)
        return now, window_ms

    def acceptance_deadline(self, stamp_ms: int, window_ms: int) -> int:
        """The wall-clock time (UTC ms) after which a request signed ``stamp_ms`` with
        ``window_ms`` can no longer be accepted: ``stamp + recvWindow + max(0, -offset) +
        tolerance`` (offset = exchange minus local clock; only a local clock ahead lengthens it)."""
        offset = int(self.clock_offset_ms()) if self.clock_offset_ms is not None else 0
        return stamp_ms + window_ms + max(0, -offset) + self.accept_tolerance_ms

    def _note_deadline(self, order: Order) -> None:
        """Remember when the send just lost can no longer land (the latest of all its sends)."""
        deadline = self.acceptance_deadline(*self.signed_stamp(order.client_order_id))
        cid = order.client_order_id
        self._deadline[cid] = max(deadline, self._deadline.get(cid, deadline))

    def _resolve(self, order: Order, attempt: int) -> bool:
        """After a send with an unknown outcome: True when the order turned out to exist
        (absorbed) or the exchange cannot tell (kept as ``new``, its symbol blocked, an
        ``order.unknown`` event emitted; later polls look again); False when, past the
        acceptance deadline of every send, the exchange says it does not exist: it may be
        sent again."""
        cid = order.client_order_id
        failure: SigmaxError | None = None
        for check in range(2):
            try:
                raw = self.lookup(order.symbol, cid)
            except (AuthenticationError, ClockSkew):
                raise
            except SigmaxError as err:
                failure, raw = err, None
            else:
                failure = None
                if raw is not None:
                    self._absorb(order, raw)
                    self._fetch_trades(order)
                    self._settle(order)
                    return True
            if check == 0:  # not there (or no answer) yet: the lost request can land until its deadline
                wait_ms = self._deadline.get(cid, 0) - int(time.time() * 1000)
                if wait_ms > 0:
                    log.info("order %s: waiting %.2f s, until its lost request can no longer be accepted, "
                             "before looking again", cid, wait_ms / 1000)
                    self.wall_sleep(wait_ms / 1000.0)
        if failure is not None:
            self._unknown_fate(order, failure)
            return True
        self.retry.sleep(self.retry.delay(attempt))
        return False

    def _unknown_fate(self, order: Order, err: SigmaxError) -> None:
        """The exchange cannot say whether ``order`` exists: never send again; keep it
        active (the symbol stays blocked) and raise a critical event."""
        message = (f"{order.symbol} {order.side} order {order.client_order_id}: the exchange cannot tell whether "
                   f"it was placed ({err.cause}); nothing is sent again and {order.symbol} takes no new order "
                   "until a lookup finds it or proves it never landed")
        log.error("%s", message)
        if self.emit is not None:
            self.emit("critical", "order.unknown", message, {"client_order_id": order.client_order_id,
                                                             "symbol": order.symbol})

    def _need(self, side: str, kind: str, amount: float, ref: float, rules: MarketRules) -> tuple[str, float]:
        """(asset, amount) an order reserves: quote for a buy (with a buffer for market
        buys, whose price is unknown), base for a sell."""
        if side == "sell":
            return rules.base, amount
        fee = (rules.taker_fee if kind == "market" else rules.maker_fee) or 0.0
        buffer = MARKET_BUY_BUFFER_DEFAULT if kind == "market" else 0.0
        return rules.quote, amount * ref * (1.0 + buffer) * (1.0 + fee)

    @staticmethod
    def _affordable(side: str, amount: float, need: float, free: float, rules: MarketRules) -> bool:
        """True when ``free`` pays for an order of ``amount`` needing ``need`` (base for a sell,
        quote for a buy), within half an amount step: a buy's quote is converted to steps at
        its per-unit cost."""
        if side == "sell":
            return rules.covers(free, amount)
        if amount <= 0:
            return True
        return rules.covers(free / (need / amount), amount)

    def _reserved(self, asset: str) -> float:
        total = 0.0
        for orders in self._active.values():
            for o in orders:
                if not o.is_active:
                    continue
                rules = self.markets.get(o.symbol)
                if rules is None:
                    continue
                res_asset, need = self._need(o.side, o.type, o.remaining, o.price or self._ref.get(o.client_order_id,
                                                                                                0.0), rules)
                if res_asset == asset:
                    total += need
        return total

    # ================================================================ state from the exchange
    def _refresh(self, order: Order) -> None:
        if order.is_active:
            if order.exchange_order_id is not None:
                raw = self._call("fetch_order", order.exchange_order_id, order.symbol)
            else:
                raw = self.lookup(order.symbol, order.client_order_id)
                if raw is None:
                    if self._cannot_land(order):
                        self._advance(order, "rejected", self.clock(), "never reached the exchange")
                        self._settle(order)
                    return
            self._absorb(order, raw)
        self._fetch_trades(order)
        self._settle(order)

    def _cannot_land(self, order: Order) -> bool:
        """True when no send of ``order`` can be accepted any more: past the acceptance
        deadline of its sends, or, for an order of an earlier run (no deadline known), a
        minute past its recvWindow after its creation (exchange clock)."""
        deadline = self._deadline.get(order.client_order_id)
        if deadline is not None:
            return int(time.time() * 1000) > deadline
        return self.clock() - order.created_ms > self.recv_window_s * 1000 + 60_000

    def _absorb(self, order: Order, raw: dict[str, Any]) -> None:
        """Take status, ids and trades from a ccxt order structure."""
        if not isinstance(raw, dict):
            return
        if raw.get("id") is not None and order.exchange_order_id is None:
            order.exchange_order_id = str(raw["id"])
            self._by_exchange_id[order.exchange_order_id] = order.client_order_id
        for trade in raw.get("trades") or ():
            if trade.get("id") is not None:
                self._trade(order, {**trade, "symbol": order.symbol, "side": order.side})
        filled = float(raw.get("filled") or 0.0)
        status = str(raw.get("status") or "").lower()
        ts = int(raw.get("lastUpdateTimestamp") or raw.get("lastTradeTimestamp") or raw.get("timestamp")
                 or self.clock())
        rules = self.rules(order.symbol)
        target = (("open" if rules.is_flat(filled) else "partially_filled") if status == "open"
                  else _CCXT_STATUS.get(status))
        more = filled > order.filled and not rules.same_amount(filled, order.filled)  # at least one step more
        if more:
            order.filled = filled  # the exchange's executed quantity (gross)
            if raw.get("cost") is not None:
                order.cost = float(raw["cost"])
        if target is not None and (target != order.status or target == "partially_filled" and more):
            self._advance(order, target, ts)
        elif more:
            self._pending_order(order)
            self._write(order)

    def _advance(self, order: Order, status: str, ts: int, reason: str | None = None) -> None:
        if status == order.status and status != "partially_filled":
            return
        if not order.is_active:
            return
        try:
            order.move(status, max(ts, order.updated_ms), reason)
        except IllegalTransition:
            log.warning("order %s: exchange status %s after %s ignored", order.client_order_id, status,
                        order.status)
            return
        self._pending_order(order)
        self._write(order)

    def _trades_cover(self, order: Order) -> bool:
        """True when the trades seen add up to the order's executed quantity (within half a
        step of the market: exact step sums, never an absolute epsilon)."""
        rules = self.rules(order.symbol)
        return rules.covers(self._gross.get(order.client_order_id, _ZERO), order.filled)

    def _fetch_trades(self, order: Order) -> None:
        """Fetch the order's trades while its executed quantity exceeds the trades seen."""
        if order.exchange_order_id is None or self._trades_cover(order):
            return
        for trade in self.fetch_trades(order.symbol, None, order.exchange_order_id):
            if str(trade.get("order")) == order.exchange_order_id:
                self._trade(order, trade)

    def _trade(self, order: Order, trade: dict[str, Any]) -> None:
        """One exchange trade of ``order`` -> a Fill (once per trade id), book updated."""
        trade_id = str(trade.get("id"))
        if trade_id in self.seen_trades:
            return
        self.seen_trades.add(trade_id)
        rules = self.rules(order.symbol)
        price = float(trade["price"])
        gross = float(trade["amount"])
        fee_info = trade.get("fee") or {}
        fee_cost = float(fee_info.get("cost") or 0.0)
        currency = fee_info.get("currency") or rules.quote
        fee_base, fee_quote = split_fee(fee_cost, currency, rules.base, rules.quote)
        liquidity = trade.get("takerOrMaker") or ("taker" if order.type == "market" else "maker")
        ts = int(trade.get("timestamp") or self.clock())
        fill = Fill(order.client_order_id, order.symbol, order.side, price, gross, fee_cost, currency, liquidity, ts,
                    trade_id=trade_id)
        notional = price * gross
        if order.side == "buy":
            self._book_add(rules.quote, -notional, -fee_quote)
            self._book_add(rules.base, gross, -fee_base)
        else:
            self._book_add(rules.base, -gross, -fee_base)
            self._book_add(rules.quote, notional, -fee_quote)
        if fee_cost and currency not in (rules.quote, rules.base):  # BNB: out of the book's BNB
            self._book_add(currency, -fee_cost)
        cid = order.client_order_id
        seen = self._gross[cid] = self._gross.get(cid, _ZERO) + rules.amount_held(gross)
        if seen > to_decimal(order.filled) and not rules.same_amount(seen, order.filled):
            # the trade arrived before the order's state
            order.cost = order.cost + price * float(seen - to_decimal(order.filled))
            order.filled = float(seen)
        order.fee += fill.fee_in_quote(rules.base, rules.quote) or 0.0
        update = self._pending.setdefault(order.symbol, BrokerUpdate())
        update.fills.append(fill)
        self._pending_order(order)
        if self.metrics is not None:
            self.metrics.fill(fill)

    def _book_add(self, asset: str, *amounts: float) -> None:
        """Add ``amounts`` to the book's ``asset`` in decimal (0.01 - 0.00001 is 0.00999, not
        the float 0.009989999999999999 that would truncate a whole step lower)."""
        total = to_decimal(self._book.get(asset, 0.0))
        for amount in amounts:
            total += to_decimal(amount)
        self._book[asset] = float(total)

    def _pending_order(self, order: Order) -> None:
        update = self._pending.setdefault(order.symbol, BrokerUpdate())
        if not any(o is order for o in update.orders):
            update.orders.append(order)

    def _settle(self, order: Order) -> None:
        """Stop polling a final order once all its trades are in."""
        if not order.is_active and self._trades_cover(order):
            self._untrack(order)

    def _track(self, order: Order) -> None:
        orders = self._active.setdefault(order.symbol, [])
        if not any(o is order for o in orders):
            orders.append(order)

    def _untrack(self, order: Order) -> None:
        orders = self._active.get(order.symbol)
        if orders is not None:
            orders[:] = [o for o in orders if o is not order]
            if not orders:
                del self._active[order.symbol]

    def _write(self, order: Order) -> None:
        if self.journal is not None:
            self.journal(order)

    @staticmethod
    def _id_params(order: Order) -> dict[str, Any]:
        return {} if order.exchange_order_id is not None else {"clientOrderId": order.client_order_id}

    # ================================================================ balances
    def _refresh_balances(self, strict: bool = False) -> None:
        """Read the balances when stale; a failed read keeps the last ones (logged), or is
        raised when ``strict``."""
        if not self._bal_stale:
            return
        self._bal_stale = False
        try:
            raw = self._call("fetch_balance")
        except (AuthenticationError, ClockSkew):
            raise
        except SigmaxError as err:
            if strict:
                self._bal_stale = True
                raise
            log.warning("could not read the exchange balances: %s; using the last ones", err.cause)
            return
        free, total = raw.get("free") or {}, raw.get("total") or {}
        self._exchange_bal = {a: (float(free.get(a) or 0.0), float(total.get(a) or 0.0))
                              for a in set(free) | set(total) if isinstance(a, str)}

    # ================================================================ calls
    def call(self, method: str, *args: Any) -> Any:
        """``exchange.<method>(*args)``, timed, counted, temporary errors retried (idempotent
        calls only: never ``create_order``)."""
        return self._call(method, *args)

    def _call(self, method: str, *args: Any, missing_ok: bool = False) -> Any:
        """An idempotent call: translated errors, temporary ones retried with back-off.
        ``missing_ok``: "no such order" is an answer, not an error (lookups, cancels)."""
        return self.retry.run(lambda: self._once(method, *args, missing_ok=missing_ok),
                              f"{self.status.exchange} {method}")

    def _once(self, method: str, *args: Any, missing_ok: bool = False) -> Any:
        """One call, timed and counted; a refused timestamp becomes :class:`ClockSkew`."""
        started = time.perf_counter()
        try:
            result = invoke(self.exchange, method, *args)
        except SigmaxError as err:
            seconds = time.perf_counter() - started
            if missing_ok and _ccxt_kind(err, "OrderNotFound"):
                self._observe(method, seconds, None)
                raise
            if _ccxt_kind(err, "InvalidNonce") and not self.running:
                err = ClockSkew(f"{self.status.exchange} refused the request's timestamp ({_said(err)}): this "
                                "machine's clock is off from the exchange's by more than the "
                                f"{self.recv_window_s * 1000:.0f} ms it accepts",
                                "sync the clock with NTP (e.g. `timedatectl set-ntp true` or `chronyc makestep`)")
            self._observe(method, seconds, err)
            if isinstance(err, ClockSkew):
                raise err from None
            raise
        self._observe(method, time.perf_counter() - started, None)
        return result

    def _observe(self, method: str, seconds: float, err: SigmaxError | None) -> None:
        status = self.status
        status.requests += 1
        self._latency.append(seconds)
        if err is None:
            self._fail_streak = 0
            status.connection = "connected"
        else:
            kind = error_class(err)
            self._errors.append((self.clock(), kind))
            status.errors[kind] = status.errors.get(kind, 0) + 1
            status.last_error = err.cause
            if isinstance(err, TemporaryError):
                self._fail_streak += 1
                status.connection = "down" if self._fail_streak >= 3 else "degraded"
            else:
                self._fail_streak = 0
                status.connection = "connected"  # it answered, with a refusal
        if self.metrics is not None:
            self.metrics.call(method, seconds, error_class(err) if err is not None else None)

    def exchange_status(self) -> ExchangeStatus:
        """Connection state, latency percentiles and errors so far."""
        lat = sorted(self._latency)
        if lat:
            self.status.latency_p50_ms = round(statistics.median(lat) * 1000, 2)
            self.status.latency_p99_ms = round(lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)] * 1000, 2)
        return self.status


__all__ = ["CLIENT_ID_PREFIX", "ClockSkew", "ExchangeStatus", "LiveBroker", "error_class"]
