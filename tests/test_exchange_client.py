"""The ccxt client factory, the error mapping and the retry, against the loopback emulator."""

from __future__ import annotations

import pytest

from sigmax_cli.errors import (
    AuthenticationError,
    ConfigError,
    ExchangeError,
    InsufficientFunds,
    OrderRejected,
    RateLimited,
    TemporaryError,
)
from sigmax_cli.exchange.client import (
    create_exchange,
    exchange_from_settings,
    load_markets,
    rewrite_urls,
)
from sigmax_cli.exchange.errors import RetryPolicy, call, retry_after_seconds
from tests.support.binance_emulator import Fault

KLINES = "/api/v3/klines"


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _paths(value):
    from urllib.parse import urlsplit

    return sorted(urlsplit(u).path for u in _strings(value))


class Recorder:
    """A ``sleep`` that records the delays instead of waiting."""

    def __init__(self):
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def exchange(binance_emulator):
    ex = create_exchange(api_url=binance_emulator.url)
    yield ex
    ex.close()


# ------------------------------------------------------------------ factory
def test_api_url_rewrites_every_rest_url_and_keeps_paths():
    plain = create_exchange("binance")
    ex = create_exchange("binance", api_url="http://127.0.0.1:8123/")
    urls = list(_strings(ex.urls["api"]))
    assert len(urls) > 10
    assert all(u.startswith("http://127.0.0.1:8123/") for u in urls)
    assert _paths(ex.urls["api"]) == _paths(plain.urls["api"])
    assert ex.urls["api"]["public"] == "http://127.0.0.1:8123/api/v3"
    assert ex.urls["api"]["sapi"] == "http://127.0.0.1:8123/sapi/v1"


def test_spot_only_options_and_rate_limiter():
    ex = create_exchange("binance", timeout_ms=2500)
    assert ex.enableRateLimit is True
    assert ex.timeout == 2500
    assert ex.options["defaultType"] == "spot"
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    assert ex.options["fetchMargins"] is False
    assert ex.options["fetchCurrencies"] is False


def test_api_url_survives_sandbox_mode_both_ways():
    ex = create_exchange("binance", api_url="http://127.0.0.1:8123", sandbox=True)
    assert ex.isSandboxModeEnabled
    assert all(u.startswith("http://127.0.0.1:8123/") for u in _strings(ex.urls["api"]))
    assert ex.urls["api"]["public"] == "http://127.0.0.1:8123/api/v3"
    ex.set_sandbox_mode(False)  # back to the (rewritten) production URLs
    assert all(u.startswith("http://127.0.0.1:8123/") for u in _strings(ex.urls["api"]))
    assert "sapi" in ex.urls["api"]
    ex2 = create_exchange("binance", api_url="http://127.0.0.1:8123")
    ex2.set_sandbox_mode(True)  # toggled later: the testnet URLs were rewritten too
    assert all(u.startswith("http://127.0.0.1:8123/") for u in _strings(ex2.urls["api"]))


def test_api_url_with_path_prefix():
    urls = rewrite_urls(
        {"a": "https://api.x.com/api/v3", "b": {"c": "https://x.com/v1?x=1"}},
        "http://proxy:81/binance",
    )
    assert urls == {
        "a": "http://proxy:81/binance/api/v3",
        "b": {"c": "http://proxy:81/binance/v1?x=1"},
    }


@pytest.mark.parametrize("bad", ["127.0.0.1:8080", "ftp://host", "http://", "http://h/?q=1"])
def test_malformed_api_url_is_a_config_error(bad):
    with pytest.raises(ConfigError) as info:
        create_exchange("binance", api_url=bad)
    assert "SIGMAX_EXCHANGE_API_URL" in info.value.sentence()


def test_unknown_exchange_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        create_exchange("binanse")
    assert "unknown exchange 'binanse'" in info.value.sentence()
    assert "binance" in info.value.fix


def test_exchange_without_sandbox_is_a_config_error():
    with pytest.raises(ConfigError, match="no testnet"):
        create_exchange("kraken", sandbox=True)


def test_exchange_from_settings_uses_url_and_secret_keys(binance_emulator):
    from sigmax_cli.settings import load_settings

    settings = load_settings(
        overrides={
            "exchange_api_url": binance_emulator.url,
            "api_key": "KEY-abcdef",
            "api_secret": "SECRET-123456",
        }
    )
    ex = exchange_from_settings(settings)
    assert ex.apiKey == "KEY-abcdef" and ex.secret == "SECRET-123456"
    assert ex.urls["api"]["public"] == binance_emulator.url + "/api/v3"
    public = exchange_from_settings(settings, with_keys=False)
    assert not public.apiKey and not public.secret
    assert "SECRET-123456" not in repr(settings)


