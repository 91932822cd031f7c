"""A Binance spot REST emulator on 127.0.0.1 that real ccxt talks real HTTP to.

Public endpoints, served from the recorded responses in ``../shared/data/exchange_api``
and from candles registered per symbol::

    GET /api/v3/ping            {}
    GET /api/v3/time            {"serverTime": <clock>}
    GET /api/v3/exchangeInfo    recorded BTCUSDT/ETHUSDT + the raw ``info`` of the ccxt
                                static markets (ADA, LTC, XRP, DOGE, TRX)
    GET /api/v3/klines          registered :class:`Candles` as Binance 12-field rows
    GET /api/v3/ticker/24hr     recorded BTCUSDT ticker; other symbols from their candles
    GET /api/v3/depth           recorded BTCUSDT book (``limit`` honoured)

Behaviour follows Binance where tests can notice it: errors are ``{"code", "msg"}`` bodies
with HTTP 400 (``-1121 Invalid symbol.``, ``-1120 Invalid interval.``, ``-1102`` missing
parameter), klines never include a bar that opens after the emulator's clock (the
still-forming bar *is* served, as Binance does), ``limit`` defaults to 500, max 1000.

Fault injection: :meth:`BinanceEmulator.inject` queues :class:`Fault` objects per path;
each request to that path takes the next one (HTTP status, body, headers such as
``Retry-After``, a delay, an HTML body, or a dropped connection) instead of the normal
answer. Every request lands in :attr:`BinanceEmulator.log` for assertions.

Extending (private / order endpoints for ``sigmax run --env testnet``): register a handler
with :meth:`BinanceEmulator.route`; it gets a :class:`Request` (method, path, query and
form parameters merged in ``params``, headers such as ``X-MBX-APIKEY``, raw body) and
returns a :class:`Response`. Faults and the request log apply to every route::

    def new_order(req: Request) -> Response:
        return Response(200, {"symbol": req.params["symbol"], "orderId": 1, ...})

    emulator.route("POST", "/api/v3/order", new_order)
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from sigmax_cli.data.candles import Candles
from tests.support.loopback import server_url, start_server, stop_server

RECORDED = Path("exchange_api") / "binance_http_recorded_nautilus"
CCXT_STATIC = Path("exchange_api") / "ccxt_static"
INTERVALS = (
    "1s",
    "1m",
    "3m",
    "5m",
    "15m",
    "30m",
    "1h",
    "2h",
    "4h",
    "6h",
    "8h",
    "12h",
    "1d",
    "3d",
    "1w",
    "1M",
)
HTML_ERROR = (
    "<html><head><title>{status}</title></head><body><h1>{status} Bad Gateway</h1></body></html>"
)


@dataclass
class Fault:
    """One injected misbehaviour, used instead of the normal answer for one request.

    Attributes:
        status: HTTP status to answer with.
        body: dict/list -> JSON, str/bytes -> sent as is; ``None`` -> a Binance-style
            ``{"code": -1000, ...}`` body (or an HTML page when ``html``).
        headers: extra response headers, e.g. ``{"Retry-After": "3"}``.
        delay_s: seconds to wait before answering (or before dropping); seconds.
        html: answer with an HTML error page (``text/html``), as a proxy or CDN does.
        drop: close the connection without any response.
        then_serve: after ``delay_s``, serve the normal answer instead (a slow reply).
    """

    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    html: bool = False
    drop: bool = False
    then_serve: bool = False

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1, status: int = 429) -> Fault:
        """HTTP 429 (or 418, IP ban) with Binance's ``-1003`` body and ``Retry-After``."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        body = {
            "code": -1003,
            "msg": "Too much request weight used; current limit is 6000 request weight per "
            "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
        }
        return cls(status=status, body=body, headers=headers)

    @classmethod
    def dropped(cls, delay_s: float = 0.0) -> Fault:
        """Close the connection without answering."""
        return cls(drop=True, delay_s=delay_s)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Answer normally, but only after ``delay_s`` seconds."""
        return cls(status=200, delay_s=delay_s, then_serve=True)

    @classmethod
    def binance_error(cls, code: int, msg: str, status: int = 400) -> Fault:
        """A Binance ``{"code", "msg"}`` error body, e.g. ``(-2015, "Invalid API-key...", 401)``."""
        return cls(status=status, body={"code": code, "msg": msg})


@dataclass(frozen=True)
class Request:
    """What a route handler sees. ``params`` merges the query string and a form body."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Response:
    """What a route handler returns: status, JSON-able body (or str/bytes), headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, code: int, msg: str, status: int = 400) -> Response:
        return cls(status, {"code": code, "msg": msg})


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the emulator received it, with the status it answered (0: dropped)."""

    method: str
    path: str
    params: dict[str, str]
    status: int
    fault: bool

    def int_param(self, name: str) -> int | None:
        value = self.params.get(name)
        return int(value) if value is not None else None


