"""Health checks against real services on loopback: a second redis-server started and stopped
by the test, PostgreSQL that refuses or never answers, and real ccxt talking real HTTP to
the Binance emulator (clock skew, timeouts, keys, key permissions, open orders).

The emulator serves the recorded Binance bodies of ../shared/data (ccxt's static
fetchBalance / fetchOpenOrders responses). ``/sapi/v1/account/apiRestrictions`` has no
recording there: its body below is the shape Binance documents, reduced to the fields read."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
import redis as redis_lib

from sigmax_cli.health.base import Status
from sigmax_cli.health.runner import run_checks
from tests.conftest import REDIS_URL
from tests.support.binance_emulator import BinanceEmulator, Fault, Request, Response
from tests.test_health_cli import LATENCY_UNGRADED
from tests.test_health_ledger import WIDE_LATENCY, by_key, settings_for, skipped_keys, start_run

CCXT_RESPONSES = ("exchange_api", "ccxt_static", "binance_response_spot_subset.json")
KEYS = {"api_key": "hk-test-key-4f1b2c", "api_secret": "hk-test-secret-9a8e7d"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def start_redis(tmp_path):
    """Start redis-server on a spare loopback port (extra args appended); stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(*extra: str) -> tuple[int, subprocess.Popen]:
        port = free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(tmp_path), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        for _ in range(200):  # wait until it accepts connections (set-up, not an assertion)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return port, proc
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


# -- Redis ---------------------------------------------------------------------------------
def test_redis_ok_then_stopped_is_critical(start_redis, ledger_url, cli, redis_prefix):
    port, proc = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    env = {"SIGMAX_DATABASE_URL": ledger_url, "SIGMAX_REDIS_URL": url, "SIGMAX_REDIS_PREFIX": redis_prefix}
    report = run_checks(settings_for(ledger_url, {"redis_url": url}, **WIDE_LATENCY), ["redis", "killswitch"])
    assert [r.status for r in report.results] == [Status.OK, Status.OK, Status.OK]
    assert by_key(report, "redis:latency").unit == "ms"
    assert by_key(report, "killswitch:engaged").message == "released (file and Redis)"

    proc.terminate()
    proc.wait(timeout=10)
    result = cli("health", "--check", "redis,killswitch", env=env)
    assert result.exit_code == 2
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"SIGMAX CRITICAL - redis: connection refused at {url}; killswitch: state UNKNOWN "
                            "(redis: ")
    assert "bots halt and none may start until it can be read" in first
    assert "[CRITICAL] killswitch:engaged" in result.stdout  # a remote engage could not be seen: fail closed
    assert result.stderr == ""


def test_redis_memory_against_maxmemory(start_redis):
    port, _ = start_redis()
    client = redis_lib.Redis(port=port)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", str(used * 2))
    url = f"redis://127.0.0.1:{port}/0"
    settings = settings_for("sqlite:///unused.db", {"redis_url": url}, memory_used_pct={"warning": 40, "critical": 60})
    memory = by_key(run_checks(settings, ["redis"]), "redis:memory")
    assert memory.status is Status.WARNING and memory.unit == "%" and 40 < memory.value <= 60
    client.config_set("maxmemory", "0")
    unlimited = by_key(run_checks(settings, ["redis"]), "redis:memory")
    assert unlimited.status is Status.OK and unlimited.unit == "B" and "no maxmemory" in unlimited.message