def test_load_markets_is_spot_only_and_fetches_only_exchange_info(exchange, binance_emulator):
    markets = load_markets(exchange)
    assert sorted(markets) == [
        "ADA/USDT",
        "BTC/USDT",
        "DOGE/USDT",
        "ETH/USDT",
        "LTC/USDT",
        "TRX/USDT",
        "XRP/USDT",
    ]
    assert all(m["spot"] for m in markets.values())
    assert [r.path for r in binance_emulator.requests()] == ["/api/v3/exchangeInfo"]


def test_load_markets_unreachable_is_temporary_with_a_fix():
    ex = create_exchange("binance", api_url="http://127.0.0.1:1", timeout_ms=2000)
    sleep = Recorder()
    with pytest.raises(TemporaryError) as info:
        load_markets(ex, retry=RetryPolicy(attempts=2, base_delay=0.001, sleep=sleep))
    sentence = info.value.sentence()
    assert sentence.startswith("cannot reach binance at http://127.0.0.1:1/api/v3")
    assert "still after 2 attempts" in sentence
    assert sentence.endswith("check your network or SIGMAX_EXCHANGE_API_URL, then retry.")
    assert len(sleep.delays) == 1


# --------------------------------------------------------------- translation
def _fail_once(exchange, emulator, fault: Fault, **kwargs):
    emulator.inject(KLINES, fault)
    with pytest.raises(Exception) as info:
        call(exchange, "fetch_ohlcv", "BTC/USDT", "1h", attempts=1, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("fault", "expected", "words"),
    [
        (Fault(status=503, body=""), TemporaryError, "cannot reach binance at"),
        (Fault(status=500), TemporaryError, "failed to process the request"),
        (
            Fault.binance_error(-1001, "Internal error; unable to process your request.", 500),
            TemporaryError,
            "failed to process the request",
        ),
        (Fault(status=502, html=True), TemporaryError, "HTML page instead of JSON"),
        (Fault.dropped(), TemporaryError, "cannot reach binance at"),
        (
            Fault.binance_error(-1, "System is under maintenance.", 503),
            TemporaryError,
            "under maintenance",
        ),
        (
            Fault.binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401),
            AuthenticationError,
            "refused the API credentials",
        ),
        (
            Fault.binance_error(-2015, "You don't have permission.", 403),
            AuthenticationError,
            "PermissionDenied",
        ),
        (
            Fault.binance_error(-2010, "This action is disabled on self account.", 400),
            AuthenticationError,
            "AccountSuspended",
        ),
        (
            Fault.binance_error(-2010, "Account has insufficient balance for requested action."),
            InsufficientFunds,
            "insufficient funds",
        ),
        (
            Fault.binance_error(-2010, "Filter failure: NOTIONAL"),
            OrderRejected,
            "rejected the order",
        ),
        (Fault.binance_error(-2013, "Order does not exist."), OrderRejected, "OrderNotFound"),
        (Fault.binance_error(-1013, "Some other bad request."), ExchangeError, "returned an error"),
    ],
)
def test_each_ccxt_error_class_is_translated(exchange, binance_emulator, fault, expected, words):
    err = _fail_once(exchange, binance_emulator, fault)
    assert type(err) is expected
    sentence = err.sentence()
    assert words in sentence
    assert sentence.startswith(("cannot reach binance", "binance ")) and sentence.endswith(".")
    assert "<html" not in sentence and "?" not in sentence.split(";")[0]  # no query string, no page
    assert err.fix


def test_temporary_errors_name_the_api_address(exchange, binance_emulator):
    err = _fail_once(exchange, binance_emulator, Fault(status=503, body=""))
    assert f"at {binance_emulator.url}/api/v3" in err.sentence()
    assert "SIGMAX_EXCHANGE_API_URL" in err.fix


def test_timeout_is_temporary(binance_emulator):
    ex = create_exchange(api_url=binance_emulator.url, timeout_ms=200)
    load_markets(ex)
    binance_emulator.inject(KLINES, Fault.slow(1.0))
    with pytest.raises(TemporaryError, match="did not answer in time"):
        call(ex, "fetch_ohlcv", "BTC/USDT", "1h", attempts=1)


@pytest.mark.parametrize("status", [429, 418])
def test_rate_limit_carries_retry_after(exchange, binance_emulator, status):
    err = _fail_once(exchange, binance_emulator, Fault.rate_limited(retry_after=7, status=status))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 7
    assert f"HTTP {status}" in err.sentence() and "retry after 7 s" in err.sentence()


def test_rate_limit_without_header_has_no_retry_after(exchange, binance_emulator):
    err = _fail_once(exchange, binance_emulator, Fault.rate_limited(retry_after=None))
    assert isinstance(err, RateLimited) and err.retry_after is None


def test_retry_after_header_forms():
    assert retry_after_seconds({"Retry-After": "12"}) == 12
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0  # in the past
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds(None) is None


