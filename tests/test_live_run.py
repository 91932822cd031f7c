"""Whole live runs (``prepare_live`` + ``run_live``) in this process against the Binance
emulator, on a market clock the test moves by hand: every wait of the bot (feed polls,
back-offs) advances it, so 500 ticks of real BTC/USDT 5m candles take seconds.

The strategy here is a test strategy that alternates buying and selling (a real
``Strategy`` implementation: the rule strategy trades too rarely to exercise the broker in
a few hundred bars)."""

from __future__ import annotations

import json
import random
import threading
import urllib.request
from collections import Counter

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.ledger import Ledger
from sigmax_cli.live import LiveOptions, prepare_live, run_live
from sigmax_cli.settings import load_settings
from sigmax_cli.strategies.base import Signal
from tests.conftest import DATA, REDIS_URL
from tests.support.binance_emulator import Fault, ManualClock
from tests.support.binance_orders import TEST_KEY, TEST_SECRET, spot_exchange

FIVE_MIN = 300_000
STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "cancelled",
          "EXPIRED": "expired", "REJECTED": "rejected"}


class FlipStrategy:
    """Buys every ``every``-th bar when flat, sells the bar after."""

    name = "flip"
    warmup = 2

    def __init__(self, every: int = 4) -> None:
        self.every = every

    def features(self, candles):
        return {"close": candles.close.tolist()}

    def on_bar(self, bar, position):
        if position.qty <= 0 and (bar.ts_ms // FIVE_MIN) % self.every == 0:
            return Signal(1.0, "flip buy")
        if position.qty > 0:
            return Signal(0.0, "flip sell")
        return None

    def params(self):
        return {"name": self.name, "every": self.every}


@pytest.fixture(scope="module")
def btc():
    full = load_candles(DATA / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-5m.json")
    return full.slice(None, int(full.ts[4000]))


@pytest.fixture
def world(data_dir, btc):
    clock = ManualClock(int(btc.ts[3000]) + 1000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms,
                                 balances={"USDT": [10_000.0, 0.0], "BTC": [0.0, 0.0], "ETH": [0.0, 0.0]})
    yield emu, account, clock
    emu.stop()


def settings(tmp_path, emu, ledger_url=None, **sections):
    risk = {"max_order_notional": 5_000.0, "max_position_notional": 5_000.0, "max_total_notional": 9_000.0,
            "max_orders_per_minute": 100, "max_api_errors_per_minute": 1_000, "cooldown_minutes": 0,
            "max_consecutive_losses": 1_000, "daily_loss_limit_pct": 50.0, "weekly_loss_limit_pct": 90.0,
            "max_drawdown_pct": 90.0, "max_slippage_bps": 10_000.0, "stale_data_bars": 50,
            **sections.pop("risk", {})}
    live = {"rate_limit_ms": 1, "clock_sync_seconds": 0, "poll_seconds": 300, "timeout_seconds": 0.3,
            "recv_window_ms": 300, "retry_base_seconds": 0.01, "retry_max_seconds": 0.05, "reconcile_every_ticks": 25,
            **sections.pop("live", {})}
    overrides = {"exchange_api_url": emu.url, "api_key": TEST_KEY, "api_secret": TEST_SECRET,
                 "symbols": ["BTC/USDT"], "timeframe": "5m", "env": "testnet", "risk": risk, "live": live,
                 "strategy": {"position_fraction": 0.3}, **sections}
    if ledger_url:
        overrides["database_url"] = ledger_url
    return load_settings(home=tmp_path / "home", overrides=overrides)


def run(s, clock, ticks, strategy=None, **options):
    plan = prepare_live(s, LiveOptions(max_ticks=ticks, **options))
    plan.strategy = strategy or FlipStrategy()
    return run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)


def inject_random_faults(emu, rng, rates):
    """About ``rates[path]`` of the next requests to each path fail: 5xx, an HTML page,
    429/418 with Retry-After, a dropped connection, or a reply slower than the timeout."""
    kinds = [lambda: Fault(status=503), lambda: Fault(status=500), lambda: Fault(status=502, html=True),
             lambda: Fault.rate_limited(retry_after=1), lambda: Fault.rate_limited(retry_after=2, status=418),
             lambda: Fault.dropped(), lambda: Fault.dropped(), lambda: Fault.slow(0.25)]
    weights = [3, 2, 2, 2, 1, 3, 3, 1]
    for path, rate in rates.items():
        seq = [rng.choices(kinds, weights)[0]() if rng.random() < rate else None for _ in range(3000)]
        emu.inject(path, *seq)


def ledger_rows(url, table, where=""):
    from sqlalchemy import text

    with Ledger(url) as ledger, ledger.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(f"select * from {table} {where}")).mappings()]


