"""A news/sentiment/market HTTP server on 127.0.0.1 serving the recorded real data in
``../shared/data`` (never copied into the repository), with conditional GET and faults.

Routes::

    GET /feeds/<name>.rss                 news_feeds/<name>_*.rss  (coindesk, cointelegraph,
                                          decrypt, theblock); ETag + Last-Modified; answers
                                          304 to a matching If-None-Match / If-Modified-Since
    GET /fng/?limit=N                     sentiment/alternative_me_fng_limit1_*.json for N=1,
                                          else the 365-day answer cut to its newest N values
    GET /api/v3/coins/bitcoin/market_chart   coingecko/coins_bitcoin_market_chart_*.json
    GET /api/v3/coins/<other>/market_chart   404 {"error": "coin not found"} (as CoinGecko)
    GET /cryptopanic/posts/?auth_token=K  the CoinDesk feed's real items in CryptoPanic's
                                          ``/posts/`` shape (no recorded CryptoPanic answer
                                          exists); 401 unless K == ``cryptopanic_key``

Faults (:meth:`FeedsServer.inject`, per path, each used ``times`` times or forever):
``Fault(status=500)``, ``Fault(delay_s=2)`` (answer late: a client timeout),
``Fault(kind="malformed")`` (the real feed cut in half), ``Fault(kind="wrong_encoding")``
(the real feed re-encoded as windows-1252 while still declaring UTF-8),
``Fault(kind="html")`` (200 with an HTML page, as a captive portal or CDN error page does),
``Fault(kind="drop")`` (close without answering). Every request is logged
(:attr:`FeedsServer.log`) with its conditional headers, User-Agent and answer status.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import server_url, start_server, stop_server

FEEDS = ("coindesk", "cointelegraph", "decrypt", "theblock")
LAST_MODIFIED = "Sat, 13 Dec 2025 11:05:41 GMT"  # the saved feeds' lastBuildDate
HTML_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>"


@dataclass
class Fault:
    """One injected misbehaviour (see the module docstring)."""

    kind: str = "status"  # status | delay | malformed | wrong_encoding | html | drop
    status: int = 500
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.delay_s and self.kind == "status" and self.status == 500:
            self.kind = "delay"


@dataclass(frozen=True)
class Logged:
    path: str
    query: str
    if_none_match: str | None
    if_modified_since: str | None
    user_agent: str | None
    status: int


class FeedsServer:
    """The server; use as a context manager. :attr:`url` is ``http://127.0.0.1:<port>``."""

    def __init__(self, data_dir: Path, cryptopanic_key: str = "cp-test-key-0123456789") -> None:
        self.data_dir = Path(data_dir)
        self.cryptopanic_key = cryptopanic_key
        self.log: list[Logged] = []
        self._faults: dict[str, deque[tuple[Fault, int | None]]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.feeds = {name: self._feed_file(name).read_bytes() for name in FEEDS}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- data -------------------------------------------------------------------------------
    def _feed_file(self, name: str) -> Path:
        matches = sorted((self.data_dir / "news_feeds").glob(f"{name}_*.rss"))
        if not matches:
            raise FileNotFoundError(f"no news_feeds/{name}_*.rss in {self.data_dir}")
        return matches[0]

    def _json(self, rel: str) -> Any:
        matches = sorted(self.data_dir.glob(rel))
        with matches[0].open("rb") as fh:
            return json.load(fh)

    def feed_url(self, name: str) -> str:
        return f"{self.url}/feeds/{name}.rss"

    def feed_specs(self, names: tuple[str, ...] = FEEDS) -> str:
        """``--feeds`` value naming each served feed: ``coindesk=http://127.0.0.1:P/feeds/coindesk.rss,...``."""
        return ",".join(f"{n}={self.feed_url(n)}" for n in names)

    def env(self, names: tuple[str, ...] = FEEDS) -> dict[str, str]:
        """``SIGMAX_RESEARCH__*`` variables pointing every source at this server."""
        return {
            "SIGMAX_RESEARCH__FEEDS": self.feed_specs(names),
            "SIGMAX_RESEARCH__FEARGREED_URL": self.url,
            "SIGMAX_RESEARCH__COINGECKO_URL": f"{self.url}/api/v3",
            "SIGMAX_RESEARCH__CRYPTOPANIC_URL": f"{self.url}/cryptopanic",
        }

    def cryptopanic_posts(self) -> dict[str, Any]:
        """The CoinDesk feed's items as a CryptoPanic ``/posts/`` answer."""
        import calendar

        import feedparser

        parsed = feedparser.parse(self.feeds["coindesk"])
        results = []
        for i, entry in enumerate(parsed.entries):
            stamp = calendar.timegm(entry.published_parsed)
            published = datetime.fromtimestamp(stamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            results.append({"id": 20_000_000 + i, "kind": "news", "title": entry.title, "published_at": published,
                            "created_at": published, "slug": entry.link.rstrip("/").rsplit("/", 1)[-1],
                            "original_url": entry.link, "source": {"title": "CoinDesk", "domain": "coindesk.com"},
                            "currencies": [{"code": t.term.upper()} for t in entry.get("tags", [])
                                           if t.term.upper() in ("BTC", "ETH", "SOL", "XRP")]})
        return {"count": len(results), "next": None, "previous": None, "results": results}

    # -- faults -------------------------------------------------------------------------------
    def inject(self, path: str, fault: Fault, times: int | None = 1) -> None:
        """Answer the next ``times`` requests to ``path`` (no query) with ``fault``; ``None``: always."""
        with self._lock:
            self._faults.setdefault(path, deque()).append((fault, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if not queue:
                return None
            fault, times = queue[0]
            if times is not None:
                if times <= 1:
                    queue.popleft()
                else:
                    queue[0] = (fault, times - 1)
            return fault

    def requests_to(self, path: str) -> list[Logged]:
        return [entry for entry in self.log if entry.path == path]

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> FeedsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer._handle(self)

        self._server, self._thread = start_server(Handler, name="feeds-server")
        self.url = server_url(self._server)

    def stop(self) -> None:
        self._closing.set()
        if self._server is not None:
            stop_server(self._server, self._thread)

    # -- answers ----------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qs(parts.query)
        fault = self._take_fault(path)
        status, body, headers = self._answer(h, path, query, fault)
        self.log.append(Logged(path, parts.query, h.headers.get("If-None-Match"),
                               h.headers.get("If-Modified-Since"), h.headers.get("User-Agent"), status))
        if status == 0:  # drop
            h.close_connection = True
            return
        try:
            h.send_response(status)
            for key, value in headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            h.close_connection = True

    def _answer(self, h, path: str, query: dict[str, list[str]], fault: Fault | None):
        if fault is not None and fault.kind == "delay":
            self._closing.wait(fault.delay_s)
            fault = None
        if fault is not None:
            if fault.kind == "status":
                return fault.status, b"<html><body>server error</body></html>", {"Content-Type": "text/html"}
            if fault.kind == "html":
                return 200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"}
            if fault.kind == "drop":
                return 0, b"", {}
        if path.startswith("/feeds/") and path.endswith(".rss"):
            name = path[len("/feeds/"):-len(".rss")]
            if name not in self.feeds:
                return 404, b"not found", {"Content-Type": "text/plain"}
            body = self.feeds[name]
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            if fault is not None and fault.kind == "malformed":
                body = body[: len(body) // 2]
            elif fault is not None and fault.kind == "wrong_encoding":
                body = body.decode("utf-8").encode("cp1252", errors="replace")
            if fault is None:
                if h.headers.get("If-None-Match") == etag or (
                        h.headers.get("If-None-Match") is None and h.headers.get("If-Modified-Since") == LAST_MODIFIED):
                    return 304, b"", {"ETag": etag, "Last-Modified": LAST_MODIFIED}
                headers = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
            else:
                headers = {}
            return 200, body, {"Content-Type": "application/rss+xml; charset=utf-8", **headers}
        if path == "/fng/":
            limit = int(query.get("limit", ["1"])[0])
            if limit == 1:
                doc = self._json("sentiment/alternative_me_fng_limit1_*.json")
            else:
                doc = self._json("sentiment/alternative_me_fng_limit365_*.json")
                doc["data"] = doc["data"][:limit]
            return 200, json.dumps(doc).encode(), {"Content-Type": "application/json"}
        if path.startswith("/api/v3/coins/") and path.endswith("/market_chart"):
            coin = path.split("/")[4]
            if coin != "bitcoin":
                return 404, b'{"error":"coin not found"}', {"Content-Type": "application/json"}
            body = json.dumps(self._json("coingecko/coins_bitcoin_market_chart_usd_*.json")).encode()
            return 200, body, {"Content-Type": "application/json"}
        if path == "/cryptopanic/posts/":
            if query.get("auth_token", [""])[0] != self.cryptopanic_key:
                return 401, b'{"status":"Incomplete","info":"Token not found"}', {"Content-Type": "application/json"}
            return 200, json.dumps(self.cryptopanic_posts()).encode(), {"Content-Type": "application/json"}
        return 404, b"not found", {"Content-Type": "text/plain"}