def test_server_side_invalid_symbol_is_a_config_error_naming_it(exchange, binance_emulator):
    load_markets(exchange)
    info = binance_emulator.exchange_info
    info["symbols"] = [s for s in info["symbols"] if s["symbol"] != "TRXUSDT"]  # delisted meanwhile
    with pytest.raises(ConfigError) as err:
        call(exchange, "fetch_ohlcv", "TRX/USDT", "1h", attempts=3, sleep=Recorder())
    assert "binance has no market TRX/USDT" in err.value.sentence()
    assert "Invalid symbol" in err.value.sentence()
    assert len(binance_emulator.requests(KLINES)) == 1  # not retried


def test_keys_never_reach_the_message(binance_emulator):
    ex = create_exchange(
        api_url=binance_emulator.url, api_key="KEY-0123456789", api_secret="SECRET-9876543210"
    )
    load_markets(ex)
    binance_emulator.inject(
        "/api/v3/account",
        Fault.binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401),
    )
    with pytest.raises(AuthenticationError) as info:
        call(ex, "fetch_balance", attempts=1)
    text = info.value.sentence()
    assert (
        "KEY-0123456789" not in text and "SECRET-9876543210" not in text and "signature" not in text
    )
    request = binance_emulator.requests("/api/v3/account")[0]
    assert "signature" in request.params  # it was a signed call


# --------------------------------------------------------------------- retry
def test_retries_temporary_errors_then_succeeds(exchange, binance_emulator):
    binance_emulator.inject(
        KLINES, Fault(status=500), Fault(status=502, html=True), Fault.dropped()
    )
    sleep = Recorder()
    rows = call(
        exchange,
        "fetch_ohlcv",
        "BTC/USDT",
        "1h",
        attempts=5,
        base_delay=0.01,
        max_delay=0.02,
        sleep=sleep,
    )
    assert rows == []  # no candles registered: a valid, empty answer
    assert len(sleep.delays) == 3
    assert all(0 <= d <= 0.02 for d in sleep.delays)
    assert len(binance_emulator.requests(KLINES)) == 4


def test_retry_after_is_a_floor(exchange, binance_emulator):
    binance_emulator.inject(
        KLINES, Fault.rate_limited(retry_after=7), Fault.rate_limited(retry_after=2)
    )
    sleep = Recorder()
    call(exchange, "fetch_ohlcv", "BTC/USDT", "1h", attempts=3, base_delay=0.01, sleep=sleep)
    assert len(sleep.delays) == 2
    assert sleep.delays[0] >= 7 and sleep.delays[1] >= 2
    assert sleep.delays[0] <= 7.01 and sleep.delays[1] <= 2.02


def test_gives_up_after_attempts_with_the_translated_error(exchange, binance_emulator):
    binance_emulator.fail(KLINES, status=500, times=3)
    sleep = Recorder()
    with pytest.raises(TemporaryError) as info:
        call(exchange, "fetch_ohlcv", "BTC/USDT", "1h", attempts=3, base_delay=0.01, sleep=sleep)
    assert "still after 3 attempts" in info.value.sentence()
    assert len(sleep.delays) == 2
    assert len(binance_emulator.requests(KLINES)) == 3


@pytest.mark.parametrize(
    "fault",
    [
        Fault.binance_error(-2015, "Invalid API-key, IP, or permissions for action.", 401),
        Fault.binance_error(-2010, "Account has insufficient balance for requested action."),
        Fault.binance_error(-1013, "Some other bad request."),
    ],
)
def test_non_temporary_errors_are_not_retried(exchange, binance_emulator, fault):
    binance_emulator.inject(KLINES, fault)
    sleep = Recorder()
    with pytest.raises(ExchangeError) as info:
        call(exchange, "fetch_ohlcv", "BTC/USDT", "1h", attempts=5, base_delay=0.01, sleep=sleep)
    assert not isinstance(info.value, TemporaryError)
    assert sleep.delays == []
    assert len(binance_emulator.requests(KLINES)) == 1


def test_a_ban_longer_than_max_retry_after_is_raised_at_once(exchange, binance_emulator):
    binance_emulator.inject(KLINES, Fault.rate_limited(retry_after=7200, status=418))
    sleep = Recorder()
    policy = RetryPolicy(attempts=5, base_delay=0.01, max_retry_after=300, sleep=sleep)
    with pytest.raises(RateLimited) as info:
        policy.call(exchange, "fetch_ohlcv", "BTC/USDT", "1h")
    assert info.value.retry_after == 7200 and "IP is banned" in info.value.sentence()
    assert sleep.delays == []


def test_backoff_is_exponential_with_full_jitter_and_capped():
    top = RetryPolicy(base_delay=0.5, max_delay=3.0, rng=lambda: 0.999999)
    assert [round(top.delay(k), 3) for k in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    bottom = RetryPolicy(base_delay=0.5, max_delay=3.0, rng=lambda: 0.0)
    assert [bottom.delay(k) for k in range(3)] == [0.0, 0.0, 0.0]
    assert bottom.delay(0, RateLimited("x", retry_after=4)) == 4