def test_soak_500_ticks_with_faults_ledger_equals_exchange_and_no_duplicate(world, tmp_path):
    emu, account, clock = world
    rng = random.Random(20261121)
    s = settings(tmp_path, emu, live={"timeout_seconds": 0.2, "recv_window_ms": 200})
    plan = prepare_live(s, LiveOptions(max_ticks=500))
    plan.strategy = FlipStrategy()
    # ~10 % of all requests: fewer on orders (each order fault that loses the request costs a
    # real recvWindow wait before the resend), more on the rest
    inject_random_faults(emu, rng, {"/api/v3/order": 0.06, "/api/v3/account": 0.12, "/api/v3/myTrades": 0.12,
                                    "/api/v3/klines": 0.12, "/api/v3/openOrders": 0.12})
    for _ in range(40):  # about one order in ten loses its answer after the exchange took it
        account.after_accept.append(rng.choice([None] * 8 + ["drop", "error", ("timeout", 0.25)]))
    account.thin_market.extend(rng.choice([1.0] * 9 + [0.5]) for _ in range(400))
    result = run_live(plan, threading.Event(), clock=clock.now_ms, sleep=clock.sleep)

    summary = result.summary
    assert summary.status == "completed" and result.ticks == 500
    faults = sum(1 for r in emu.log if r.fault)
    assert 0.07 < faults / len(emu.log) < 0.14 and result.exchange.errors  # the faults were real and were seen
    assert summary.orders > 100

    # zero duplicates: one exchange order per client order id, however often it was sent
    per_id = Counter(o["clientOrderId"] for o in account.orders.values())
    assert per_id and max(per_id.values()) == 1
    posted = Counter(r.params.get("newClientOrderId") for r in emu.log if r.method == "POST")
    assert sum(posted.values()) > len(per_id)  # some orders were sent more than once, none created twice

    url = s.ledger_url
    orders = {r["client_order_id"]: r for r in ledger_rows(url, "orders")}
    for o in account.orders.values():
        row = orders[o["clientOrderId"]]
        assert row["status"] == STATUS[o["status"]], o
        assert row["filled"] == pytest.approx(o["executed"])
        assert row["exchange_order_id"] == str(o["orderId"])
    for cid, row in orders.items():
        if cid not in per_id:
            assert row["status"] == "rejected"  # refused or never placed: not on the exchange

    fills = ledger_rows(url, "fills")
    assert Counter(f["trade_id"] for f in fills) == Counter(str(t["id"]) for t in account.trades)
    trades = {str(t["id"]): t for t in account.trades}
    usdt = btc_qty = 0.0
    for f in fills:
        t = trades[f["trade_id"]]
        qty, fee = float(t["qty"]), float(t["commission"])
        assert f["price"] == pytest.approx(float(t["price"]))
        # the ledger keeps the traded amount and the commission in the asset charged, once
        assert f["amount"] == qty and f["fee"] == fee and f["fee_currency"] == t["commissionAsset"]
        base_fee = fee if t["commissionAsset"] == "BTC" else 0.0
        quote_fee = fee if t["commissionAsset"] == "USDT" else 0.0
        if t["isBuyer"]:
            usdt -= f["price"] * f["amount"] + quote_fee
            btc_qty += f["amount"] - base_fee
        else:
            usdt += f["price"] * f["amount"] - quote_fee
            btc_qty -= f["amount"] + base_fee
    assert account.balances["USDT"][0] + account.balances["USDT"][1] == pytest.approx(10_000.0 + usdt, abs=1e-6)
    assert account.balances["BTC"][0] + account.balances["BTC"][1] == pytest.approx(btc_qty, abs=1e-9)
    assert result.summary.final_equity == pytest.approx(summary.final_equity)
    # the ledger equals the exchange: the two-way reconciliation (every 25 ticks) saw no difference
    events = ledger_rows(url, "events")
    assert [e["message"] for e in events if e["kind"] == "reconcile.discrepancy"] == []


def test_api_error_burst_pauses_trading_then_it_resumes(world, tmp_path):
    emu, account, clock = world
    s = settings(tmp_path, emu, risk={"max_api_errors_per_minute": 3, "cooldown_minutes": 10})
    hits = {"n": 0}

    def storm(_seconds):
        hits["n"] += 1
        if hits["n"] == 4:
            emu.fail("/api/v3/account", status=503, times=6)

    clock.on_sleep = storm
    result = run(s, clock, 12)
    kinds = [e["kind"] for e in ledger_rows(s.ledger_url, "events")]
    assert "risk.api_error_burst" in kinds and "risk.resumed.api_error_burst" in kinds
    assert kinds.index("risk.api_error_burst") < kinds.index("risk.resumed.api_error_burst")
    assert "exchange.down" in kinds and "exchange.connected" in kinds
    assert result.summary.trading_state == "ACTIVE"


def test_restart_backfills_missed_bars_without_trading_them(world, tmp_path):
    emu, account, clock = world
    s = settings(tmp_path, emu)
    first = run(s, clock, 4)
    clock.advance(20 * FIVE_MIN)  # the bot was down for 20 bars
    posts_before = sum(1 for r in emu.log if r.method == "POST")
    second = run(s, clock, 22)
    assert second.summary.first_bar_ms == first.summary.last_bar_ms + FIVE_MIN  # no bar skipped
    events = ledger_rows(s.ledger_url, "events", f"where run_id = '{second.run_id}'")
    assert any(e["kind"] == "feed.backfill" for e in events)
    stale = [e for e in events if e["kind"] == "risk.denied.stale_signal"]
    assert stale  # signals on backfilled bars were denied, not sent
    new_orders = ledger_rows(s.ledger_url, "orders", f"where run_id = '{second.run_id}'")
    first_live = second.summary.last_bar_ms - 2 * FIVE_MIN  # the bars that closed while it ran
    assert all(o["created_ms"] >= first_live for o in new_orders)
    assert sum(1 for r in emu.log if r.method == "POST") - posts_before == len(new_orders)


def test_a_stalled_feed_is_reported_and_its_missed_bars_come_in_order(world, tmp_path):
    emu, account, clock = world
    s = settings(tmp_path, emu)
    polls = {"n": 0}

    def stall(_seconds):
        polls["n"] += 1
        if polls["n"] == 3:
            emu.fail("/api/v3/klines", status=503, times=15)  # 5 polls of 3 tries fail

    clock.on_sleep = stall
    result = run(s, clock, 12, strategy=FlipStrategy(every=1000))
    equity = ledger_rows(s.ledger_url, "equity", f"where run_id = '{result.run_id}' order by ts_ms")
    times = [e["ts_ms"] for e in equity]
    assert len(times) == 12 and all(b - a == FIVE_MIN for a, b in zip(times, times[1:], strict=False))
    stale = [e for e in ledger_rows(s.ledger_url, "events") if e["kind"] == "feed.stale"]
    assert len(stale) == 1 and "the data feed was stalled" in stale[0]["message"]


def test_metrics_are_served_and_heartbeats_reach_redis(world, tmp_path, redis_prefix):
    import socket

    import redis

    emu, account, clock = world
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = settings(tmp_path, emu, redis_url=REDIS_URL, redis_prefix=redis_prefix)
    scraped: dict[str, str] = {}
    client = redis.Redis.from_url(REDIS_URL)

    def scrape(_seconds):
        if "text" not in scraped and account.trades:
            scraped["text"] = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            keys = list(client.scan_iter(f"{redis_prefix}heartbeat:*"))
            scraped["beat"] = client.get(keys[0]).decode() if keys else ""

    clock.on_sleep = scrape
    result = run(s, clock, 8, metrics_port=port)
    text = scraped["text"]
    assert 'sigmax_orders_total{side="buy",symbol="BTC/USDT"}' in text
    assert "sigmax_fills_total" in text and "sigmax_exchange_latency_seconds_bucket" in text
    assert 'sigmax_trading_state{state="ACTIVE"} 1.0' in text and "sigmax_equity " in text
    from prometheus_client.parser import text_string_to_metric_families

    from sigmax_cli.observability.metrics import series_names

    published = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {n for n in published if not n.endswith("_created")} <= series_names()  # the catalogue lists them all
    assert 'sigmax_risk_limit_ratio{rule="max_drawdown"}' in text and "sigmax_last_tick_timestamp_seconds " in text
    assert "sigmax_killswitch_state 0.0" in text  # RELEASED
    assert json.loads(scraped["beat"])["status"] == "running"
    key = f"{redis_prefix}heartbeat:testnet:{socket.gethostname()}:{result.run_id}"
    final = json.loads(client.get(key))
    assert final["status"] == "stopped" and final["run_id"] == result.run_id and 0 < client.ttl(key) <= 300
    with pytest.raises(OSError):  # the metrics server is gone with the run
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_kill_switch_engaged_mid_run_halts_and_cancels_the_open_order(world, tmp_path):
    """No timing in here: the switch is engaged from inside the feed's third wait (the fake
    clock's sleep, in the engine's own thread), and the engine reads the switch before every
    step (a stat of the local flag, no wall-time throttle), so the very next bar is HALTED.
    The run then ticks on to --max-ticks and must end ``halted``, not ``completed``."""
    from sigmax_cli.risk.killswitch import KillSwitch
    from tests.support.binance_orders import connect

    emu, account, clock = world
    connect(emu).create_order("BTC/USDT", "limit", "buy", 0.01, 9_000.0, {"clientOrderId": "manual-order-9"})
    s = settings(tmp_path, emu, live={"unknown_orders": "adopt"})
    polls = {"n": 0}

    def engage(_seconds):
        polls["n"] += 1
        if polls["n"] == 3:
            KillSwitch(s.home).engage("drill", "ops@test")
            emu.clear_log()

    clock.on_sleep = engage
    result = run(s, clock, 8)
    assert polls["n"] >= 3  # the engage did happen mid-run
    assert result.summary.trading_state == "HALTED" and result.summary.status == "halted"
    assert [o["status"] for o in account.orders.values() if o["clientOrderId"] == "manual-order-9"] == ["CANCELED"]
    assert not [r for r in emu.log if r.method == "POST"]  # nothing placed after the engage
    rows = {r["client_order_id"]: r["status"] for r in ledger_rows(s.ledger_url, "orders")}
    assert rows["manual-order-9"] == "cancelled"
    assert [r["status"] for r in ledger_rows(s.ledger_url, "runs")] == ["halted"]
    assert [e["kind"] for e in ledger_rows(s.ledger_url, "events", "where kind like 'risk.kill%'")] == \
        ["risk.kill_switch"]