Handler = Callable[[Request], Response]


class ManualClock:
    """A clock tests move by hand: ``now_ms()`` for the emulator and the code under test,
    ``sleep(seconds)`` advances it instead of waiting (UTC ms)."""

    def __init__(self, now_ms: int) -> None:
        self._now = int(now_ms)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def now_ms(self) -> int:
        with self._lock:
            return self._now

    def set(self, now_ms: int) -> None:
        with self._lock:
            self._now = int(now_ms)

    def advance(self, ms: int) -> None:
        with self._lock:
            self._now += int(ms)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(int(round(seconds * 1000)))
        if self.on_sleep is not None:
            self.on_sleep(seconds)


def _fmt(value: float) -> str:
    """A price or quantity as Binance sends it: a decimal string (exact float round trip)."""
    text = repr(float(value))
    if "e" in text or "inf" in text or "nan" in text:
        return np.format_float_positional(value, trim="-", unique=True)
    return text[:-2] if text.endswith(".0") else text


class _Series:
    """One symbol's candles at one interval, pre-rendered as Binance kline rows."""

    def __init__(self, candles: Candles) -> None:
        tf = candles.tf_ms
        self.ts = np.asarray(candles.ts, dtype=np.int64)
        self.rows: list[list[Any]] = [
            [
                int(t),
                _fmt(o),
                _fmt(h),
                _fmt(low),
                _fmt(c),
                _fmt(v),
                int(t) + tf - 1,
                _fmt(v * c),
                0,
                "0",
                "0",
                "0",
            ]
            for t, o, h, low, c, v in candles.rows()
        ]
        self.candles = candles


