"""ccxt exceptions mapped once onto the sigmax error tree, and a retry that honours them.

:func:`translate` turns any ccxt exception into a :class:`~sigmax_cli.errors.SigmaxError`
grouped by what the operator must do (after freqtrade's exception groups)::

    ccxt                                          sigmax
    RequestTimeout, NetworkError,                 TemporaryError  (retry with back-off)
      ExchangeNotAvailable, OnMaintenance,
      DDoSProtection, InvalidNonce, and the rest
      of OperationFailed (exchange-side failure)
    RateLimitExceeded, HTTP 429 / 418             RateLimited     (retry_after: Retry-After)
    AuthenticationError, PermissionDenied,        AuthenticationError
      AccountSuspended
    InsufficientFunds                             InsufficientFunds
    InvalidOrder, OrderNotFound                   OrderRejected
    BadSymbol                                     ConfigError     (names the symbol)
    any other ccxt error                          ExchangeError

Messages are one sentence naming the exchange (and its API address for network errors)
with a fix; query strings and HTML pages are cut out of ccxt's text, and the exchange's
API key, secret and password are masked if ccxt ever echoed them.

:func:`call` (or :class:`RetryPolicy`) retries only :class:`TemporaryError` (and so
:class:`RateLimited`), with exponential back-off and full jitter, waiting at least the
server's ``Retry-After``; everything else is raised at once.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from sigmax_cli.errors import (
    AuthenticationError,
    ConfigError,
    ExchangeError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    SigmaxError,
    TemporaryError,
)
from sigmax_cli.logs import get_logger

T = TypeVar("T")
log = get_logger("retry")  # sigmax.retry

NETWORK_FIX = "check your network or SIGMAX_EXCHANGE_API_URL, then retry"
_MSG_RE = re.compile(r'"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_STATUS_RE = re.compile(r"(?<![\d.])(4\d\d|5\d\d)(?![\d.])")
_QUERY_RE = re.compile(r"\?[^\s]*")
_URL_RE = re.compile(r"https?://\S+")


def translate(
    exc: BaseException, exchange: Any = None, *, symbol: str | None = None
) -> SigmaxError:
    """Map one exception raised by ccxt onto the sigmax error tree (see module docstring).

    Args:
        exc: the exception (a :class:`SigmaxError` is returned unchanged).
        exchange: the ccxt exchange that raised it: its id names the exchange, its
            ``last_response_headers`` give ``Retry-After``, its keys are masked.
        symbol: the unified symbol of the call, named by a :class:`ConfigError` for
            ``BadSymbol``.

    Returns:
        The error to raise (``raise translate(exc, ex) from exc``).
    """
    if isinstance(exc, SigmaxError):
        return exc
    import ccxt

    name = getattr(exchange, "id", None) or _guess_id(exc)
    detail = _detail(exc, exchange, name)
    status = _status(exc)
    if isinstance(exc, ccxt.RateLimitExceeded) or (
        isinstance(exc, ccxt.DDoSProtection) and status in (418, 429)
    ):
        retry_after = retry_after_seconds(getattr(exchange, "last_response_headers", None))
        what = f"HTTP {status}" if status else "rate limit exceeded"
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        ban = " (418: the IP is banned for a while)" if status == 418 else ""
        return RateLimited(
            f"{name} is rate-limiting sigmax ({what}{wait}){ban}",
            "wait, then retry with fewer symbols or a lower request rate",
            retry_after=retry_after,
        )
    if isinstance(exc, ccxt.OnMaintenance):
        return TemporaryError(
            f"{name} is under maintenance ({detail})", "retry later; see the exchange's status page"
        )
    if isinstance(exc, ccxt.RequestTimeout):
        return TemporaryError(
            f"{name} did not answer in time at {api_url(exchange)} ({detail})", NETWORK_FIX
        )
    if isinstance(exc, ccxt.NetworkError):  # ExchangeNotAvailable, DDoSProtection, InvalidNonce too
        return TemporaryError(f"cannot reach {name} at {api_url(exchange)} ({detail})", NETWORK_FIX)
    if isinstance(exc, ccxt.OperationFailed):  # e.g. Binance -1000 / -1001 "internal error"
        return TemporaryError(
            f"{name} failed to process the request ({detail})",
            "retry later; see the exchange's status page if it persists",
        )
    if isinstance(exc, ccxt.AuthenticationError):  # PermissionDenied, AccountSuspended
        return AuthenticationError(
            f"{name} refused the API credentials ({detail})",
            "check SIGMAX_API_KEY and SIGMAX_API_SECRET, the key's permissions and IP allow-list",
        )
    if isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientFunds(
            f"{name} reports insufficient funds for the order ({detail})",
            "lower the order size or fund the account",
        )
    if isinstance(exc, ccxt.InvalidOrder):  # OrderNotFound too
        return OrderRejected(
            f"{name} rejected the order ({detail})",
            "check its price, amount and the market's precision and minimum notional",
        )
    if isinstance(exc, ccxt.BadSymbol):
        market = f"market {symbol}" if symbol else "market"
        return ConfigError(
            f"{name} has no {market} ({detail})",
            "check --symbols; symbols look like BTC/USDT",
        )
    if isinstance(exc, ccxt.BaseError):
        return ExchangeError(
            f"{name} returned an error ({detail})",
            "check the exchange's status and the request; rerun with -v for details",
        )
    return ExchangeError(
        f"unexpected failure talking to {name}: {type(exc).__name__}: {_scrub(str(exc), exchange)}",
        "rerun with -v for the traceback and report it",
    )


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), else ``None``."""
    if not headers:
        return None
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def api_url(exchange: Any) -> str:
    """The exchange's public REST base URL (``https://api.binance.com/api/v3``), for messages."""
    urls = getattr(exchange, "urls", None)
    api = urls.get("api") if isinstance(urls, dict) else None
    if isinstance(api, str):
        return api
    if isinstance(api, dict):
        for key in ("public", "rest", "spot"):
            if isinstance(api.get(key), str):
                return api[key]
        for value in api.values():
            if isinstance(value, str):
                return value
    return "its API"


def _guess_id(exc: BaseException) -> str:
    first = str(exc).split(" ", 1)[0]
    return first if first.isidentifier() else "the exchange"


def _status(exc: BaseException) -> int | None:
    match = _STATUS_RE.search(_URL_RE.sub("", str(exc)))
    return int(match.group(1)) if match else None


def _detail(exc: BaseException, exchange: Any, name: str) -> str:
    """ccxt's message made short and safe: no id prefix, query string, HTML or secret."""
    text = str(exc).strip()
    if text.startswith(name + " "):
        text = text[len(name) + 1 :]
    text = _QUERY_RE.sub("", text)
    msg = _MSG_RE.search(text)
    if msg:
        text = text[: text.find("{")].strip() + " " + msg.group(1)
    lowered = text.lower()
    for marker in ("<!doctype", "<html"):
        pos = lowered.find(marker)
        if pos >= 0:
            text = text[:pos].strip() + " [an HTML page instead of JSON]"
            break
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) > 200:
        text = text[:197] + "..."
    return _scrub(f"{type(exc).__name__}: {text}", exchange)


def _scrub(text: str, exchange: Any) -> str:
    for attr in ("apiKey", "secret", "password", "uid", "privateKey"):
        value = getattr(exchange, attr, None)
        if isinstance(value, str) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a :class:`TemporaryError`.

    Attempt ``k`` (0-based) that fails waits ``uniform(0, min(max_delay, base_delay * 2**k))``
    seconds (full jitter), at least ``retry_after`` of a :class:`RateLimited`. A
    ``retry_after`` above ``max_retry_after`` (an IP ban of hours) is raised at once instead
    of sleeping silently.

    Attributes:
        attempts: calls in all, first one included (1 = no retry).
        base_delay, max_delay, max_retry_after: seconds.
        sleep: the wait function (inject a recorder in tests).
        rng: returns a float in [0, 1) for the jitter.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int, error: SigmaxError | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        cap = min(self.max_delay, self.base_delay * (2**attempt))
        wait = self.rng() * cap
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, float(retry_after))
        return wait

    def run(self, fn: Callable[[], T], what: str = "exchange call") -> T:
        """Call ``fn`` until it returns, retrying only :class:`TemporaryError`.

        Raises:
            TemporaryError: still failing after ``attempts`` calls (the last error, its
                cause saying how many attempts were made).
            SigmaxError: any other error from ``fn``, at once.
        """
        attempts = max(1, int(self.attempts))
        for attempt in range(attempts):
            try:
                return fn()
            except TemporaryError as err:
                retry_after = getattr(err, "retry_after", None)
                if attempt + 1 >= attempts:
                    if attempts > 1:
                        err.cause = f"{err.cause}, still after {attempts} attempts"
                    raise
                if retry_after is not None and retry_after > self.max_retry_after:
                    raise
                wait = self.delay(attempt, err)
                log.info(  # shown with -v; the final failure is the error the user sees
                    "%s failed: %s; retry %d of %d in %.2f s",
                    what,
                    err.cause,
                    attempt + 1,
                    attempts - 1,
                    wait,
                )
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, exchange: Any, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """``exchange.<method_name>(*args, **kwargs)`` with ccxt errors translated and retried."""
        return self.run(
            lambda: invoke(exchange, method_name, *args, **kwargs),
            f"{getattr(exchange, 'id', 'exchange')} {method_name}",
        )


def invoke(exchange: Any, method_name: str, *args: Any, **kwargs: Any) -> Any:
    """One call of ``exchange.<method_name>``, a ccxt error raised as its :func:`translate`.

    The symbol named by a ``BadSymbol`` is the first positional argument when it looks like
    ``BASE/QUOTE``, else the ``symbol`` keyword.
    """
    import ccxt

    method = getattr(exchange, method_name)
    try:
        return method(*args, **kwargs)
    except ccxt.BaseError as exc:
        symbol = (
            args[0]
            if args and isinstance(args[0], str) and "/" in args[0]
            else kwargs.get("symbol")
        )
        raise translate(exc, exchange, symbol=symbol) from exc


def call(
    exchange: Any,
    method_name: str,
    *args: Any,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> Any:
    """Call a ccxt method, translating its errors and retrying temporary ones.

    ``call(ex, "fetch_ohlcv", "BTC/USDT", "1h", since=0, limit=1000)``. Only
    :class:`TemporaryError` (network, timeout, 5xx, maintenance, rate limits) is retried,
    up to ``attempts`` calls in all, with exponential back-off and full jitter between
    ``0`` and ``min(max_delay, base_delay * 2**k)`` seconds and never less than a
    :class:`RateLimited` error's ``retry_after``.

    Do not retry calls that are not idempotent (``create_order``): after a timeout or a
    5xx their outcome is unknown; pass ``attempts=1`` and reconcile instead.

    Raises:
        SigmaxError: the translated error (the last one when attempts are exhausted).
    """
    policy = RetryPolicy(attempts=attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep)
    return policy.call(exchange, method_name, *args, **kwargs)