def test_live_dashboard_shows_the_exchange_beside_the_paper_panels():
    from rich.console import Console

    from sigmax_cli.brokers.live import ExchangeStatus
    from sigmax_cli.snapshot import EngineSnapshot, RiskRow
    from sigmax_cli.ui.live_panels import live_layout

    snapshot = EngineSnapshot(mode="testnet", profile="conservative", run_id="testnet-x", strategy="rules",
                              bar_ms=1_614_556_800_000, bars_done=3, bars_total=None, speed=0.0, bars_per_second=0.0,
                              risk=RiskRow(10_000.0, 10_000.0, 0.0, 0.0, 200.0, "ACTIVE", None))
    status = ExchangeStatus("binance", "testnet", "degraded", 12, 8.4, 95.2, {"temporary": 2}, "timeout")
    console = Console(record=True, width=140, height=40)
    console.print(live_layout(snapshot, status))
    text = console.export_text()
    assert "Exchange" in text and "binance TESTNET  degraded" in text
    assert "latency p50 8 ms p99 95 ms  errors 2 (temporary 2)" in text
    for panel in ("Market", "Positions", "Open orders", "Risk", "Recent fills", "Events"):
        assert panel in text


def test_an_order_whose_fate_the_exchange_cannot_tell_blocks_its_symbol_and_is_recorded(world, tmp_path):
    """The first buy's request is lost, and every lookup of it fails until the exchange can
    be asked again: the run records a critical order.unknown event, sends nothing else for
    BTC/USDT meanwhile, and once a lookup past the deadline finds nothing, records the order
    as never placed and trades on."""
    emu, account, clock = world
    s = settings(tmp_path, emu, live={"retry_attempts": 2})
    emu.inject("/api/v3/order", Fault.dropped(), *(Fault(status=503) for _ in range(4)))
    result = run(s, clock, 12)
    events = ledger_rows(s.ledger_url, "events", f"where run_id = '{result.run_id}'")
    unknown = [e for e in events if e["kind"] == "order.unknown"]
    assert len(unknown) == 1 and unknown[0]["level"] == "critical" and "cannot tell" in unknown[0]["message"]
    posts = [r for r in emu.log if r.method == "POST" and r.path == "/api/v3/order"]
    first = posts[0].params["newClientOrderId"]
    assert sum(1 for r in posts if r.params.get("newClientOrderId") == first) == 1  # never re-sent
    orders = {r["client_order_id"]: r for r in ledger_rows(s.ledger_url, "orders")}
    assert orders[first]["status"] == "rejected" and orders[first]["reason"] == "never reached the exchange"
    assert account.by_client_id(first) == [] and len(account.orders) > 0  # it did not exist; trading went on
    later = [r for r in orders.values() if r["client_order_id"] != first]
    assert later and min(r["created_ms"] for r in later) >= orders[first]["updated_ms"]  # blocked until settled


def test_the_acceptance_tolerance_setting_reaches_the_broker(world, tmp_path, monkeypatch):
    """``live.accept_tolerance_ms`` (default 1000: Binance refuses requests timestamped 1000 ms
    or more ahead of its clock) is what the broker adds to a lost request's deadline."""
    emu, _account, _clock = world
    default = prepare_live(settings(tmp_path, emu), LiveOptions(max_ticks=1))
    monkeypatch.setenv("SIGMAX_LIVE__ACCEPT_TOLERANCE_MS", "2500")  # as an operator sets it
    from_env = prepare_live(settings(tmp_path, emu), LiveOptions(max_ticks=1))
    for plan in (default, from_env):
        plan.broker.clock_offset_ms = lambda: -300  # the local clock 300 ms ahead, the same for both
        plan.exchange.close()
    assert (default.broker.accept_tolerance_ms, from_env.broker.accept_tolerance_ms) == (1000, 2500)
    assert default.broker.acceptance_deadline(1_000_000, 5000) == 1_000_000 + 5000 + 300 + 1000
    assert from_env.broker.acceptance_deadline(1_000_000, 5000) == 1_000_000 + 5000 + 300 + 2500


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _until(condition, timeout_s: float = 90.0) -> bool:
    """Poll ``condition`` (real time) until true or ``timeout_s``; a generous limit, not a speed assert."""
    import time

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(__import__("shutil").which("prometheus") is None,
                    reason="prometheus missing: apt-get install prometheus (.ci/run installs it)")