def test_redis_password_wrong_or_missing(start_redis, cli):
    port, _ = start_redis("--requirepass", "right-horse-battery")
    wrong = cli("health", "--check", "redis", env={"SIGMAX_REDIS_URL": f"redis://:wrong-pony-staple@127.0.0.1:{port}/0"})
    assert wrong.exit_code == 2
    assert wrong.stdout.startswith(f"SIGMAX CRITICAL - redis: redis://:***@127.0.0.1:{port}/0 refused the password")
    assert "wrong-pony-staple" not in wrong.stdout + wrong.stderr
    missing = cli("health", "--check", "redis", env={"SIGMAX_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert missing.exit_code == 2 and "needs a password" in missing.stdout
    right = cli("health", "--check", "redis", env={"SIGMAX_REDIS_URL": f"redis://:right-horse-battery@127.0.0.1:{port}/0",
                                                  **LATENCY_UNGRADED})
    assert right.exit_code == 0 and right.stdout.startswith("SIGMAX OK - 2 measurements OK in 1 checks |")
    assert "right-horse-battery" not in right.stdout + right.stderr


def test_redis_not_configured_is_skipped():
    report = run_checks(settings_for("sqlite:///unused.db"), ["redis"])
    assert report.results == [] and skipped_keys(report) == {"redis:latency"}


# -- PostgreSQL ------------------------------------------------------------------------------
def test_database_refusing_connections_is_critical(cli):
    port = free_port()  # nothing listens there
    url = f"postgresql://postgres:db-secret-pw@127.0.0.1:{port}/sigmax"
    result = cli("health", "--check", "ledger,heartbeat", env={"SIGMAX_DATABASE_URL": url})
    assert result.exit_code == 2
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"SIGMAX CRITICAL - ledger: cannot connect to postgresql://postgres:***@127.0.0.1:{port}"
                            "/sigmax (")
    assert "refused" in first.lower() and "unknown: heartbeat:age" in first
    assert "db-secret-pw" not in result.stdout + result.stderr


def test_database_that_never_answers_is_critical_within_its_timeout(cli):
    """A socket that accepts connections (the kernel's backlog) but never speaks."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        port = black_hole.getsockname()[1]
        env = {"SIGMAX_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/sigmax",
               "SIGMAX_HEALTH__TIMEOUT_S": "1.5"}
        result = cli("health", "--check", "ledger", "--json", env=env)
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    (item,) = doc["checks"]["ledger:latency"]
    assert doc["status"] == "fail" and item["status"] == "fail"
    assert item["output"] == "no answer within 1.5 s" or "timeout" in item["output"]


# -- exchange --------------------------------------------------------------------------------
def _exchange_settings(url: str, **extra):
    return settings_for("sqlite:///unused.db", {"exchange_api_url": url, **extra.pop("env", {})}, **extra)


@pytest.mark.parametrize("offset_ms, status, side", [
    (0, Status.OK, None),
    (5_000, Status.WARNING, "behind"),
    (-20_000, Status.CRITICAL, "ahead of"),
])
def test_clock_skew_against_the_emulator(data_dir, offset_ms, status, side):
    with BinanceEmulator(data_dir, clock=lambda: int(time.time() * 1000) + offset_ms) as emu:
        wide_skew = {"warning": 2_000, "critical": 10_000}
        settings = _exchange_settings(emu.url, env={"env": "testnet"}, clock_skew_ms=wide_skew, **WIDE_LATENCY)
        report = run_checks(settings, ["exchange"])
        assert [r.path for r in emu.requests()] == ["/api/v3/time"]
    latency, skew = by_key(report, "exchange:latency"), by_key(report, "exchange:clock_skew")
    assert latency.status is Status.OK and "binance time endpoint answered" in latency.message
    assert skew.status is status and skew.unit == "ms"
    if side:
        assert (skew.value > 0) == (offset_ms > 0) and f"ms {side} binance's" in skew.message
    assert skipped_keys(report) == {"exchange:account", "exchange:withdrawals"}


def test_exchange_timing_out_is_critical(data_dir):
    with BinanceEmulator(data_dir) as emu:
        emu.inject("/api/v3/time", Fault.dropped(delay_s=3.0))  # holds the request, then hangs up
        url = emu.url
        report = run_checks(_exchange_settings(url, exchange_timeout_s=2), ["exchange"])
    latency = by_key(report, "exchange:latency")
    assert latency.status is Status.CRITICAL
    assert latency.message.startswith(f"binance did not answer in time at {url}/api/v3")


def test_exchange_unreachable_rate_limited_and_misconfigured(data_dir):
    closed = f"http://127.0.0.1:{free_port()}"
    down = by_key(run_checks(_exchange_settings(closed), ["exchange"]), "exchange:latency")
    assert down.status is Status.CRITICAL and down.message.startswith(f"cannot reach binance at {closed}/api/v3")
    with BinanceEmulator(data_dir) as emu:
        emu.inject("/api/v3/time", Fault.rate_limited(retry_after=30))
        limited = by_key(run_checks(_exchange_settings(emu.url), ["exchange"]), "exchange:latency")
    assert limited.status is Status.WARNING and "rate-limiting" in limited.message
    bad = by_key(run_checks(_exchange_settings("ftp://example"), ["exchange"]), "exchange:latency")
    assert bad.status is Status.UNKNOWN and "is not an http(s) base URL" in bad.message


def _recorded(data_dir, method: str):
    doc = json.loads(data_dir.joinpath(*CCXT_RESPONSES).read_text())
    return doc["methods"][method][0]["httpResponse"]


def _private_routes(emu: BinanceEmulator, data_dir, *, extra_orders=(), withdrawals: bool | None = None):
    balance = _recorded(data_dir, "fetchBalance")
    orders = list(_recorded(data_dir, "fetchOpenOrders")) + list(extra_orders)

    def account(req: Request) -> Response:
        if req.headers.get("X-MBX-APIKEY") != KEYS["api_key"]:
            return Response.error(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return Response(200, balance)

    emu.route("GET", "/api/v3/account", account)
    emu.route("GET", "/api/v3/openOrders",
              lambda req: Response(200, [o for o in orders if o["symbol"] == req.params.get("symbol")]))
    if withdrawals is not None:
        emu.route("GET", "/sapi/v1/account/apiRestrictions", lambda req: Response(200, {
            "ipRestrict": False, "createTime": 1_700_000_000_000, "enableReading": True,
            "enableSpotAndMarginTrading": True, "enableWithdrawals": withdrawals}))


def test_account_with_keys_on_the_testnet(data_dir):
    with BinanceEmulator(data_dir) as emu:
        _private_routes(emu, data_dir)
        report = run_checks(_exchange_settings(emu.url, env={"env": "testnet", **KEYS}, **WIDE_LATENCY), ["exchange"])
        signed = [r for r in emu.requests("/api/v3/account")]
    account = by_key(report, "exchange:account")
    assert account.status is Status.OK and "accepted the API key" in account.message
    assert signed and "signature" in signed[0].params
    assert {sk.key: sk.reason for sk in report.skipped} == {
        "exchange:withdrawals": "the Binance spot testnet does not report API key permissions"}


def test_refused_key_is_critical(data_dir):
    with BinanceEmulator(data_dir) as emu:
        _private_routes(emu, data_dir)
        settings = _exchange_settings(emu.url, env={"env": "testnet", "api_key": "not-the-key", "api_secret": "x" * 12})
        account = by_key(run_checks(settings, ["exchange"]), "exchange:account")
    assert account.status is Status.CRITICAL and "refused the API credentials" in account.message
    assert "not-the-key" not in account.message


@pytest.mark.parametrize("allowed, status", [(True, Status.CRITICAL), (False, Status.OK)])
def test_withdrawal_permission_on_the_main_api(data_dir, allowed, status):
    with BinanceEmulator(data_dir) as emu:
        _private_routes(emu, data_dir, withdrawals=allowed)
        report = run_checks(_exchange_settings(emu.url, env={"env": "live", **KEYS}), ["exchange"])
        asked = emu.requests("/sapi/v1/account/apiRestrictions")
    withdrawals = by_key(report, "exchange:withdrawals")
    assert len(asked) == 1 and "signature" in asked[0].params
    assert (withdrawals.status, withdrawals.value) == (status, int(allowed))
    if allowed:
        assert "may withdraw funds" in withdrawals.message


# -- open orders -----------------------------------------------------------------------------
def _open_order(url: str, run_id: str, client_id: str, exchange_id: str | None, symbol: str = "LTC/USDT"):
    from sigmax_cli.ledger import Ledger

    with Ledger(url) as ledger:
        ledger.record_order({
            "client_order_id": client_id, "run_id": run_id, "exchange_order_id": exchange_id, "symbol": symbol,
            "side": "buy", "type": "limit", "time_in_force": "GTC", "reduce_only": False, "price": 50.0,
            "amount": 0.2, "filled": 0.0, "average": None, "fee": 0.0, "status": "open", "reason": "test",
            "created_ms": 1_699_380_855_570, "updated_ms": 1_699_380_855_570})


def test_open_orders_match_and_mismatch(data_dir, ledger_url):
    start_run(ledger_url, "tn-1", mode="testnet")
    start_run(ledger_url, "paper-1", mode="paper")
    _open_order(ledger_url, "tn-1", "x-R4BD3S82102a551f8c1642bba06728", "3811057334")  # the recorded one
    _open_order(ledger_url, "paper-1", "paper-only", None, "BTC/USDT")  # paper: never on an exchange
    with BinanceEmulator(data_dir) as emu:
        _private_routes(emu, data_dir)
        settings = settings_for(ledger_url, {"exchange_api_url": emu.url, "env": "testnet", **KEYS})
        matched = by_key(run_checks(settings, ["orders"]), "orders:mismatch")
        symbols = sorted(r.params["symbol"] for r in emu.requests("/api/v3/openOrders"))
    assert (matched.status, matched.value) == (Status.OK, 0)
    assert matched.message == "1 open in the ledger, 1 on the exchange, all matched"
    assert symbols == ["BTCUSDT", "ETHUSDT", "LTCUSDT"]  # the profile's symbols and the ledger's

    _open_order(ledger_url, "tn-1", "sigmax-lost-1", "424242", "BTC/USDT")
    manual = dict(_recorded(data_dir, "fetchOpenOrders")[0], orderId="777", clientOrderId="by-hand")
    with BinanceEmulator(data_dir) as emu:
        _private_routes(emu, data_dir, extra_orders=[manual])
        settings = settings_for(ledger_url, {"exchange_api_url": emu.url, "env": "testnet", **KEYS})
        mismatch = by_key(run_checks(settings, ["orders"]), "orders:mismatch")
    assert (mismatch.status, mismatch.value) == (Status.WARNING, 2)
    assert mismatch.message == ("2 open in the ledger, 2 on the exchange; 1 on the exchange unknown to the ledger "
                                "(LTC/USDT 777); 1 open in the ledger but not on the exchange (424242)")


def test_open_orders_skipped_without_keys_or_on_paper(ledger_url):
    paper = run_checks(settings_for(ledger_url), ["orders"])
    assert paper.skipped[0].reason == "env is paper: paper orders never reach an exchange"
    keyless = run_checks(settings_for(ledger_url, {"env": "testnet"}), ["orders"])
    assert keyless.skipped[0].reason.startswith("no API keys configured")
    assert keyless.status is Status.UNKNOWN  # asked for orders alone, nothing could be measured


def test_open_orders_with_the_exchange_down_is_critical(ledger_url):
    start_run(ledger_url, "tn-2", mode="testnet")
    settings = settings_for(ledger_url, {"exchange_api_url": f"http://127.0.0.1:{free_port()}", "env": "testnet",
                                         **KEYS})
    result = by_key(run_checks(settings, ["orders"]), "orders:mismatch")
    assert result.status is Status.CRITICAL and "cannot reach binance" in result.message


def test_real_redis_is_ok(redis_prefix):
    """The suite's own Redis (127.0.0.1:6379)."""
    settings = settings_for("sqlite:///unused.db", {"redis_url": REDIS_URL, "redis_prefix": redis_prefix},
                            **WIDE_LATENCY)
    report = run_checks(settings, ["redis", "killswitch"])
    assert report.status is Status.OK and len(report.results) == 3