class BinanceEmulator:
    """Binance spot REST on ``http://127.0.0.1:<port>`` in a background thread.

    Args:
        data_dir: the shared test data directory (``../shared/data``).
        clock: returns the emulator's "now" in UTC ms (``/api/v3/time``, newest kline);
            the wall clock when omitted.

    Use as a context manager (``with BinanceEmulator(d) as emu: ...``) or ``start()`` /
    ``stop()``; :attr:`url` is the base URL to give ccxt (``SIGMAX_EXCHANGE_API_URL``).
    """

    def __init__(self, data_dir: Path, *, clock: Callable[[], int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock or (lambda: int(time.time() * 1000))
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._faults: dict[str, deque[Fault | None]] = {}
        self._series: dict[tuple[str, str], _Series] = {}
        self._routes: dict[tuple[str, str], Handler] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.exchange_info = self._load_exchange_info()
        self.ticker_24hr = {
            "BTCUSDT": self._read_json(CCXT_STATIC / "binance_response_spot_subset.json")[
                "methods"
            ]["fetchTicker"][0]["httpResponse"]
        }
        self.depth = {"BTCUSDT": self._read_json(RECORDED / "http_spot_market_depth.json")}
        for path, handler in {
            "/api/v3/ping": self._ping,
            "/api/v3/time": self._time,
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/klines": self._klines,
            "/api/v3/ticker/24hr": self._ticker_24hr,
            "/api/v3/depth": self._depth,
        }.items():
            self.route("GET", path, handler)

    # ----------------------------------------------------------------- set-up
    def _read_json(self, rel: Path) -> Any:
        with (self.data_dir / rel).open("rb") as fh:
            return json.load(fh)

    def _load_exchange_info(self) -> dict[str, Any]:
        info = self._read_json(RECORDED / "http_spot_market_exchange_info.json")
        known = {s["symbol"] for s in info["symbols"]}
        for market in self._read_json(CCXT_STATIC / "binance_markets_spot_subset.json").values():
            raw = market["info"]
            if raw["symbol"] not in known:
                info["symbols"].append(raw)
                known.add(raw["symbol"])
        return info

    @property
    def symbol_ids(self) -> set[str]:
        """Binance ids (``BTCUSDT``) of every market in exchangeInfo."""
        return {s["symbol"] for s in self.exchange_info["symbols"]}

    def add_candles(self, candles: Candles, symbol: str | None = None) -> None:
        """Serve ``candles`` from ``/api/v3/klines`` for their symbol and timeframe.

        ``symbol`` (``BTC/USDT`` or ``BTCUSDT``) defaults to ``candles.symbol``; it must
        be a market of exchangeInfo (add it with :meth:`add_market` first otherwise).
        """
        market_id = (symbol or candles.symbol).replace("/", "")
        if market_id not in self.symbol_ids:
            raise ValueError(
                f"{market_id} is not in the emulator's exchangeInfo; add_market() it first"
            )
        with self._lock:
            self._series[(market_id, candles.timeframe)] = _Series(candles)

    def add_market(self, raw_symbol_info: dict[str, Any]) -> None:
        """Add a raw exchangeInfo ``symbols[]`` entry (``{"symbol": "SOLUSDT", ...}``)."""
        with self._lock:
            self.exchange_info["symbols"].append(raw_symbol_info)

    def route(self, method: str, path: str, handler: Handler | None = None):
        """Register ``handler`` for ``METHOD path``; usable as a decorator when omitted."""

        def register(fn: Handler) -> Handler:
            self._routes[(method.upper(), path)] = fn
            return fn

        return register(handler) if handler is not None else register

    def inject(self, path: str, *faults: Fault, after: int = 0) -> None:
        """Queue ``faults`` for ``path``: after ``after`` normal answers, the next
        ``len(faults)`` requests to it get them, in order."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend([None] * after + list(faults))

    def fail(
        self, path: str, status: int = 500, times: int = 1, after: int = 0, **kwargs: Any
    ) -> None:
        """Shorthand: ``times`` identical faults (``status`` and any :class:`Fault` field)."""
        self.inject(path, *(Fault(status=status, **kwargs) for _ in range(times)), after=after)

    def clear_faults(self, path: str | None = None) -> None:
        """Drop the queued faults of ``path`` (of every path when ``None``)."""
        with self._lock:
            if path is None:
                self._faults.clear()
            else:
                self._faults.pop(path, None)

    def pending_faults(self, path: str) -> int:
        """Faults still queued for ``path``."""
        with self._lock:
            return sum(1 for f in self._faults.get(path, ()) if f is not None)

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally only those to ``path``, oldest first."""
        with self._lock:
            return [r for r in self.log if path is None or r.path == path]

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # ---------------------------------------------------------------- server
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return server_url(self._server)

    def start(self) -> BinanceEmulator:
        handler = type("_BoundHandler", (_HTTPHandler,), {"emulator": self})
        self._server, self._thread = start_server(handler, name="binance-emulator", server_class=_Server)
        return self

    def stop(self) -> None:
        if self._server is not None:
            stop_server(self._server, self._thread)
            self._server = None

    def __enter__(self) -> BinanceEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- dispatch
    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def _record(self, req: Request, status: int, fault: bool) -> None:
        with self._lock:
            self.log.append(LoggedRequest(req.method, req.path, dict(req.params), status, fault))

    def dispatch(self, req: Request) -> Response:
        handler = self._routes.get((req.method, req.path))
        if handler is None:
            return Response(
                404,
                f"<html><body>emulator: no route for {req.method} {req.path}</body></html>",
                {"Content-Type": "text/html"},
            )
        return handler(req)

    # ------------------------------------------------------------- endpoints
    def _ping(self, req: Request) -> Response:
        return Response(200, {})

    def _time(self, req: Request) -> Response:
        return Response(200, {"serverTime": self.clock()})

    def _exchange_info(self, req: Request) -> Response:
        with self._lock:
            doc = dict(self.exchange_info, symbols=list(self.exchange_info["symbols"]))
        doc["serverTime"] = self.clock()
        wanted = req.params.get("symbol")
        if wanted is not None:
            doc["symbols"] = [s for s in doc["symbols"] if s["symbol"] == wanted]
            if not doc["symbols"]:
                return Response.error(-1121, "Invalid symbol.")
        return Response(200, doc)

    def _symbol(self, req: Request) -> tuple[str | None, Response | None]:
        symbol = req.params.get("symbol")
        if not symbol:
            return None, Response.error(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        if symbol not in self.symbol_ids:
            return None, Response.error(-1121, "Invalid symbol.")
        return symbol, None

    def _klines(self, req: Request) -> Response:
        symbol, error = self._symbol(req)
        if error is not None:
            return error
        interval = req.params.get("interval")
        if interval not in INTERVALS:
            return Response.error(-1120, "Invalid interval.")
        try:
            limit = int(req.params.get("limit", 500))
            start = int(req.params["startTime"]) if "startTime" in req.params else None
            end = int(req.params["endTime"]) if "endTime" in req.params else None
        except ValueError:
            return Response.error(-1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= 1000:
            return Response.error(-1130, "Data sent for parameter 'limit' is not valid.")
        with self._lock:
            series = self._series.get((symbol, interval))
        if series is None:
            return Response(200, [])
        now = self.clock()
        hi_ts = now if end is None else min(end, now)
        hi = int(np.searchsorted(series.ts, hi_ts, side="right"))
        if start is not None:
            lo = int(np.searchsorted(series.ts, start, side="left"))
            rows = series.rows[lo : min(hi, lo + limit)] if lo < hi else []
        else:
            rows = series.rows[max(0, hi - limit) : hi]
        return Response(200, rows)

    def _ticker_24hr(self, req: Request) -> Response:
        symbol, error = self._symbol(req)
        if error is not None:
            return error
        assert symbol is not None
        if symbol in self.ticker_24hr:
            return Response(200, self.ticker_24hr[symbol])
        with self._lock:
            series = next((s for (sym, _), s in self._series.items() if sym == symbol), None)
        if series is None:
            return Response.error(-1121, "Invalid symbol.")
        c = series.candles.slice(self.clock() - 86_400_000, self.clock() + 1)
        if len(c) == 0:
            return Response.error(-1121, "Invalid symbol.")
        last, first = float(c.close[-1]), float(c.open[0])
        return Response(
            200,
            {
                "symbol": symbol,
                "priceChange": _fmt(last - first),
                "priceChangePercent": f"{(last / first - 1) * 100:.3f}",
                "weightedAvgPrice": _fmt(last),
                "prevClosePrice": _fmt(first),
                "lastPrice": _fmt(last),
                "lastQty": "0",
                "bidPrice": _fmt(last),
                "bidQty": "0",
                "askPrice": _fmt(last),
                "askQty": "0",
                "openPrice": _fmt(first),
                "highPrice": _fmt(float(c.high.max())),
                "lowPrice": _fmt(float(c.low.min())),
                "volume": _fmt(float(c.volume.sum())),
                "quoteVolume": _fmt(float((c.volume * c.close).sum())),
                "openTime": int(c.ts[0]),
                "closeTime": int(c.ts[-1]) + c.tf_ms - 1,
                "firstId": 0,
                "lastId": 0,
                "count": 0,
            },
        )

    def _depth(self, req: Request) -> Response:
        symbol, error = self._symbol(req)
        if error is not None:
            return error
        limit = int(req.params.get("limit", 100))
        book = self.depth.get(symbol or "", {"lastUpdateId": 0, "bids": [], "asks": []})
        return Response(
            200,
            {
                "lastUpdateId": book["lastUpdateId"],
                "bids": book["bids"][:limit],
                "asks": book["asks"][:limit],
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _HTTPHandler(BaseHTTPRequestHandler):
    emulator: BinanceEmulator
    protocol_version = "HTTP/1.1"
    server_version = "binance-emulator/1"

    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature; silence
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if body and "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        req = Request(self.command, parts.path, params, dict(self.headers.items()), body)
        emu = self.emulator
        fault = emu._next_fault(req.path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.drop:
                emu._record(req, 0, True)
                self.close_connection = True
                return
            if not fault.then_serve:
                if fault.html:
                    resp = Response(
                        fault.status,
                        fault.body or HTML_ERROR.format(status=fault.status),
                        {"Content-Type": "text/html", **fault.headers},
                    )
                else:
                    body_out = (
                        fault.body
                        if fault.body is not None
                        else {
                            "code": -1000,
                            "msg": "An unknown error occurred while processing the request.",
                        }
                    )
                    resp = Response(fault.status, body_out, dict(fault.headers))
                emu._record(req, resp.status, True)
                self._send(resp)
                return
        try:
            resp = emu.dispatch(req)
        except Exception as exc:  # a bug in a handler: answer 500 so the test sees it
            resp = Response(500, {"code": -1000, "msg": f"emulator handler failed: {exc!r}"})
        emu._record(req, resp.status, fault is not None)
        self._send(resp)

    def _send(self, resp: Response) -> None:
        headers = dict(resp.headers)
        if isinstance(resp.body, bytes):
            payload = resp.body
        elif isinstance(resp.body, str):
            payload = resp.body.encode()
            headers.setdefault("Content-Type", "text/plain")
        else:
            payload = json.dumps(resp.body, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json;charset=UTF-8")
        self.send_response(resp.status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle
