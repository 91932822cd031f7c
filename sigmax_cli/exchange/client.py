"""The ccxt client factory: the only module of sigmax that imports ccxt (inside functions).

:func:`create_exchange` builds a synchronous ccxt exchange with the rate limiter on, spot
only for Binance (no margin, futures or currency calls, so that public data needs no key),
optionally on the exchange's testnet (``sandbox``) and optionally pointed at another host
(``api_url``: an emulator on loopback, a proxy). :func:`exchange_from_settings` does the
same from a :class:`~sigmax_cli.settings.Settings`. Keys are passed to ccxt and nowhere
else: they are never logged nor put in an error message.

Every call into ccxt goes through :func:`sigmax_cli.exchange.errors.call` (or
:class:`~sigmax_cli.exchange.errors.RetryPolicy`), which maps ccxt's exceptions onto the
sigmax error tree and retries the temporary ones; :func:`load_markets` is that, for markets.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sigmax_cli.errors import ConfigError, ExchangeError
from sigmax_cli.exchange.errors import RetryPolicy

if TYPE_CHECKING:
    from sigmax_cli.settings import Settings

DEFAULT_TIMEOUT_MS = 10_000
SPOT_OPTIONS: dict[str, dict[str, Any]] = {
    "binance": {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchMargins": False,
        "fetchCurrencies": False,
    },
}
"""ccxt ``options`` per exchange id; other exchanges get ``{"defaultType": "spot"}``."""


def create_exchange(
    exchange_id: str = "binance",
    *,
    api_url: str | None = None,
    sandbox: bool = False,
    api_key: Any = None,
    api_secret: Any = None,
    api_password: Any = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Any:
    """A ccxt sync exchange (``ccxt.Exchange``) with ``enableRateLimit=True``.

    Args:
        exchange_id: a ccxt id (``binance``, ``kraken``, ...), case-insensitive.
        api_url: replace scheme and host of every REST URL (``exchange.urls["api"]``,
            the testnet URLs and the backup ccxt keeps when toggling sandbox mode), keeping
            each path: ``https://api.binance.com/api/v3`` -> ``http://127.0.0.1:8080/api/v3``.
            A path in ``api_url`` is put in front (``http://proxy/binance`` ->
            ``http://proxy/binance/api/v3``). The ``exchange_api_url`` setting.
        sandbox: use the exchange's testnet URLs (``set_sandbox_mode(True)``).
        api_key, api_secret, api_password: ``str`` or pydantic ``SecretStr``; ``None`` for
            public data only.
        timeout_ms: HTTP timeout per request, milliseconds.

    Raises:
        ConfigError: unknown exchange id, no testnet for it, or a malformed ``api_url``.
    """
    import ccxt

    ident = (exchange_id or "").strip().lower()
    if ident not in ccxt.exchanges:
        close = difflib.get_close_matches(ident, ccxt.exchanges, n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "see `python -c 'import ccxt; print(ccxt.exchanges)'`"
        )
        raise ConfigError(
            f"unknown exchange {exchange_id!r}", f"use a ccxt exchange id such as binance; {hint}"
        )
    base = _normalise_api_url(api_url) if api_url else None
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": int(timeout_ms),
        "options": dict(SPOT_OPTIONS.get(ident, {"defaultType": "spot"})),
    }
    for field, value in (("apiKey", api_key), ("secret", api_secret), ("password", api_password)):
        raw = _reveal(value)
        if raw:
            config[field] = raw
    exchange = getattr(ccxt, ident)(config)
    if sandbox:
        no_testnet = ConfigError(
            f"{ident} has no testnet (sandbox) URLs in ccxt",
            "use paper trading, or point SIGMAX_EXCHANGE_API_URL at a testnet you run",
        )
        if not exchange.urls.get("test"):
            raise no_testnet
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported:
            raise no_testnet from None
    if base is not None:
        for key in ("api", "test", "apiBackup"):
            if key in exchange.urls:
                exchange.urls[key] = rewrite_urls(exchange.urls[key], base)
    return exchange


def exchange_from_settings(
    settings: Settings,
    sandbox: bool = False,
    *,
    with_keys: bool = True,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> Any:
    """:func:`create_exchange` from settings: ``exchange``, ``exchange_api_url`` and, when
    ``with_keys``, ``api_key`` / ``api_secret`` / ``api_password`` (``SecretStr``).

    Public data (downloads, live candles) should pass ``with_keys=False``.
    """
    return create_exchange(
        settings.exchange,
        api_url=settings.exchange_api_url,
        sandbox=sandbox,
        api_key=settings.api_key if with_keys else None,
        api_secret=settings.api_secret if with_keys else None,
        api_password=settings.api_password if with_keys else None,
        timeout_ms=timeout_ms,
    )


def load_markets(
    exchange: Any, *, reload: bool = False, retry: RetryPolicy | None = None
) -> dict[str, Any]:
    """``exchange.load_markets()`` with errors translated and temporary ones retried.

    Returns:
        ccxt's markets, unified symbol -> market structure.

    Raises:
        TemporaryError: the exchange cannot be reached (after retries).
        ExchangeError: it answered, but with no market at all.
    """
    markets = (retry or RetryPolicy()).call(exchange, "load_markets", reload)
    if not markets:
        raise ExchangeError(
            f"{exchange.id} returned no markets",
            "check SIGMAX_EXCHANGE_API_URL points at the exchange's REST API",
        )
    return markets


def server_time_ms(exchange: Any, *, retry: RetryPolicy | None = None) -> int:
    """The exchange's clock in UTC ms (``fetch_time``), or the local clock when the
    exchange has no time endpoint.

    Raises:
        TemporaryError: the exchange cannot be reached (after retries).
    """
    if (getattr(exchange, "has", None) or {}).get("fetchTime"):
        value = (retry or RetryPolicy()).call(exchange, "fetch_time")
        if value is not None:
            return int(value)
    return int(exchange.milliseconds())


def require_market(exchange: Any, symbol: str) -> dict[str, Any]:
    """The loaded market of ``symbol`` (``BTC/USDT``).

    Raises:
        ConfigError: the exchange has no such market (close matches suggested).
    """
    markets = exchange.markets or {}
    if symbol in markets:
        return markets[symbol]
    close = difflib.get_close_matches(symbol.upper(), list(markets), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "symbols look like BTC/USDT"
    raise ConfigError(f"{exchange.id} has no market {symbol}", f"check --symbols; {hint}")


def require_timeframe(exchange: Any, timeframe: str) -> None:
    """Check that the exchange serves candles of ``timeframe``.

    Raises:
        ConfigError: unknown to the exchange, naming a few it knows.
    """
    known = list(getattr(exchange, "timeframes", None) or {})
    if timeframe in known:
        return
    sample = ", ".join(known[:8]) if known else "none"
    raise ConfigError(
        f"{exchange.id} has no {timeframe!r} candles",
        f"use one of its timeframes, e.g. {sample}",
    )


def rewrite_urls(value: Any, base: str) -> Any:
    """Copy of ``value`` (a URL string, or dicts/lists of them) with every absolute URL's
    scheme and host replaced by ``base`` (``scheme://host[:port][/prefix]``), paths kept."""
    if isinstance(value, dict):
        return {k: rewrite_urls(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_urls(v, base) for v in value]
    if isinstance(value, str):
        parts = urlsplit(value)
        if parts.scheme and parts.netloc:
            rest = parts.path + (f"?{parts.query}" if parts.query else "")
            return base + rest
    return value


def _normalise_api_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            f"exchange API URL {url!r} is not an http(s) base URL",
            "set SIGMAX_EXCHANGE_API_URL like http://127.0.0.1:8080 (scheme, host, optional path)",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _reveal(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    raw = getter() if callable(getter) else str(value)
    return raw or None
