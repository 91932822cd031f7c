"""Dashboard panels rendered to a recording console, the plain progress line, and the
throttling of the two observers under an injected clock."""

from __future__ import annotations

import io
import math
from dataclasses import replace

import pytest
from rich.console import Console

from sigmax_cli.snapshot import (
    EngineSnapshot,
    EventRow,
    FillRow,
    MarketRow,
    OrderRow,
    PositionRow,
    RiskRow,
)
from sigmax_cli.ui import panels
from sigmax_cli.ui.dashboard import Dashboard, PlainProgress
from sigmax_cli.ui.observer import EngineObserver, NullObserver

BAR_MS = 1_621_429_200_000  # 2021-05-19 13:00 UTC
HOUR = 3_600_000


def make_snapshot(**changes) -> EngineSnapshot:
    snap = EngineSnapshot(
        mode="paper", profile="conservative", run_id="r20210519-7f3a", strategy="rules",
        bar_ms=BAR_MS, bars_done=12345, bars_total=54820, speed=0.0, bars_per_second=84321.4,
        market=[
            MarketRow("BTC/USDT", 42123.5,
                      {"rsi": 41.23, "macd_hist": -3.14159, "ema_trend": 40210.123}),
            MarketRow("DOGE/USDT", 0.523412,
                      {"rsi": math.nan, "macd_hist": 0.00123, "ema_trend": 0.5}),
        ],
        positions=[
            PositionRow("BTC/USDT", 0.0125, 41000.0, 42123.5, 14.04, -3.2),
            PositionRow("ETH/USDT", 2.5, 2500.0, 2400.0, -250.0, 0.0),
        ],
        open_orders=[
            OrderRow("sx-r20210519-000123", "BTC/USDT", "sell", "limit", 43000.0, 0.0125, 0.005,
                     "open"),
            OrderRow("sx-000124", "ETH/USDT", "buy", "market", None, 1.5, 0.0, "open"),
        ],
        fills=[
            FillRow(BAR_MS - (5 - k) * HOUR, "BTC/USDT", "buy" if k % 2 else "sell", 41000.0 + k,
                    0.0125, 0.5125, "taker")
            for k in range(5)
        ],
        risk=RiskRow(10234.12, 10400.0, 1.596, -123.45, 200.0, "ACTIVE", None),
        events=[
            EventRow(BAR_MS, "INFO", "order", "first message"),
            EventRow(BAR_MS + 1000, "WARNING", "risk", "second message"),
            EventRow(BAR_MS + 2000, "ERROR", "broker", "third message"),
        ],
        orders_total=12, fills_total=10,
    )
    return replace(snap, **changes)


def render(renderable, width: int = 140, height: int | None = None) -> str:
    console = Console(record=True, width=width, height=height or 25, color_system=None)
    console.print(renderable, height=height)
    return console.export_text()


def style_of(renderable, needle: str):
    """The style of the rendered segment that holds ``needle``."""
    console = Console(width=140, force_terminal=True, color_system="truecolor")
    for seg in console.render(renderable):
        if needle in seg.text:
            return seg.style
    raise AssertionError(f"{needle!r} not rendered")


# --- panels -------------------------------------------------------------------------------


def test_header_panel():
    text = render(panels.header_panel(make_snapshot()))
    for part in ("PAPER", "profile conservative", "run r20210519-7f3a", "strategy rules",
                 "bar 2021-05-19 13:00 UTC", "bars 12345/54820 (22.5%)", "speed max",
                 "84,321 bars/s"):
        assert part in text
    live = render(panels.header_panel(make_snapshot(
        mode="live", bar_ms=None, bars_total=None, speed=10.0, bars_per_second=0.2)))
    assert "LIVE" in live and "bar -" in live and "bars 12345 " in live and "speed 10x" in live
    assert style_of(panels.header_panel(make_snapshot(mode="live")), "LIVE").bgcolor.name == "red"


def test_market_panel_formats_prices_and_indicators():
    text = render(panels.market_panel(make_snapshot()))
    lines = text.splitlines()
    header = next(line for line in lines if "Symbol" in line)
    assert header.split()[1:-1] == ["Symbol", "Last", "rsi", "macd_hist", "ema_trend"]
    btc = next(line for line in lines if "BTC/USDT" in line).split()
    assert btc[1:-1] == ["BTC/USDT", "42,123.50", "41.2", "-3.142", "40,210.12"]
    doge = next(line for line in lines if "DOGE/USDT" in line).split()
    assert doge[1:-1] == ["DOGE/USDT", "0.523412", "-", "0.001230", "0.500000"]
    assert "no market data yet" in render(panels.market_panel(make_snapshot(market=[])))


