"""HTTP for research sources: one requests session with timeouts, retries with back-off,
a User-Agent, a body size cap and conditional GET.

Retries (urllib3 ``Retry``): connection errors, read timeouts and HTTP 429/500/502/503/504
are retried ``retries`` times with exponential back-off (``0.5 s * 2**(n-1)``, urllib3's
schedule: the first retry is immediate) and ``Retry-After`` honoured up to
``MAX_RETRY_AFTER_S``. After the last try the failure becomes a :class:`SourceError`.

Conditional GET (RFC 9110 §13.1): for a URL fetched before, the ``ETag`` and
``Last-Modified`` validators remembered in a :class:`ValidatorCache` (the ledger's
``http_cache`` table in production, see ``sigmax_cli.research.store``) are sent as
``If-None-Match`` / ``If-Modified-Since``; a ``304 Not Modified`` answer comes back as
``HttpResponse.not_modified``. Validators are remembered only when the caller says so
(after the body was parsed and stored), so a body that failed to parse is fetched again.

URLs may carry an API key in the query string (CryptoPanic): error messages and log lines
name a URL by :func:`redact_query` only.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sigmax_cli import __version__
from sigmax_cli.research.base import SourceError

USER_AGENT = f"sigmax/{__version__} (research) python-requests/{requests.__version__}"
RETRY_STATUSES = (429, 500, 502, 503, 504)
BACKOFF_FACTOR_S = 0.5
MAX_RETRY_AFTER_S = 30.0
MAX_BODY_BYTES = 20 * 1024 * 1024  # 20 MiB: a news feed is ~100 KB, a 365-day CoinGecko chart ~40 KB


def redact_query(url: str) -> str:
    """``url`` without its query string and credentials (``?***`` marks a dropped query)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


class _RedactQueries(logging.Filter):
    """Strip query strings from urllib3's own log lines (its retry warnings name the URL)."""

    _QUERY = re.compile(r"\?[^\s'\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._QUERY.sub("?***", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_filter_installed = threading.Lock()
_FILTER = _RedactQueries()


def _install_log_filter() -> None:
    with _filter_installed:
        logger = logging.getLogger("urllib3.connectionpool")
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


class ValidatorCache(Protocol):
    """Where ETag / Last-Modified validators live between runs (``url`` is the full URL)."""

    def get_validators(self, url: str) -> tuple[str | None, str | None] | None:
        """``(etag, last_modified)`` remembered for ``url``, or ``None``."""
        ...

    def put_validators(self, entries: list[tuple[str, str | None, str | None]]) -> None:
        """Remember ``(url, etag, last_modified)`` for each entry (upsert)."""
        ...


@dataclass(frozen=True)
class HttpResponse:
    """A successful answer (2xx or 304).

    Attributes:
        url: the URL requested (may hold a key: never print it; use ``label``).
        label: the URL as it may be shown (query redacted).
        status: HTTP status code.
        body: raw bytes (empty for 304).
        headers: response headers (case-insensitive mapping).
        not_modified: the server answered 304 to our validators.
    """

    url: str
    label: str
    status: int
    body: bytes
    headers: Mapping[str, str]
    not_modified: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    @property
    def validators(self) -> tuple[str, str | None, str | None]:
        """``(url, etag, last_modified)`` of this answer, for :meth:`ValidatorCache.put_validators`."""
        return self.url, self.headers.get("ETag"), self.headers.get("Last-Modified")


class _CappedRetry(Retry):
    """urllib3 ``Retry`` whose ``Retry-After`` sleep is capped at ``MAX_RETRY_AFTER_S``."""

    def get_retry_after(self, response):  # type: ignore[override]
        value = super().get_retry_after(response)
        return None if value is None else min(value, MAX_RETRY_AFTER_S)


class HttpClient:
    """GET with timeouts, retries, User-Agent, size cap and conditional GET. Thread-safe:
    each thread gets its own ``requests.Session``.

    Args:
        timeout_s: connect and read timeout per try, seconds.
        retries: retries after the first try (0 = one try only).
        cache: where conditional-GET validators are remembered; ``None`` disables them.
        backoff_factor_s: urllib3 back-off factor, seconds.
    """

    def __init__(self, timeout_s: float, retries: int, cache: ValidatorCache | None = None,
                 backoff_factor_s: float = BACKOFF_FACTOR_S) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.cache = cache
        self.backoff_factor_s = backoff_factor_s
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        _install_log_filter()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            retry = _CappedRetry(
                total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
                backoff_factor=self.backoff_factor_s, status_forcelist=RETRY_STATUSES,
                allowed_methods=frozenset({"GET"}), respect_retry_after_header=True, raise_on_status=False,
            )
            session = requests.Session()
            adapter = HTTPAdapter(max_retries=retry)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every session's connections."""
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, url: str, *, who: str, conditional: bool = False, accept: str | None = None) -> HttpResponse:
        """GET ``url``; ``who`` names the source in error messages.

        Args:
            conditional: send the remembered validators; a 304 comes back as ``not_modified``.
            accept: the ``Accept`` header.

        Raises:
            SourceError: timeout, connection failure, non-2xx status after the retries,
                an unsolicited 304, or a body over ``MAX_BODY_BYTES``.
        """
        label = redact_query(url)
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        sent_validators = False
        if conditional and self.cache is not None:
            remembered = self.cache.get_validators(url)
            if remembered:
                etag, last_modified = remembered
                if etag:
                    headers["If-None-Match"] = etag
                if last_modified:
                    headers["If-Modified-Since"] = last_modified
                sent_validators = bool(etag or last_modified)
        tries = self.retries + 1
        try:
            with self._session().get(url, headers=headers, timeout=(self.timeout_s, self.timeout_s),
                                     stream=True) as resp:
                if resp.status_code == 304:
                    if not sent_validators:
                        raise SourceError(f"{who}: {label} answered 304 Not Modified to an unconditional GET",
                                          "check the URL")
                    return HttpResponse(url, label, 304, b"", resp.headers, not_modified=True)
                if not 200 <= resp.status_code < 300:
                    reason = f" {resp.reason}" if resp.reason else ""
                    after = f" after {_tries(tries)}" if resp.status_code in RETRY_STATUSES and tries > 1 else ""
                    raise SourceError(f"{who}: {label} answered HTTP {resp.status_code}{reason}{after}",
                                      _fix_for_status(resp.status_code))
                body = _read_capped(resp, who, label)
                return HttpResponse(url, label, resp.status_code, body, resp.headers)
        except requests.exceptions.ConnectionError as exc:
            if isinstance(exc, requests.exceptions.Timeout) or _timed_out(exc):
                raise SourceError(f"{who}: {label} timed out after {self.timeout_s:g} s ({_tries(tries)})",
                                  "check the network or raise research.http_timeout_seconds") from None
            raise SourceError(f"{who}: cannot connect to {label} ({_connection_reason(exc)}, {_tries(tries)})",
                              "check the network and the URL") from None
        except requests.exceptions.Timeout:  # ReadTimeout on the last try
            raise SourceError(f"{who}: {label} timed out after {self.timeout_s:g} s ({_tries(tries)})",
                              "check the network or raise research.http_timeout_seconds") from None
        except requests.exceptions.RequestException as exc:
            raise SourceError(f"{who}: request to {label} failed ({type(exc).__name__})",
                              "check the URL") from None

    def get_json(self, url: str, *, who: str) -> Any:
        """GET ``url`` and decode a JSON body.

        Raises:
            SourceError: as :meth:`get`, or the body is HTML or not valid JSON.
        """
        import json

        resp = self.get(url, who=who, accept="application/json")
        head = resp.body[:512].lstrip().lower()
        if resp.content_type == "text/html" or head.startswith((b"<!doctype html", b"<html")):
            raise SourceError(f"{who}: {resp.label} answered an HTML page instead of JSON",
                              "the API may be down, blocked by a proxy, or the base URL is wrong")
        try:
            return json.loads(resp.body)
        except (ValueError, UnicodeDecodeError):
            raise SourceError(f"{who}: {resp.label} answered a body that is not valid JSON",
                              "the API may have changed or the base URL is wrong") from None

    def remember(self, validators: list[tuple[str, str | None, str | None]]) -> None:
        """Store validators of answers whose items were stored (no-op without a cache)."""
        keep = [v for v in validators if v[1] or v[2]]
        if self.cache is not None and keep:
            self.cache.put_validators(keep)


def _read_capped(resp: requests.Response, who: str, label: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise SourceError(f"{who}: {label} sent more than {MAX_BODY_BYTES // (1024 * 1024)} MiB",
                              "check the URL: that is not a news feed or API answer")
        chunks.append(chunk)
    return b"".join(chunks)


def _fix_for_status(status: int) -> str:
    if status in (401, 403):
        return "check the API key and the plan's permissions"
    if status == 404:
        return "check the URL or the coin/feed name"
    if status == 429:
        return "the source is rate-limiting: run less often"
    if status >= 500:
        return "the source is having trouble: it is retried on the next run"
    return "check the URL"


def _tries(n: int) -> str:
    return "1 try" if n == 1 else f"{n} tries"


def _timed_out(exc: Exception) -> bool:
    """A ConnectionError whose retries ran out on read timeouts (requests wraps urllib3's
    ``MaxRetryError(reason=ReadTimeoutError)`` as ConnectionError, not Timeout)."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError, TimeoutError

    inner = exc.args[0] if exc.args else None
    reason = inner.reason if isinstance(inner, MaxRetryError) else None
    # NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError in urllib3
    return isinstance(reason, TimeoutError) and not isinstance(reason, NewConnectionError)


def _connection_reason(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, reason in (("refused", "connection refused"), ("name or service", "unknown host"),
                           ("nodename nor servname", "unknown host"), ("reset", "connection reset"),
                           ("remotedisconnected", "closed without an answer"),
                           ("aborted", "connection aborted"), ("unreachable", "network unreachable")):
        if needle in text:
            return reason
    return "connection failed"