def test_a_real_prometheus_fires_and_resolves_the_kill_switch_alert(world, tmp_path):
    """Debian's Prometheus, on a free port, loads the exported rules and scrapes this run's
    --metrics-port. Engaging the kill switch makes SigmaxKillSwitchEngaged fire (read through
    Prometheus's HTTP API); releasing it resolves the alert. The steps happen inside the fake
    clock's sleeps (the engine's thread), each waiting for what Prometheus has seen."""
    import subprocess

    import yaml

    from sigmax_cli.observability.export import files
    from sigmax_cli.risk.killswitch import KillSwitch

    emu, account, clock = world
    port, prom_port = _free_port(), _free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "sigmax-rules.yml").write_text(files()["prometheus/sigmax-rules.yml"])
    config = yaml.safe_load(files()["prometheus/prometheus.yml"])
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(prom_dir / "sigmax-rules.yml")]
    config["scrape_configs"] = [c for c in config["scrape_configs"] if c["job_name"] == "sigmax-run"]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def get(path: str) -> dict:
        try:
            return json.loads(urllib.request.urlopen(f"{api}/{path}", timeout=5).read())
        except OSError:
            return {}

    def scraped_switch() -> str | None:
        result = get("query?query=sigmax_killswitch_state").get("data", {}).get("result", [])
        return result[0]["value"][1] if result else None

    def alert_state() -> str | None:
        alerts = get("alerts").get("data", {}).get("alerts", [])
        return next((a["state"] for a in alerts if a["labels"]["alertname"] == "SigmaxKillSwitchEngaged"), None)

    def local_switch() -> str:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return next(line.split()[1] for line in text.splitlines() if line.startswith("sigmax_killswitch_state "))

    s = settings(tmp_path, emu)
    seen: list[str] = []
    answered: dict[str, bool] = {}

    def query_dashboards() -> None:
        """Every dashboard query, run on this Prometheus while the run is scraped."""
        from urllib.parse import quote

        from sigmax_cli.observability.export import dashboards

        for board in dashboards().values():
            for panel in board["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$instance", f"127.0.0.1:{port}")
                    doc = get(f"query?query={quote(expr)}")
                    answered[target["expr"]] = doc.get("status") == "success" and bool(doc["data"]["result"])
                    if doc.get("status") != "success":
                        answered[target["expr"] + " (failed)"] = False

    def step(_seconds):
        phase = len(seen)
        if phase == 0 and account.trades:  # orders and fills exist for the dashboards' queries
            assert _until(lambda: scraped_switch() == "0"), "Prometheus never scraped the run"
            assert alert_state() is None
            KillSwitch(s.home).engage("drill", "ops@test")
            seen.append("engaged")
        elif phase == 1 and local_switch() == "1.0":  # the run has published it; Prometheus follows
            assert _until(lambda: alert_state() == "firing"), "the kill switch alert did not fire"
            seen.append("firing")
            KillSwitch(s.home).release("drill over", "ops@test")
        elif phase == 2 and local_switch() == "0.0":
            assert _until(lambda: alert_state() is None), "the kill switch alert did not resolve"
            seen.append("resolved")
            query_dashboards()

    proc = subprocess.Popen(["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}",
                             f"--storage.tsdb.path={prom_dir / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(prom_dir / "prometheus.log", "w"))
    try:
        assert _until(lambda: bool(get("status/buildinfo"))), (prom_dir / "prometheus.log").read_text()[-2000:]
        clock.on_sleep = step
        run(s, clock, 30, metrics_port=port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert seen == ["engaged", "firing", "resolved"]
    assert not [e for e in answered if e.endswith(" (failed)")]  # every dashboard query ran
    # those on the run's own metrics return series (health's need node_exporter's textfile, not
    # scraped here; this run has no exchange errors or rejections; recording rules first run 30 s in;
    # the batch jobs' pushed metrics are queried in tests/test_signals_tail.py through a Pushgateway)
    run_side = [e for e in answered if not any(w in e for w in ("sigmax_health", "node_", "error", "rejections",
                                                                "sigmax:", "sigmax_signal", "sigmax_job"))]
    assert len(run_side) > 10 and all(answered[e] for e in run_side), [e for e in run_side if not answered[e]]
