"""``LiveFeed`` over the loopback Binance emulator, driven by a hand-moved clock.

The emulator and the feed share a :class:`ManualClock`: the emulator serves only bars that
have opened by then (the forming bar included, as Binance does) and the feed's waits move
the clock forward instead of sleeping.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.errors import ConfigError, TemporaryError
from sigmax_cli.exchange.client import create_exchange
from sigmax_cli.exchange.errors import RetryPolicy
from sigmax_cli.feeds import Feed
from sigmax_cli.live_feed import FeedStale, LiveFeed
from tests.support.binance_emulator import Fault, ManualClock

KLINES = "/api/v3/klines"
HOUR = 3_600_000
MINUTE = 60_000


def features(candles):
    """A causal feature function that lets the test see the window it was given."""
    return {"close": candles.close.tolist(), "open_ms": [float(t) for t in candles.ts]}


@pytest.fixture
def world(binance_emulator, data_dir):
    folder = data_dir / "ohlcv" / "binance_spot_freqtrade_2020-12_2021-07"
    btc = load_candles(folder / "BTC_USDT-1h.json")
    eth = load_candles(folder / "ETH_USDT-1h.json")
    binance_emulator.add_candles(btc)
    binance_emulator.add_candles(eth)
    clock = ManualClock(
        int(btc.ts[600]) + 30 * MINUTE
    )  # bar 600 is forming, 599 is the newest closed
    binance_emulator.clock = clock.now_ms
    exchange = create_exchange(api_url=binance_emulator.url)
    yield SimpleNamespace(
        emu=binance_emulator,
        btc=btc,
        eth=eth,
        clock=clock,
        ex=exchange,
        source={"BTC/USDT": btc, "ETH/USDT": eth},
    )
    exchange.close()


def make_feed(w, symbols=("BTC/USDT",), **kwargs):
    options = {
        "history": 50,
        "window": 100,
        "poll_interval_s": 600,
        "sleep": w.clock.sleep,
        "clock": w.clock.now_ms,
        "retry": RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001, sleep=w.clock.sleep),
    }
    options.update(kwargs)
    return LiveFeed(w.ex, list(symbols), "1h", features, **options)


def ts(c, lo, hi):
    return [int(t) for t in c.ts[lo:hi]]


def assert_bar_is_source(bar, source):
    i = int(source.ts.searchsorted(bar.ts_ms))
    assert int(source.ts[i]) == bar.ts_ms
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        source.open[i],
        source.high[i],
        source.low[i],
        source.close[i],
        source.volume[i],
    )
    assert bar.i == len(bar.features["close"]) - 1  # the newest bar of its window
    assert bar.features["close"][bar.i] == bar.close
    assert bar.features["open_ms"][bar.i] == bar.ts_ms


def test_is_a_feed_and_bounded_only_with_max_bars(world):
    feed = make_feed(world, ["BTC/USDT", "ETH/USDT"])
    members = [
        m for m in ("symbols", "timeframe", "steps", "bars_total", "data_files") if m in dir(Feed)
    ]
    assert all(hasattr(feed, m) for m in members) and len(members) >= 3
    assert feed.symbols == ["BTC/USDT", "ETH/USDT"] and feed.timeframe == "1h"
    assert feed.bars_total is None
    assert make_feed(world, ["BTC/USDT", "ETH/USDT"], max_bars=3).bars_total == 6


def test_yields_only_closed_bars_after_warm_up(world):
    feed = make_feed(world, ["BTC/USDT", "ETH/USDT"])
    stop = threading.Event()
    got = []
    for step in feed.steps(stop):
        got.append((step, world.clock.now_ms()))
        if len(got) == 3:
            stop.set()
    assert [s.ts_ms for s, _ in got] == ts(world.btc, 600, 603)  # warm-up bars (<= 599) not yielded
    for step, now in got:
        assert step.ts_ms + HOUR <= now  # closed when yielded: the forming bar never is
        assert [b.symbol for b in step.bars] == ["BTC/USDT", "ETH/USDT"]
        for bar in step.bars:
            assert_bar_is_source(bar, world.source[bar.symbol])
    assert len(got[0][0].bars[0].features["close"]) == 51  # 50 warm-up bars + the new one
    # one request per symbol at warm-up and per closed bar: idle polls ask nothing
    assert len(world.emu.requests(KLINES)) == 2 + 3 * 2
    assert max(world.clock.sleeps) <= 600
    files = feed.data_files()
    assert [(f["symbol"], f["bars"], f["first_ms"], f["last_ms"], f["path"]) for f in files] == [
        (s, 3, int(world.btc.ts[600]), int(world.btc.ts[602]), None)
        for s in ("BTC/USDT", "ETH/USDT")
    ]


def test_backfills_every_missed_bar_in_order_after_a_stall(world):
    feed = make_feed(world)
    stop = threading.Event()
    steps = feed.steps(stop)
    first = next(steps)
    assert first.ts_ms == world.btc.ts[600]
    world.clock.advance(5 * HOUR)  # the process was suspended for five hours
    missed = []
    for _ in range(5):
        missed.append((next(steps), world.clock.now_ms()))
    assert [s.ts_ms for s, _ in missed] == ts(world.btc, 601, 606)
    assert len({now for _, now in missed}) == 1  # all from one poll, no waiting in between
    for step, _ in missed:
        assert_bar_is_source(
            step.bars[0], world.btc
        )  # features computed up to each bar, not beyond
    stop.set()
    assert list(steps) == []


def test_backfills_after_a_network_outage(world):
    feed = make_feed(world)
    steps = feed.steps(threading.Event())
    next(steps)
    world.emu.fail(KLINES, status=503, times=14, body="")  # seven polls of two attempts fail
    got = [next(steps) for _ in range(3)]
    assert [s.ts_ms for s in got] == ts(world.btc, 601, 604)
    assert isinstance(feed.last_error, TemporaryError)
    assert world.emu.pending_faults(KLINES) == 0
    assert feed.late_bars == 0


def test_a_symbol_that_fails_holds_the_step_back_instead_of_losing_its_bar(world):
    feed = make_feed(world, ["BTC/USDT", "ETH/USDT"])
    steps = feed.steps(threading.Event())
    next(steps)
    # At the next due poll BTC succeeds but ETH's two attempts fail.
    world.emu.inject(KLINES, Fault(status=503, body=""), Fault(status=503, body=""), after=1)
    step = next(steps)
    assert step.ts_ms == world.btc.ts[601]
    assert [b.symbol for b in step.bars] == ["BTC/USDT", "ETH/USDT"]
    assert isinstance(feed.last_error, TemporaryError)


def test_exchange_gaps_are_skipped_not_filled_and_since_ms_backfills_after_a_restart(world):
    feed = make_feed(world, since_ms=int(world.btc.ts[540]), window=60)
    stop = threading.Event()
    steps = feed.steps(stop)
    got = [next(steps) for _ in range(59)]  # bars 541..599: the backlog since the last run
    assert [s.ts_ms for s in got] == ts(world.btc, 541, 600)
    assert any(
        b.ts_ms - a.ts_ms == 2 * HOUR for a, b in zip(got, got[1:], strict=False)
    )  # real gap
    assert max(len(s.bars[0].features["close"]) for s in got) == 60  # the rolling window
    for step in got:
        assert_bar_is_source(step.bars[0], world.btc)
    assert feed.data_files()[0]["bars"] == 59 and feed.data_files()[0]["gaps"] == 1
    stop.set()
    assert list(steps) == []


def test_a_stopped_feed_resumes_where_it_stopped(world):
    feed = make_feed(world)
    stop = threading.Event()
    steps = feed.steps(stop)
    assert next(steps).ts_ms == world.btc.ts[600]
    stop.set()
    assert list(steps) == []
    world.clock.advance(3 * HOUR)
    again = feed.steps(threading.Event())
    assert [next(again).ts_ms for _ in range(3)] == ts(world.btc, 601, 604)


def test_stale_feed_raises_a_clear_signal(world):
    feed = make_feed(world, stale_after_ms=30 * MINUTE)
    steps = feed.steps(threading.Event())
    next(steps)
    world.emu.fail(KLINES, status=503, times=1000, body="")
    with pytest.raises(FeedStale) as info:
        next(steps)
    stale = info.value.staleness
    assert stale.symbol == "BTC/USDT" and stale.last_bar_ms == world.btc.ts[600]
    assert stale.overdue_ms > 30 * MINUTE
    assert feed.staleness == stale
    sentence = info.value.sentence()
    assert sentence.startswith("no new 1h bar of BTC/USDT from binance for ")
    assert "last error: cannot reach binance" in sentence
    assert isinstance(info.value, TemporaryError)


def test_stale_feed_can_record_and_recover(world):
    feed = make_feed(world, stale_after_ms=30 * MINUTE, on_stale="record")
    steps = feed.steps(threading.Event())
    next(steps)
    world.emu.fail(KLINES, status=503, times=1000, body="")
    seen = []

    def network_back_once_stale(_seconds):
        if feed.staleness is not None and not seen:
            seen.append(feed.staleness)
            world.emu.clear_faults()

    world.clock.on_sleep = network_back_once_stale
    got = [next(steps) for _ in range(2)]
    assert seen and seen[0].symbol == "BTC/USDT"
    assert [s.ts_ms for s in got] == ts(world.btc, 601, 603)
    assert feed.staleness is None  # cleared by the fresh bars


def test_max_bars_ends_the_feed(world):
    feed = make_feed(world, max_bars=2)
    got = list(feed.steps(threading.Event()))
    assert [s.ts_ms for s in got] == ts(world.btc, 600, 602)
    assert feed.bars_total == 2


def test_a_set_stop_event_means_no_request(world):
    stop = threading.Event()
    stop.set()
    assert list(make_feed(world).steps(stop)) == []
    assert world.emu.requests() == []


def test_stop_during_a_wait_ends_the_feed_without_another_request(world):
    feed = make_feed(world)
    stop = threading.Event()
    steps = feed.steps(stop)
    next(steps)
    before = len(world.emu.requests())
    world.clock.on_sleep = lambda _s: stop.set()
    assert list(steps) == []
    assert len(world.emu.requests()) == before


def test_the_default_wait_wakes_up_on_stop(world):
    feed = make_feed(world, sleep=None, poll_interval_s=3600, since_ms=int(world.btc.ts[598]))
    stop, first = threading.Event(), threading.Event()
    got = []

    def consume():
        for step in feed.steps(stop):
            got.append(step.ts_ms)
            first.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    first.wait(30)
    stop.set()  # the consumer is now waiting up to half an hour for bar 600 to close
    thread.join(30)
    assert not thread.is_alive()
    assert got == [int(world.btc.ts[599])]


def test_unreachable_exchange_says_what_to_do():
    ex = create_exchange(api_url="http://127.0.0.1:1", timeout_ms=2000)
    sleeps = []
    feed = LiveFeed(
        ex,
        ["BTC/USDT"],
        "1h",
        features,
        retry=RetryPolicy(attempts=2, base_delay=0.001, sleep=sleeps.append),
    )
    with pytest.raises(TemporaryError) as info:
        next(feed.steps(threading.Event()))
    sentence = info.value.sentence()
    assert sentence.startswith("cannot reach binance public API at http://127.0.0.1:1/api/v3")
    assert sentence.endswith("; check the network or use --data for an offline replay.")


def test_unknown_symbol_is_a_config_error(world):
    with pytest.raises(ConfigError, match="binance has no market DOT/USDT"):
        next(make_feed(world, ["DOT/USDT"]).steps(threading.Event()))


def test_unreachable_since_is_set_on_failure_and_cleared_when_every_symbol_is_back(world):
    feed = make_feed(world)
    steps = feed.steps(threading.Event())
    next(steps)
    assert feed.unreachable_since_ms is None
    world.emu.fail(KLINES, status=503, times=4, body="")  # two polls of two attempts fail
    next(steps)
    assert feed.unreachable_since_ms is None  # recovered within the same pull
    assert isinstance(feed.last_error, TemporaryError)  # ...and the last error is kept for the record


def test_the_engine_watchdog_alerts_exchange_disconnect_and_reconnect(world, tmp_path, monkeypatch):
    """The feed's connectivity flag is set by hand here (a real outage only lasts while the
    generator polls); the watchdog thread, the dispatcher and the HTTP sink are real."""
    import time as _time

    import sigmax_cli.engine as engine_module
    from sigmax_cli.alerts.dispatcher import AlertDispatcher
    from sigmax_cli.alerts.webhook import WebhookChannel
    from sigmax_cli.brokers.paper import PaperBroker
    from sigmax_cli.engine import Engine, EngineConfig
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.risk.guard import build_guard
    from sigmax_cli.settings import RiskSettings
    from sigmax_cli.strategies.rules import RuleStrategy
    from tests.support.alert_sinks import HttpSink

    monkeypatch.setattr(engine_module, "WATCHDOG_S", 0.02)
    feed = make_feed(world)
    config = EngineConfig(run_id="wd", mode="paper", profile="p", quote="USDT", initial_equity=1000.0,
                          position_fraction=0.1, max_order_notional=100, max_position_notional=100, taker_fee=0.001,
                          slippage_bps=5, daily_loss_limit_pct=2)
    with HttpSink() as sink, Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        alerts = AlertDispatcher([WebhookChannel(sink.url)], background=False)
        engine = Engine(config=config, feed=feed, strategy=RuleStrategy(), broker=PaperBroker({"USDT": 1000.0}),
                        guard=build_guard(RiskSettings()), ledger=ledger, alerts=alerts)
        stop = threading.Event()
        done = engine._start_watchdog(stop)
        feed.unreachable_since_ms = 1
        deadline = _time.time() + 5
        while len(sink.received) < 1 and _time.time() < deadline:
            _time.sleep(0.01)
        feed.unreachable_since_ms = None
        while len(sink.received) < 2 and _time.time() < deadline:
            _time.sleep(0.01)
        done.set()
    texts = [body["text"] for _, body in sink.received]
    assert texts[0].startswith("[ERROR] wd: exchange unreachable")
    assert texts[1].startswith("[WARNING] wd: exchange reachable again")
