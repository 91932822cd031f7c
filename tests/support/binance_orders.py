"""An in-memory Binance spot account for the emulator: orders, fills, trades, balances.

Installs the private spot endpoints ccxt uses on a :class:`BinanceEmulator`::

    POST   /api/v3/order         new order (LIMIT GTC/IOC, MARKET; FULL response with fills)
    GET    /api/v3/order         one order by orderId or origClientOrderId (-2013 if none)
    DELETE /api/v3/order         cancel one (-2011 Unknown order sent. when not active)
    GET    /api/v3/openOrders    active orders (NEW, PARTIALLY_FILLED)
    DELETE /api/v3/openOrders    cancel every active order of a symbol
    GET    /api/v3/allOrders     every order of a symbol (orderId, startTime, endTime, limit)
    GET    /api/v3/myTrades      the account's trades (orderId, fromId, startTime, endTime, limit)
    GET    /api/v3/account       balances (free, locked)
    GET    /api/v3/ticker/24hr   per symbol, from ``prices`` or the replayed candles

Bodies follow the shapes of Binance's documented responses
(../shared/data/exchange_api/binance_http_api_doc_examples_nautilus: order_response,
new_order_full_response, account_trades_response, cancel_order_response, account_response).

Behaviour follows Binance where a client can notice it:

* Authentication. Without ``api_keys`` only the ``X-MBX-APIKEY`` header is required (-2015
  otherwise). With ``api_keys`` (key -> secret) every private request is checked as Binance
  does: a key that is not 64 letters/digits -> -2014 "API-key format invalid.", an unknown key
  -> -2015, no ``timestamp`` -> -1102, a timestamp 1000 ms or more ahead of the server clock
  or older than ``recvWindow`` (default 5000 ms, at most 60000) -> -1021, an HMAC-SHA256
  signature that does not match the query string (GET/DELETE) or the form body (POST)
  -> -1022 "Signature for this request is not valid.". The server clock of that check is the
  wall clock plus ``skew_ms`` (ccxt stamps requests with the wall clock); the *market* clock
  (``clock``: which candles exist, when orders fill) may be a replay clock.
* Orders: ``newClientOrderId`` must match ``^[a-zA-Z0-9-_]{1,36}$`` (-1100) and be unique
  among *open* orders: a second order with the id of an active one is refused with -2010
  "Duplicate order sent."; once that order is final, the id may be used again (as on
  Binance, so a client cannot rely on the duplicate check alone). LOT_SIZE, PRICE_FILTER and
  MIN_NOTIONAL/NOTIONAL filters of exchangeInfo are enforced (-1013 "Filter failure: ...").
  Funds are checked and locked (-2010 "Account has insufficient balance ...").
* Fills: MARKET orders fill at once at ``prices[symbol]`` or, with candles, at the open of
  the bar forming at the market clock; LIMIT orders that cross that price fill at once at it
  (taker), the rest rests and fills against every later replayed bar that trades through the
  limit (``low <= price`` for a buy), at the limit (maker). IOC remainders expire. Tests
  drive partial fills with :meth:`SpotAccount.fill`, and thin books with ``thin_market``
  (the next market orders fill only that fraction and end EXPIRED, as Binance does when the
  book runs out). Commission (``commission``, a fraction) is charged in the asset received:
  base on a buy, quote on a sell (Binance without BNB), rounded to the 8 decimals it reports
  (the account moves by exactly the reported commission, as on Binance).

Ambiguous outcomes on demand (``after_accept``, one entry per accepted order): ``"drop"``
creates the order and closes the connection without an answer; ``("timeout", s)`` creates
it and sends nothing for ``s`` seconds (past the client's timeout), then closes; ``"error"``
creates it and answers HTTP 500 -1000. The request log of the emulator records such a
request only once its handler returns. ``on_accept`` is called with each new order before the answer
(a test can block there, e.g. to SIGKILL the client in that window).

Late arrival (``arrive_late``, one entry per order request, a margin in ms): the request is
held as if in transit and reaches the exchange ``margin`` ms before the last moment it can
be accepted (its signed ``timestamp`` + ``recvWindow`` on the exchange's clock, which runs
``skew_ms`` from the wall clock). It is judged and processed at that simulated arrival
time (so it is accepted however the test machine schedules threads), long after the
client's timeout: its answer is lost. Each such request is recorded in :attr:`SpotAccount.
late` (stamp, recvWindow, arrival and deadline as wall-clock ms, accepted or not) and sets
:attr:`SpotAccount.late_done`.

Commission asset (``commission_asset``): ``None`` charges the asset received (above);
``"base"`` charges the base asset on both sides (a sell then gives up ``qty + fee`` base and
receives the full notional); any other asset name (``"BNB"``) charges that asset at
``bnb_price`` quote per unit (``commission * notional / bnb_price``), as Binance does with
its BNB fee discount.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import itertools
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

import numpy as np

from sigmax_cli.data.candles import Candles
from tests.support.binance_emulator import BinanceEmulator, Request, Response

ACTIVE = ("NEW", "PARTIALLY_FILLED")
KEY_RE = re.compile(r"^[A-Za-z0-9]{64}$")
CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")
DEFAULT_RECV_WINDOW_MS = 5000  # Binance's default recvWindow


def _fmt(x: float) -> str:
    return f"{x:.8f}"


def _wall_ms() -> int:
    return int(time.time() * 1000)


class AcceleratedClock:
    """A market clock that runs ``speed`` times faster than the wall clock from ``start_ms``
    (UTC ms): lets a bot in another process see a new closed 5m bar every 300/speed s. It
    stands still until its first reading (the bot's first request), so a slow start-up
    does not skip bars; :meth:`rearm` stops it again where it is."""

    def __init__(self, start_ms: int, speed: float) -> None:
        self.start_ms = int(start_ms)
        self.speed = float(speed)
        self._t0: float | None = None
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            if self._t0 is None:
                self._t0 = time.monotonic()
            return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.speed)

    def rearm(self) -> None:
        now = self.now_ms()
        with self._lock:
            self.start_ms, self._t0 = now, None


@dataclass
class SpotAccount:
    """The emulated account: balances ``[free, locked]`` per asset, orders by id, trades.

    See the module docstring for the behaviour each field switches on.
    """

    balances: dict[str, list[float]] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    api_keys: dict[str, str] = field(default_factory=dict)
    skew_ms: int = 0
    clock: Callable[[], int] | None = None
    commission: float = 0.0
    candles: dict[str, Candles] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)
    after_accept: deque = field(default_factory=deque)
    thin_market: deque = field(default_factory=deque)
    on_accept: Callable[[dict[str, Any]], None] | None = None
    markets: dict[str, tuple[str, str]] = field(default_factory=dict)
    _trade_ids: itertools.count = field(default_factory=lambda: itertools.count(5000))
    arrive_late: deque = field(default_factory=deque)
    late: list[dict[str, Any]] = field(default_factory=list)
    late_done: threading.Event = field(default_factory=threading.Event)
    commission_asset: str | None = None
    bnb_price: float = 300.0

    # ---------------------------------------------------------------- queries
    def now(self) -> int:
        """The market clock, UTC ms."""
        return int(self.clock()) if self.clock is not None else _wall_ms()

    def open_orders(self, market_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders.values()
                    if o["status"] in ACTIVE and (market_id is None or o["symbol"] == market_id)]

    def by_client_id(self, client_order_id: str) -> list[dict[str, Any]]:
        """Every order ever created with ``client_order_id`` (more than one = a duplicate)."""
        with self.lock:
            return [o for o in self.orders.values() if o["clientOrderId"] == client_order_id]

    def price(self, market_id: str) -> float:
        """The price a market order would fill at now (quote)."""
        if market_id in self.prices:
            return self.prices[market_id]
        candles = self.candles[market_id]
        i = int(np.searchsorted(candles.ts, self.now(), side="right")) - 1
        if i < 0:
            return float(candles.open[0])
        return float(candles.open[i])

    # ---------------------------------------------------------------- matching
    def execute(self, order: dict[str, Any], qty: float, price: float, maker: bool, base: str, quote: str) -> None:
        """Trade ``qty`` of ``order`` at ``price``: balances, trade record, status (lock held)."""
        now = self.now()
        notional = qty * price
        commission = self.commission
        third = self.commission_asset not in (None, "base")
        if third:  # e.g. BNB: the fee leaves that asset's wallet, the trade itself is untouched
            fee, fee_asset = float(_fmt(notional * commission / self.bnb_price)), str(self.commission_asset)
            self.balances.setdefault(fee_asset, [0.0, 0.0])[0] -= fee
        if order["side"] == "BUY":
            reserved = qty * (order["price"] if order["type"] == "LIMIT" else price)
            self.balances[quote][1] -= reserved
            self.balances[quote][0] += reserved - notional
            if not third:
                fee, fee_asset = float(_fmt(qty * commission)), base
            self.balances[base][0] += qty - (fee if fee_asset == base else 0.0)
        else:
            self.balances[base][1] -= qty
            if self.commission_asset == "base":
                fee, fee_asset = float(_fmt(qty * commission)), base
                self.balances[base][0] -= fee
            elif not third:
                fee, fee_asset = float(_fmt(notional * commission)), quote
            self.balances[quote][0] += notional - (fee if fee_asset == quote else 0.0)
        done = order["executed_d"] = order.get("executed_d", Decimal(0)) + Decimal(repr(qty))  # exact, as Binance
        order["executed"] = float(done)
        order["cum_quote"] += notional
        order["status"] = "FILLED" if done >= Decimal(repr(order["qty"])) else "PARTIALLY_FILLED"
        order["updateTime"] = now
        trade = {"symbol": order["symbol"], "id": next(self._trade_ids), "orderId": order["orderId"],
                 "orderListId": -1, "price": _fmt(price), "qty": _fmt(qty), "quoteQty": _fmt(notional),
                 "commission": _fmt(fee), "commissionAsset": fee_asset, "time": now,
                 "isBuyer": order["side"] == "BUY", "isMaker": maker, "isBestMatch": True}
        self.trades.append(trade)
        order.setdefault("trade_ids", []).append(trade["id"])

    def fill(self, client_order_id: str, qty: float, price: float | None = None) -> dict[str, Any]:
        """Fill ``qty`` of the active order ``client_order_id`` at ``price`` (its limit by
        default) as a maker: a partial fill the test drives. Returns the order."""
        with self.lock:
            order = next(o for o in self.orders.values()
                         if o["clientOrderId"] == client_order_id and o["status"] in ACTIVE)
            base, quote = self.markets[order["symbol"]]
            left = Decimal(repr(order["qty"])) - order.get("executed_d", Decimal(0))
            qty = float(min(Decimal(repr(qty)), left))
            self.execute(order, qty, price if price is not None else order["price"], True, base, quote)
            return order

    def release(self, order: dict[str, Any], base: str, quote: str) -> None:
        """Unlock what an order that ends now still holds (lock held)."""
        left = order["qty"] - order["executed"]
        if left <= 0:
            return
        if order["side"] == "BUY":
            held = left * (order["price"] if order["type"] == "LIMIT" else order["ref_price"])
            self.balances[quote][1] -= held
            self.balances[quote][0] += held
        else:
            self.balances[base][1] -= left
            self.balances[base][0] += left


def _drop_connection() -> None:
    """Close the connection of the request being handled, without an answer: the emulator's
    handler (found up the call stack) gets its socket shut and its output sent to a sink."""
    frame = inspect.currentframe()
    while frame is not None and not isinstance(frame.f_locals.get("self"), BaseHTTPRequestHandler):
        frame = frame.f_back
    if frame is None:  # pragma: no cover - always called from a request handler
        raise RuntimeError("not inside an HTTP request handler")
    handler = frame.f_locals["self"]
    handler.connection.shutdown(socket.SHUT_RDWR)
    handler.wfile = io.BytesIO()
    handler.close_connection = True


def install(emulator: BinanceEmulator, account: SpotAccount, markets: dict[str, tuple[str, str]]) -> None:
    """Add the private endpoints for ``markets`` (market id -> (base, quote)) to ``emulator``."""
    account.markets.update(markets)
    filters = {s["symbol"]: {f["filterType"]: f for f in s.get("filters", [])}
               for s in emulator.exchange_info["symbols"]}

    def authorised(request: Request, server_ms: int | None = None) -> Response | None:
        key = request.headers.get("X-MBX-APIKEY") or request.headers.get("x-mbx-apikey")
        if not account.api_keys:
            if not key:
                return Response.error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
            return None
        if not key or not KEY_RE.match(key):
            return Response.error(-2014, "API-key format invalid.", 401)
        if key not in account.api_keys:
            return Response.error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        p = request.params
        if "timestamp" not in p:
            return Response.error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                  "malformed.")
        try:
            stamp = int(p["timestamp"])
            window = int(p.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
        except ValueError:
            return Response.error(-1100, "Illegal characters found in parameter 'timestamp'.")
        if window > 60_000:
            return Response.error(-1131, "recvWindow must be less than 60000")
        server = server_ms if server_ms is not None else _wall_ms() + account.skew_ms
        if stamp >= server + 1000:
            return Response.error(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server - stamp > window:
            return Response.error(-1021, "Timestamp for this request is outside of the recvWindow.")
        if request.method == "POST" and request.body:
            payload = re.sub(rb"&?signature=[0-9a-fA-F]*", b"", request.body)
        else:
            payload = urlencode([(k, v) for k, v in p.items() if k != "signature"]).encode()
        expected = hmac.new(account.api_keys[key].encode(), payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, p.get("signature", "")):
            return Response.error(-1022, "Signature for this request is not valid.")
        return None

    def order_body(o: dict[str, Any]) -> dict[str, Any]:
        return {"symbol": o["symbol"], "orderId": o["orderId"], "orderListId": -1,
                "clientOrderId": o["clientOrderId"], "price": _fmt(o["price"] if o["type"] == "LIMIT" else 0.0),
                "origQty": _fmt(o["qty"]), "executedQty": _fmt(o["executed"]),
                "cummulativeQuoteQty": _fmt(o["cum_quote"]), "status": o["status"],
                "timeInForce": o["timeInForce"], "type": o["type"], "side": o["side"],
                "stopPrice": "0.00000000", "icebergQty": "0.00000000", "time": o["time"],
                "updateTime": o["updateTime"], "isWorking": True, "origQuoteOrderQty": "0.000000",
                "workingTime": o["time"], "selfTradePreventionMode": "NONE"}

    def cancel_body(o: dict[str, Any]) -> dict[str, Any]:
        body = order_body(o)
        body.update({"origClientOrderId": o["clientOrderId"], "clientOrderId": f"cancel{o['orderId']}",
                     "transactTime": o["updateTime"]})
        for key in ("time", "updateTime", "isWorking", "workingTime", "stopPrice", "icebergQty"):
            body.pop(key, None)
        return body

    def advance() -> None:
        """Fill resting limit orders against every replayed bar closed since they last looked."""
        now = account.now()
        for o in account.orders.values():
            if o["status"] not in ACTIVE or o["type"] != "LIMIT" or o["symbol"] not in account.candles:
                continue
            c = account.candles[o["symbol"]]
            lo = int(np.searchsorted(c.ts, o["next_bar"], side="left"))
            hi = int(np.searchsorted(c.ts, now - c.tf_ms, side="right"))  # bars closed by now
            base, quote = markets[o["symbol"]]
            for i in range(lo, hi):
                if o["status"] not in ACTIVE:
                    break
                through = c.low[i] <= o["price"] if o["side"] == "BUY" else c.high[i] >= o["price"]
                if through:
                    account.execute(o, o["qty"] - o["executed"], o["price"], True, base, quote)
            if hi > lo:
                o["next_bar"] = int(c.ts[hi - 1]) + 1

    def refuse_filters(market_id: str, qty_text: str, price_text: str | None, ref_price: float) -> Response | None:
        f = filters.get(market_id, {})
        try:
            qty = Decimal(qty_text)
            price = Decimal(price_text) if price_text is not None else None
        except InvalidOperation:
            return Response.error(-1100, "Illegal characters found in a parameter.")
        lot = f.get("LOT_SIZE")
        if lot is not None:
            step, low = Decimal(lot["stepSize"]), Decimal(lot["minQty"])
            if qty < low or qty > Decimal(lot["maxQty"]) or (step > 0 and (qty - low) % step != 0):
                return Response.error(-1013, "Filter failure: LOT_SIZE")
        tick = f.get("PRICE_FILTER")
        if price is not None and tick is not None:
            size = Decimal(tick["tickSize"])
            if price < Decimal(tick["minPrice"]) or (size > 0 and price % size != 0):
                return Response.error(-1013, "Filter failure: PRICE_FILTER")
        for name in ("NOTIONAL", "MIN_NOTIONAL"):
            rule = f.get(name)
            if rule is not None and rule.get("minNotional") is not None:
                value = float(qty) * (float(price) if price is not None else ref_price)
                if value < float(rule["minNotional"]):
                    return Response.error(-1013, f"Filter failure: {name}")
                break
        return None

    def new_order(request: Request) -> Response:
        late = account.arrive_late.popleft() if account.arrive_late else None
        if late is not None:
            return late_order(request, float(late))
        if (denied := authorised(request)) is not None:
            return denied
        return place(request)

    def late_order(request: Request, margin_ms: float) -> Response:
        """Hold the request in transit until ``margin_ms`` before its acceptance deadline,
        judge and process it as arriving then, and lose its answer."""
        try:
            stamp = int(request.params["timestamp"])
            window = int(request.params.get("recvWindow", DEFAULT_RECV_WINDOW_MS))
        except (KeyError, ValueError):
            return Response.error(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                  "malformed.")
        arrival_server = stamp + window - int(margin_ms)
        arrival_wall = arrival_server - account.skew_ms
        time.sleep(max(0.0, (arrival_wall - _wall_ms()) / 1000.0))
        denied = authorised(request, server_ms=arrival_server)
        resp = denied if denied is not None else place(request)
        account.late.append({"client_order_id": request.params.get("newClientOrderId"), "stamp": stamp,
                             "recv_window": window, "arrival_wall_ms": arrival_wall,
                             "deadline_wall_ms": stamp + window - account.skew_ms,
                             "accepted": denied is None and resp.status == 200})
        account.late_done.set()
        _drop_connection()  # the client gave up long ago
        return resp

    def place(request: Request) -> Response:
        p = request.params
        if p.get("symbol") not in markets:
            return Response.error(-1121, "Invalid symbol.")
        for name in ("side", "type", "quantity"):
            if not p.get(name):
                return Response.error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or "
                                      "malformed.")
        symbol = p["symbol"]
        base, quote = markets[symbol]
        side, kind = p["side"].upper(), p["type"].upper()
        if kind not in ("LIMIT", "MARKET"):
            return Response.error(-1116, "Invalid orderType.")
        if kind == "LIMIT" and (not p.get("price") or not p.get("timeInForce")):
            missing = "price" if not p.get("price") else "timeInForce"
            return Response.error(-1102, f"Mandatory parameter '{missing}' was not sent, was empty/null, or "
                                  "malformed.")
        client_id = p.get("newClientOrderId")
        if client_id is not None and not CLIENT_ID_RE.match(client_id):
            return Response.error(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                                  "'^[a-zA-Z0-9-_]{1,36}$'.")
        with account.lock:
            advance()
            now = account.now()
            market_px = account.price(symbol)
            if (refused := refuse_filters(symbol, p["quantity"], p.get("price") if kind == "LIMIT" else None,
                                          market_px)) is not None:
                return refused
            if client_id is not None and any(o["clientOrderId"] == client_id and o["status"] in ACTIVE
                                             for o in account.orders.values()):
                return Response.error(-2010, "Duplicate order sent.")
            qty = float(p["quantity"])
            price = float(p["price"]) if kind == "LIMIT" else market_px
            for asset in (base, quote):
                account.balances.setdefault(asset, [0.0, 0.0])
            spend_asset, spend = (quote, qty * price) if side == "BUY" else (base, qty)
            wallet = account.balances[spend_asset]
            if wallet[0] + 1e-9 < spend:
                return Response.error(-2010, "Account has insufficient balance for requested action.")
            wallet[0] -= spend
            wallet[1] += spend
            order = {"symbol": symbol, "orderId": next(account._ids), "clientOrderId": client_id or f"emu{now}",
                     "price": price, "qty": qty, "executed": 0.0, "cum_quote": 0.0, "status": "NEW",
                     "timeInForce": p.get("timeInForce", "GTC"), "type": kind, "side": side, "time": now,
                     "updateTime": now, "ref_price": market_px, "trade_ids": [],
                     "next_bar": now}
            account.orders[order["orderId"]] = order
            crosses = kind == "MARKET" or (market_px <= price if side == "BUY" else market_px >= price)
            if crosses:
                fraction = account.thin_market.popleft() if kind == "MARKET" and account.thin_market else 1.0
                part = qty if fraction >= 1.0 else float(Decimal(str(qty * fraction)).quantize(
                    Decimal(filters[symbol]["LOT_SIZE"]["stepSize"]).normalize(), rounding=ROUND_DOWN))
                if part > 0:
                    account.execute(order, part, market_px, False, base, quote)
            if order["status"] in ACTIVE and (kind == "MARKET" or order["timeInForce"] in ("IOC", "FOK")):
                account.release(order, base, quote)
                order["status"] = "EXPIRED"
            fills = [{"price": t["price"], "qty": t["qty"], "commission": t["commission"],
                      "commissionAsset": t["commissionAsset"], "tradeId": t["id"]}
                     for t in account.trades if t["orderId"] == order["orderId"]]
            body = order_body(order)
            mode = account.after_accept.popleft() if account.after_accept else None
        body["transactTime"] = now
        body["fills"] = fills
        if account.on_accept is not None:
            account.on_accept(order)
        if mode == "drop":
            _drop_connection()
            return Response(200, body)  # written into a sink: the client sees the connection close
        if mode == "error":
            return Response(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
        if isinstance(mode, tuple) and mode[0] == "timeout":
            time.sleep(mode[1])  # the client gave up meanwhile: its connection is gone
            _drop_connection()
        return Response(200, body)

    def find(p: dict[str, str]) -> dict[str, Any] | None:
        for o in account.orders.values():
            if o["symbol"] == p.get("symbol") and (
                    str(o["orderId"]) == p.get("orderId") or o["clientOrderId"] == p.get("origClientOrderId")):
                return o
        return None

    def query_order(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        if request.params.get("symbol") not in markets:
            return Response.error(-1121, "Invalid symbol.")
        with account.lock:
            advance()
            o = find(request.params)
            if o is None:
                return Response.error(-2013, "Order does not exist.")
            return Response(200, order_body(o))

    def open_orders(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        with account.lock:
            advance()
            return Response(200, [order_body(o) for o in account.open_orders(request.params.get("symbol"))])

    def all_orders(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        p = request.params
        if p.get("symbol") not in markets:
            return Response.error(-1121, "Invalid symbol.")
        limit = min(int(p.get("limit", 500)), 1000)
        with account.lock:
            advance()
            rows = [o for o in account.orders.values() if o["symbol"] == p["symbol"]
                    and o["orderId"] >= int(p.get("orderId", 0))
                    and o["time"] >= int(p.get("startTime", 0)) and o["time"] <= int(p.get("endTime", 2**62))]
            return Response(200, [order_body(o) for o in sorted(rows, key=lambda o: o["orderId"])[:limit]])

    def my_trades(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        p = request.params
        if p.get("symbol") not in markets:
            return Response.error(-1121, "Invalid symbol.")
        limit = min(int(p.get("limit", 500)), 1000)
        with account.lock:
            advance()
            rows = [t for t in account.trades if t["symbol"] == p["symbol"]
                    and ("orderId" not in p or t["orderId"] == int(p["orderId"]))
                    and t["id"] >= int(p.get("fromId", 0))
                    and t["time"] >= int(p.get("startTime", 0)) and t["time"] <= int(p.get("endTime", 2**62))]
            return Response(200, [dict(t) for t in rows[:limit]])

    def cancel(o: dict[str, Any]) -> None:
        base, quote = markets[o["symbol"]]
        account.release(o, base, quote)
        o["status"], o["updateTime"] = "CANCELED", account.now()

    def cancel_all(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        symbol = request.params.get("symbol")
        if symbol not in markets:
            return Response.error(-1121, "Invalid symbol.")
        cancelled = []
        with account.lock:
            advance()
            for o in account.orders.values():
                if o["symbol"] == symbol and o["status"] in ACTIVE:
                    cancel(o)
                    cancelled.append(cancel_body(o))
        if not cancelled:
            return Response.error(-2011, "Unknown order sent.")
        return Response(200, cancelled)

    def cancel_one(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        with account.lock:
            advance()
            o = find(request.params)
            if o is None or o["status"] not in ACTIVE:
                return Response.error(-2011, "Unknown order sent.")
            cancel(o)
            return Response(200, cancel_body(o))

    def account_info(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        with account.lock:
            advance()
            balances = [{"asset": a, "free": _fmt(v[0]), "locked": _fmt(v[1])} for a, v in account.balances.items()]
        bps = int(round(account.commission * 10_000))
        return Response(200, {"makerCommission": bps, "takerCommission": bps, "buyerCommission": 0,
                              "sellerCommission": 0, "canTrade": True, "canWithdraw": False, "canDeposit": True,
                              "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
                              "updateTime": account.now(), "accountType": "SPOT", "balances": balances,
                              "permissions": ["SPOT"], "uid": 354937868})

    def ticker(request: Request) -> Response:
        symbol = request.params.get("symbol")
        if symbol not in account.prices and symbol not in account.candles:
            return Response.error(-1121, "Invalid symbol.")
        px = _fmt(account.price(symbol))
        now = account.now()
        return Response(200, {"symbol": symbol, "priceChange": "0", "priceChangePercent": "0",
                              "weightedAvgPrice": px, "prevClosePrice": px, "lastPrice": px, "lastQty": "1",
                              "bidPrice": px, "bidQty": "1", "askPrice": px, "askQty": "1", "openPrice": px,
                              "highPrice": px, "lowPrice": px, "volume": "1000", "quoteVolume": "1000",
                              "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": 2,
                              "count": 2})

    emulator.route("POST", "/api/v3/order", new_order)
    emulator.route("GET", "/api/v3/order", query_order)
    emulator.route("DELETE", "/api/v3/order", cancel_one)
    emulator.route("GET", "/api/v3/openOrders", open_orders)
    emulator.route("DELETE", "/api/v3/openOrders", cancel_all)
    emulator.route("GET", "/api/v3/allOrders", all_orders)
    emulator.route("GET", "/api/v3/myTrades", my_trades)
    emulator.route("GET", "/api/v3/account", account_info)
    emulator.route("GET", "/api/v3/ticker/24hr", ticker)


def serve_candles(emulator: BinanceEmulator, account: SpotAccount, candles: Candles) -> None:
    """Serve ``candles`` from ``/api/v3/klines`` and fill the account's orders against them."""
    emulator.add_candles(candles)
    account.candles[candles.symbol.replace("/", "")] = candles


TEST_KEY = "sxTestKey" + "0" * 55
"""A well-formed (64 letters/digits) testnet API key the emulator accepts with :data:`TEST_SECRET`."""
TEST_SECRET = "sxTestSecret" + "1" * 52
SPOT_MARKETS = {"BTCUSDT": ("BTC", "USDT"), "ETHUSDT": ("ETH", "USDT")}


def spot_exchange(data_dir: Any, candles: list[Candles], *, clock: Callable[[], int] | None = None,
                  balances: dict[str, list[float]] | None = None, commission: float = 0.001,
                  extra_markets: list[dict[str, Any]] | None = None) -> tuple[BinanceEmulator, SpotAccount]:
    """A started emulator with the account installed, keys checked as Binance does, the
    ``candles`` served and filled against, its market clock ``clock``. ``extra_markets``:
    raw exchangeInfo ``symbols[]`` entries (see :func:`spot_market`) traded beside BTC and
    ETH. Stop it after use."""
    account = SpotAccount(balances=balances or {"USDT": [10_000.0, 0.0], "BTC": [0.0, 0.0], "ETH": [0.0, 0.0]},
                          api_keys={TEST_KEY: TEST_SECRET}, clock=clock, commission=commission)
    emulator = BinanceEmulator(data_dir, clock=clock)
    markets = dict(SPOT_MARKETS)
    for raw in extra_markets or ():
        emulator.add_market(raw)
        markets[raw["symbol"]] = (raw["baseAsset"], raw["quoteAsset"])
    install(emulator, account, markets)
    for c in candles:
        serve_candles(emulator, account, c)
    emulator.start()
    # One TCP segment per answer: with Nagle on, the body waits for the client's delayed ACK
    # of the headers (~40 ms a request), which would make a 500-tick soak crawl.
    emulator._server.RequestHandlerClass.disable_nagle_algorithm = True
    return emulator, account


def spot_market(base: str, quote: str = "USDT", *, step: str = "0.00001000", tick: str = "0.01000000",
                max_qty: str = "9000.00000000", min_notional: str = "5.00000000") -> dict[str, Any]:
    """A raw exchangeInfo ``symbols[]`` entry of a spot market ``base``+``quote`` with these
    LOT_SIZE step/max, PRICE_FILTER tick and NOTIONAL minimum (Binance's strings)."""
    return {"symbol": base + quote, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
            "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": False,
            "ocoAllowed": False, "quoteOrderQtyMarketAllowed": True, "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False, "permissions": ["SPOT"],
            "filters": [{"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
                         "tickSize": tick},
                        {"filterType": "LOT_SIZE", "minQty": step, "maxQty": max_qty, "stepSize": step},
                        {"filterType": "NOTIONAL", "minNotional": min_notional, "applyMinToMarket": True,
                         "maxNotional": "9000000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5}]}


def connect(emulator: BinanceEmulator, *, key: str = TEST_KEY, secret: str = TEST_SECRET, timeout_ms: int = 2000,
            recv_window_ms: int = 1000) -> Any:
    """A real ccxt binance client on the emulator's testnet URLs (1 ms rate limit, loaded markets)."""
    from sigmax_cli.exchange.client import create_exchange

    exchange = create_exchange("binance", api_url=emulator.url, sandbox=True, api_key=key, api_secret=secret,
                               timeout_ms=timeout_ms)
    exchange.rateLimit = 1
    exchange.options["recvWindow"] = recv_window_ms
    exchange.load_markets()
    return exchange
