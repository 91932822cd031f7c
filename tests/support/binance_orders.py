"""An in-memory Binance spot account for the emulator: orders, cancels, balances.

Installs the private spot endpoints ccxt uses on a :class:`BinanceEmulator`:
``POST /api/v3/order``, ``GET /api/v3/openOrders``, ``DELETE /api/v3/openOrders``,
``DELETE /api/v3/order``, ``GET /api/v3/account`` and a per-symbol
``GET /api/v3/ticker/24hr``. Bodies follow the shapes of Binance's documented responses
(../shared/data/exchange_api/binance_http_api_doc_examples_nautilus: open_orders,
cancel_order, account). Requests without an ``X-MBX-APIKEY`` header get Binance's -2015
error; the HMAC signature itself is not checked (the emulator does not know which
parameter order ccxt signed).

Limit orders rest until cancelled; market orders fill at once at ``prices[symbol]``.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.support.binance_emulator import BinanceEmulator, Request, Response


def _fmt(x: float) -> str:
    return f"{x:.8f}"


@dataclass
class SpotAccount:
    """The emulated account: balances (free, locked) per asset and orders by id."""

    balances: dict[str, list[float]] = field(default_factory=dict)
    prices: dict[str, float] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000))

    def open_orders(self, market_id: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [o for o in self.orders.values()
                    if o["status"] == "NEW" and (market_id is None or o["symbol"] == market_id)]


def install(emulator: BinanceEmulator, account: SpotAccount, markets: dict[str, tuple[str, str]]) -> None:
    """Add the private endpoints for ``markets`` (market id -> (base, quote)) to ``emulator``."""

    def authorised(request: Request) -> Response | None:
        if not request.headers.get("x-mbx-apikey") and not request.headers.get("X-MBX-APIKEY"):
            return Response.error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return None

    def order_body(o: dict[str, Any]) -> dict[str, Any]:
        return {"symbol": o["symbol"], "orderId": o["orderId"], "orderListId": -1,
                "clientOrderId": o["clientOrderId"], "price": _fmt(o["price"]), "origQty": _fmt(o["qty"]),
                "executedQty": _fmt(o["executed"]), "cummulativeQuoteQty": _fmt(o["executed"] * o["price"]),
                "status": o["status"], "timeInForce": o["timeInForce"], "type": o["type"], "side": o["side"],
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

    def unlock(o: dict[str, Any]) -> None:
        base, quote = markets[o["symbol"]]
        left = o["qty"] - o["executed"]
        if o["side"] == "BUY":
            account.balances[quote][0] += left * o["price"]
            account.balances[quote][1] -= left * o["price"]
        else:
            account.balances[base][0] += left
            account.balances[base][1] -= left

    def new_order(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        p = request.params
        if p.get("symbol") not in markets:
            return Response.error(-1121, "Invalid symbol.")
        base, quote = markets[p["symbol"]]
        qty = float(p["quantity"])
        side, kind = p["side"].upper(), p["type"].upper()
        price = float(p["price"]) if kind == "LIMIT" else account.prices[p["symbol"]]
        now = int(time.time() * 1000)
        with account.lock:
            spend_asset, spend = (quote, qty * price) if side == "BUY" else (base, qty)
            free = account.balances.setdefault(spend_asset, [0.0, 0.0])
            account.balances.setdefault(base, [0.0, 0.0])
            account.balances.setdefault(quote, [0.0, 0.0])
            if free[0] + 1e-12 < spend:
                return Response.error(-2010, "Account has insufficient balance for requested action.")
            order = {"symbol": p["symbol"], "orderId": next(account._ids), "clientOrderId":
                     p.get("newClientOrderId") or f"emu{now}", "price": price, "qty": qty, "executed": 0.0,
                     "status": "NEW", "timeInForce": p.get("timeInForce", "GTC"), "type": kind, "side": side,
                     "time": now, "updateTime": now}
            if kind == "MARKET":
                order["executed"], order["status"] = qty, "FILLED"
                receive_asset, receive = (base, qty) if side == "BUY" else (quote, qty * price)
                free[0] -= spend
                account.balances[receive_asset][0] += receive
            else:
                free[0] -= spend
                free[1] += spend
            account.orders[order["orderId"]] = order
        body = order_body(order)
        body["transactTime"] = now
        body["fills"] = ([{"price": _fmt(price), "qty": _fmt(qty), "commission": "0.00000000",
                           "commissionAsset": quote, "tradeId": order["orderId"]}] if kind == "MARKET" else [])
        return Response(200, body)

    def open_orders(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        return Response(200, [order_body(o) for o in account.open_orders(request.params.get("symbol"))])

    def cancel_all(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        symbol = request.params.get("symbol")
        if symbol not in markets:
            return Response.error(-1121, "Invalid symbol.")
        cancelled = []
        with account.lock:
            for o in account.orders.values():
                if o["symbol"] == symbol and o["status"] == "NEW":
                    unlock(o)
                    o["status"], o["updateTime"] = "CANCELED", int(time.time() * 1000)
                    cancelled.append(cancel_body(o))
        if not cancelled:
            return Response.error(-2011, "Unknown order sent.")
        return Response(200, cancelled)

    def cancel_one(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        p = request.params
        with account.lock:
            match = [o for o in account.orders.values() if o["symbol"] == p.get("symbol") and (
                str(o["orderId"]) == p.get("orderId") or o["clientOrderId"] == p.get("origClientOrderId"))]
            if not match or match[0]["status"] != "NEW":
                return Response.error(-2011, "Unknown order sent.")
            o = match[0]
            unlock(o)
            o["status"], o["updateTime"] = "CANCELED", int(time.time() * 1000)
        return Response(200, cancel_body(o))

    def account_info(request: Request) -> Response:
        if (denied := authorised(request)) is not None:
            return denied
        with account.lock:
            balances = [{"asset": a, "free": _fmt(v[0]), "locked": _fmt(v[1])} for a, v in account.balances.items()]
        return Response(200, {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0,
                              "sellerCommission": 0, "canTrade": True, "canWithdraw": False, "canDeposit": True,
                              "brokered": False, "requireSelfTradePrevention": False, "preventSor": False,
                              "updateTime": int(time.time() * 1000), "accountType": "SPOT", "balances": balances,
                              "permissions": ["SPOT"], "uid": 354937868})

    def ticker(request: Request) -> Response:
        symbol = request.params.get("symbol")
        if symbol not in account.prices:
            return Response.error(-1121, "Invalid symbol.")
        px = _fmt(account.prices[symbol])
        now = int(time.time() * 1000)
        return Response(200, {"symbol": symbol, "priceChange": "0", "priceChangePercent": "0",
                              "weightedAvgPrice": px, "prevClosePrice": px, "lastPrice": px, "lastQty": "1",
                              "bidPrice": px, "bidQty": "1", "askPrice": px, "askQty": "1", "openPrice": px,
                              "highPrice": px, "lowPrice": px, "volume": "1000", "quoteVolume": "1000",
                              "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": 2,
                              "count": 2})

    emulator.route("POST", "/api/v3/order", new_order)
    emulator.route("DELETE", "/api/v3/order", cancel_one)
    emulator.route("GET", "/api/v3/openOrders", open_orders)
    emulator.route("DELETE", "/api/v3/openOrders", cancel_all)
    emulator.route("GET", "/api/v3/account", account_info)
    emulator.route("GET", "/api/v3/ticker/24hr", ticker)