def test_positions_panel_colours_pnl():
    snap = make_snapshot()
    text = render(panels.positions_panel(snap))
    btc = next(line for line in text.splitlines() if "BTC/USDT" in line)
    assert btc.split()[1:-1] == [
        "BTC/USDT", "0.0125", "41,000.00", "42,123.50", "+14.04", "(+2.7%)", "-3.20"
    ]
    eth = next(line for line in text.splitlines() if "ETH/USDT" in line)
    assert "2.5 " in eth and "-250.00 (-4.0%)" in eth
    assert style_of(panels.positions_panel(snap), "+14.04").color.name == "green"
    assert style_of(panels.positions_panel(snap), "-250.00").color.name == "red"
    assert "no open positions" in render(panels.positions_panel(make_snapshot(positions=[])))


def test_orders_panel():
    snap = make_snapshot()
    text = render(panels.orders_panel(snap))
    assert "Open orders (2)" in text
    limit = next(line for line in text.splitlines() if "BTC/USDT" in line).split()
    assert limit[1:-1] == ["…0519-000123", "BTC/USDT", "sell", "limit", "43,000.00", "0.005/0.0125"]
    market = next(line for line in text.splitlines() if "ETH/USDT" in line).split()
    assert market[1:-1] == ["sx-000124", "ETH/USDT", "buy", "market", "-", "0/1.5"]
    assert style_of(panels.orders_panel(snap), "sell").color.name == "red"
    assert "no open orders" in render(panels.orders_panel(make_snapshot(open_orders=[])))


def test_fills_panel_newest_last_and_limited():
    text = render(panels.fills_panel(make_snapshot()))
    assert "Recent fills (10 total)" in text
    prices = [line.split()[5] for line in text.splitlines() if "BTC/USDT" in line]
    assert prices == ["41,000.00", "41,001.00", "41,002.00", "41,003.00", "41,004.00"]
    assert "05-19 08:00" in text and "taker" in text and "0.512500" in text
    last_two = render(panels.fills_panel(make_snapshot(), limit=2))
    assert "41,002.00" not in last_two and "41,003.00" in last_two and "41,004.00" in last_two
    assert "no fills yet" in render(panels.fills_panel(make_snapshot(fills=[])))


def test_fills_panel_shows_the_newest_when_cut_short():
    # a Layout region gives the panel a fixed height: rows must drop from the top
    text = render(panels.fills_panel(make_snapshot()), height=5)  # border 2 + header 1 = 2 rows
    assert "41,004.00" in text and "41,003.00" in text and "41,002.00" not in text


@pytest.mark.parametrize(
    ("state", "colour"), [("ACTIVE", "green"), ("REDUCING", "yellow"), ("HALTED", "red")]
)
def test_risk_panel_state_colour(state, colour):
    risk = RiskRow(10234.12, 10400.0, 1.596, -123.45, 200.0, state, None)
    panel = panels.risk_panel(make_snapshot(risk=risk))
    style = style_of(panel, state)
    assert style.color.name == colour and style.bold


def test_risk_panel_numbers_and_reason():
    risk = RiskRow(10234.12, 10400.0, 1.596, -123.45, 200.0, "HALTED", "daily loss limit reached")
    text = render(panels.risk_panel(make_snapshot(risk=risk)))
    assert "Equity     10,234.12" in text
    assert "Peak       10,400.00" in text
    assert "Drawdown   1.60%" in text
    assert "Daily P&L  -123.45 of -200.00 limit (62% used)" in text
    assert "Reason     daily loss limit reached" in text
    assert "no risk state yet" in render(panels.risk_panel(make_snapshot(risk=None)))
    gain = RiskRow(10500.0, 10500.0, 0.0, 80.0, 200.0, "ACTIVE", None)
    gain_text = render(panels.risk_panel(make_snapshot(risk=gain)))
    assert "+80.00 of -200.00 limit (0% used)" in gain_text


def test_events_panel_newest_last_with_level_colours():
    snap = make_snapshot()
    text = render(panels.events_panel(snap))
    assert text.index("first message") < text.index("second message") < text.index("third message")
    assert "05-19 13:00:02 ERROR   broker third message" in text
    assert style_of(panels.events_panel(snap), "WARNING").color.name == "yellow"
    assert style_of(panels.events_panel(snap), "ERROR").color.name == "red"
    cut = render(panels.events_panel(snap), height=4)  # two rows fit
    assert "first message" not in cut and "third message" in cut


def test_build_layout_has_named_regions_and_renders_everything():
    layout = panels.build_layout(make_snapshot())
    for name in ("header", "market", "body", "left", "right", "positions", "orders", "risk",
                 "fills", "events"):
        assert layout[name].name == name
    assert layout["market"].size == 2 + 3  # one line per symbol, header, borders
    text = render(layout, width=140, height=45)
    lines = text.splitlines()
    assert len(lines) == 45 and max(len(line) for line in lines) == 140
    for part in ("bars 12345/54820 (22.5%)", "42,123.50", "+14.04 (+2.7%)", "43,000.00",
                 "41,004.00", "ACTIVE", "10,234.12", "third message"):
        assert part in text, part


# --- plain line ---------------------------------------------------------------------------


def test_plain_line():
    assert panels.plain_line(make_snapshot()) == (
        "2021-05-19 13:00 UTC bars 12345/54820 (22.5%) equity 10234.12 dd 1.6% state ACTIVE "
        "orders 12 fills 10"
    )
    halted = RiskRow(9000.0, 10400.0, 13.46, -300.0, 200.0, "HALTED", "max drawdown")
    assert panels.plain_line(make_snapshot(risk=halted)).endswith(
        "equity 9000.00 dd 13.5% state HALTED (max drawdown) orders 12 fills 10"
    )
    start = make_snapshot(bar_ms=None, bars_done=0, bars_total=None, risk=None, orders_total=0,
                          fills_total=0)
    assert panels.plain_line(start) == "- bars 0 equity - dd - state - orders 0 fills 0"


# --- observers ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Factory:
    """A snapshot factory that counts its calls and reports ``bars_done``."""

    def __init__(self, total: int | None = 100) -> None:
        self.calls = 0
        self.bars_done = 0
        self.total = total

    def __call__(self) -> EngineSnapshot:
        self.calls += 1
        return make_snapshot(bars_done=self.bars_done, bars_total=self.total)


def test_observers_implement_the_protocol():
    for obs in (Dashboard(Console(record=True)), PlainProgress(io.StringIO()), NullObserver()):
        assert isinstance(obs, EngineObserver)
    NullObserver().on_step(lambda: pytest.fail("NullObserver must not build snapshots"))


def test_dashboard_redraws_at_most_refresh_per_second():
    clock = FakeClock()
    console = Console(record=True, width=140, height=45, color_system=None)
    factory = Factory(total=100)
    with Dashboard(console, refresh_per_second=4, clock=clock, screen=False) as dash:
        dash.on_start(make_snapshot(bars_done=0, bars_total=100))
        assert dash.redraws == 1
        for k in range(1, 17):  # 16 steps, 1/8 s apart: 2 s of wall clock
            clock.t = k * 0.125
            factory.bars_done = k
            dash.on_step(factory)
        assert factory.calls == 8  # at 0.25, 0.5, ..., 2.0 s: 4 per second
        assert dash.snapshot.bars_done == 16
        clock.t = 2.125
        dash.on_event(EventRow(BAR_MS, "INFO", "order", "filled"))
        dash.on_step(factory)
        assert factory.calls == 8  # INFO does not bypass the throttle
        dash.on_event(EventRow(BAR_MS, "WARNING", "risk", "halted"))
        dash.on_step(factory)
        assert factory.calls == 9  # a warning shows at once
        clock.t = 2.25
        dash.on_step(factory)
        assert factory.calls == 9
        dash.on_finish(make_snapshot(bars_done=99, bars_total=100))
        assert dash.snapshot.bars_done == 99 and dash.redraws == 11
    # a non-terminal console gets the final frame when the Live display stops
    assert "bars 99/100 (99.0%)" in console.export_text()


def test_plain_progress_prints_on_percent_marks_and_at_the_end():
    clock, out, factory = FakeClock(), io.StringIO(), Factory(total=1000)
    progress = PlainProgress(out, every_seconds=60, every_pct=25, poll_seconds=1, clock=clock)
    progress.on_start(make_snapshot(bars_done=0, bars_total=1000))
    for k in range(1, 101):  # 10 bars per step, 2 steps per second
        clock.t = k * 0.5
        factory.bars_done = 10 * k
        progress.on_step(factory)
    progress.on_event(EventRow(BAR_MS, "INFO", "order", "filled"))
    progress.on_event(EventRow(BAR_MS, "warning", "risk", "daily loss limit reached"))
    progress.on_finish(make_snapshot(bars_done=1000, bars_total=1000))
    assert factory.calls == 50  # once per poll second, not once per step
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "start paper run r20210519-7f3a strategy rules profile conservative: 1000 bars"
    )
    # 25 % is crossed at step 25 (t=12.5 s) and seen at the next poll (t=13 s, 260 bars)
    percents = [line.split()[5] for line in lines[1:5]]
    assert percents == ["(26.0%)", "(50.0%)", "(76.0%)", "(100.0%)"]
    assert lines[5] == "2021-05-19 13:00 UTC WARNING risk: daily loss limit reached"
    assert lines[6] == panels.plain_line(make_snapshot(bars_done=1000, bars_total=1000))
    assert len(lines) == 7


def test_plain_progress_prints_every_n_seconds_without_a_total():
    clock, out, factory = FakeClock(), io.StringIO(), Factory(total=None)
    progress = PlainProgress(out, every_seconds=10, every_pct=10, clock=clock)
    progress.on_start(make_snapshot(bars_total=None))
    for k in range(1, 36):
        clock.t = float(k)
        factory.bars_done = k
        progress.on_step(factory)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(": live bars")
    assert [line.split()[4] for line in lines[1:]] == ["10", "20", "30"]
