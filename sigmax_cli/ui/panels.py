"""Pure functions from an :class:`~sigmax_cli.snapshot.EngineSnapshot` to rich renderables.

Each panel function takes a snapshot and returns a :class:`rich.panel.Panel`; nothing here
keeps state, reads the clock or prints. :func:`build_layout` arranges the panels in a
:class:`rich.layout.Layout` with named regions (``header``, ``market``, ``positions``,
``orders``, ``risk``, ``fills``, ``events``) for :class:`sigmax_cli.ui.dashboard.Dashboard`;
:func:`plain_line` is the one-line equivalent for non-terminals (cron).

Units as in the snapshot: money in quote currency, amounts in base units, times UTC ms,
rendered in UTC. Colours carry meaning only alongside text (``NO_COLOR`` loses nothing):
profit green / loss red, trading state ACTIVE green / REDUCING yellow / HALTED red, event
levels WARNING yellow / ERROR red.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sigmax_cli.snapshot import EngineSnapshot, EventRow, FillRow

STATE_STYLES = {"ACTIVE": "bold green", "REDUCING": "bold yellow", "HALTED": "bold red"}
LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "cyan",
    "WARNING": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
}
MODE_STYLES = {"paper": "bold cyan", "testnet": "bold yellow", "live": "bold white on red"}
SIDE_STYLES = {"buy": "green", "sell": "red"}
NA = "-"


# --- formatting ---------------------------------------------------------------------------


def utc_minute(ts_ms: int | None) -> str:
    """``1621429200000`` -> ``"2021-05-19 13:00 UTC"``; ``"-"`` for ``None``."""
    if ts_ms is None:
        return NA
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _utc(ts_ms: int, fmt: str) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime(fmt)


def _bad(x: float | None) -> bool:
    return x is None or not math.isfinite(x)


def _significant(x: float, digits: int, min_decimals: int) -> str:
    decimals = digits - 1 - math.floor(math.log10(abs(x))) if x else min_decimals
    return f"{x:,.{min(10, max(min_decimals, decimals))}f}"


def fmt_price(x: float | None) -> str:
    """A price with six significant digits and at least two decimals, thousands separated.

    ``63512.4`` -> ``"63,512.40"``, ``1.234567`` -> ``"1.23457"``, ``0.0523`` ->
    ``"0.0523000"``; ``"-"`` for None/NaN/inf.
    """
    if _bad(x):
        return NA
    return _significant(x, 6, 2)


def fmt_money(x: float | None, signed: bool = False) -> str:
    """Quote-currency amount with two decimals: ``"10,234.12"`` (``"+12.30"`` if signed)."""
    if _bad(x):
        return NA
    return f"{x:+,.2f}" if signed else f"{x:,.2f}"


def fmt_qty(x: float | None) -> str:
    """Base amount with up to eight decimals, trailing zeros dropped: ``"0.0125"``."""
    if _bad(x):
        return NA
    text = f"{x:,.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _indicator(name: str, x: float | None) -> str:
    """RSI-like (points) with one decimal, moving averages as prices, anything else (MACD,
    z-scores) with four significant digits: ``-123.5``, ``0.001230``."""
    if _bad(x):
        return NA
    key = name.lower()
    if "rsi" in key:
        return f"{x:.1f}"
    if "ema" in key or "sma" in key:
        return fmt_price(x)
    return _significant(x, 4, 0)


def _pnl_text(x: float | None, signed: bool = True) -> Text:
    if _bad(x):
        return Text(NA)
    style = "green" if x > 0 else "red" if x < 0 else ""
    return Text(fmt_money(x, signed=signed), style=style)


def _progress(snapshot: EngineSnapshot) -> str:
    """``"12345/54820 (22.5%)"``, or ``"12345"`` for an unbounded (live) feed."""
    total = snapshot.bars_total
    if not total:
        return f"{snapshot.bars_done}"
    return f"{snapshot.bars_done}/{total} ({100.0 * snapshot.bars_done / total:.1f}%)"


def _speed(speed: float) -> str:
    return "max" if speed <= 0 else f"{speed:g}x"


def _empty(message: str) -> Text:
    return Text(message, style="dim italic")


class _Newest:
    """Renders the newest rows (the list's tail) that fit the height it is given.

    Inside a :class:`~rich.layout.Layout` region a panel has a fixed height, and rich crops
    from the bottom, which would hide the newest fill or event; this keeps the newest
    visible instead. Without a height (printed on its own) every row is shown.

    Args:
        rows: oldest first.
        build: rows -> renderable, one line per row plus ``overhead`` lines (a header).
        overhead: lines ``build`` adds besides the rows.
    """

    def __init__(
        self, rows: Sequence[Any], build: Callable[[Sequence[Any]], RenderableType], overhead: int
    ) -> None:
        self.rows = rows
        self.build = build
        self.overhead = overhead

    def _fitting(self, height: int | None) -> Sequence[Any]:
        if height is None:
            return self.rows
        fit = max(0, height - self.overhead)
        return self.rows[-fit:] if fit else []

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(self._fitting(options.height))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.build(self.rows))


# --- panels -------------------------------------------------------------------------------


def header_panel(snapshot: EngineSnapshot) -> Panel:
    """Mode, profile, run id, strategy; bar time (UTC), bars done/total, speed, bars/s."""
    s = snapshot
    line1 = Text.assemble(
        (s.mode.upper(), MODE_STYLES.get(s.mode.lower(), "bold")),
        "  profile ", (s.profile, "bold"),
        "  run ", (s.run_id, "bold"),
        "  strategy ", (s.strategy, "bold"),
    )
    line2 = Text.assemble(
        "bar ", (utc_minute(s.bar_ms), "bold"),
        "  bars ", (_progress(s), "bold"),
        "  speed ", (_speed(s.speed), "bold"),
        "  ", (f"{s.bars_per_second:,.0f}", "bold"), " bars/s",
    )
    return Panel(Group(line1, line2), title="sigmax", title_align="left")


def market_panel(snapshot: EngineSnapshot) -> Panel:
    """Per symbol: last price and every indicator of the snapshot (RSI 1 decimal)."""
    names: list[str] = []
    for row in snapshot.market:
        names.extend(k for k in row.indicators if k not in names)
    table = Table(expand=True, box=None, pad_edge=False)
    table.add_column("Symbol", style="bold", no_wrap=True)
    table.add_column("Last", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for row in snapshot.market:
        table.add_row(
            row.symbol, fmt_price(row.last_price),
            *(_indicator(n, row.indicators.get(n)) for n in names),
        )
    body = table if snapshot.market else _empty("no market data yet")
    return Panel(body, title="Market", title_align="left")


def positions_panel(snapshot: EngineSnapshot) -> Panel:
    """Per symbol: quantity, average entry, last price, unrealized (with %) and realized P&L."""
    table = Table(expand=True, box=None, pad_edge=False)
    for title in ("Symbol", "Qty", "Avg price", "Last", "Unrealized", "Realized"):
        table.add_column(title, justify="left" if title == "Symbol" else "right", no_wrap=True)
    for p in snapshot.positions:
        unreal = _pnl_text(p.unrealized_pnl)
        cost = p.qty * p.avg_price
        if cost > 0 and not _bad(p.unrealized_pnl):
            unreal.append(f" ({100.0 * p.unrealized_pnl / cost:+.1f}%)")
        table.add_row(
            Text(p.symbol, style="bold"), fmt_qty(p.qty), fmt_price(p.avg_price),
            fmt_price(p.last_price), unreal, _pnl_text(p.realized_pnl),
        )
    body = table if snapshot.positions else _empty("no open positions")
    return Panel(body, title="Positions", title_align="left")


def orders_panel(snapshot: EngineSnapshot) -> Panel:
    """Open orders: client id (its distinctive tail), symbol, side, type, limit price
    (``-`` for a market order), filled/amount in base units."""
    table = Table(expand=True, box=None, pad_edge=False)
    table.add_column("Order", no_wrap=True)
    for title in ("Symbol", "Side", "Type", "Price", "Filled/Amount"):
        numeric = title in ("Price", "Filled/Amount")
        table.add_column(title, justify="right" if numeric else "left", no_wrap=True)
    for o in snapshot.open_orders:
        oid = o.client_order_id
        table.add_row(
            oid if len(oid) <= 12 else "…" + oid[-11:], o.symbol,
            Text(o.side, style=SIDE_STYLES.get(o.side.lower(), "")),
            o.type, fmt_price(o.price),
            f"{fmt_qty(o.filled)}/{fmt_qty(o.amount)}",
        )
    body = table if snapshot.open_orders else _empty("no open orders")
    return Panel(body, title=f"Open orders ({len(snapshot.open_orders)})", title_align="left")


def fills_panel(snapshot: EngineSnapshot, limit: int = 50) -> Panel:
    """Recent fills (at most ``limit``), newest last and always visible: time, symbol, side,
    price, amount, fee (quote), liquidity."""
    fills = snapshot.fills[-limit:] if limit > 0 else []

    def build(rows: Sequence[FillRow]) -> Table:
        table = Table(expand=True, box=None, pad_edge=False)
        for title in ("Time", "Symbol", "Side", "Price", "Amount", "Fee", "Liq"):
            numeric = title in ("Price", "Amount", "Fee")
            table.add_column(title, justify="right" if numeric else "left", no_wrap=True)
        for f in rows:
            table.add_row(
                _utc(f.ts_ms, "%m-%d %H:%M"), f.symbol,
                Text(f.side, style=SIDE_STYLES.get(f.side.lower(), "")), fmt_price(f.price),
                fmt_qty(f.amount), fmt_price(f.fee), f.liquidity,
            )
        return table

    body = _Newest(fills, build, overhead=1) if fills else _empty("no fills yet")
    return Panel(body, title=f"Recent fills ({snapshot.fills_total} total)", title_align="left")


KILLSWITCH_STYLES = {"RELEASED": "green", "ENGAGED": "bold red", "UNKNOWN": "bold magenta"}


def risk_panel(snapshot: EngineSnapshot) -> Panel:
    """Equity, peak, drawdown %, daily P&L against the daily loss limit, trading state, and
    the symbols whose exits are blocked (``exit_blocked``), and the kill switch (ENGAGED /
    RELEASED / UNKNOWN, with why) when the run watches one."""
    risk = snapshot.risk
    if risk is None:
        return Panel(_empty("no risk state yet"), title="Risk", title_align="left")
    state = risk.trading_state.upper()
    style = STATE_STYLES.get(state, "bold")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("State", Text(state, style=style))
    if risk.state_reason:
        grid.add_row("Reason", Text(risk.state_reason))
    if risk.exits_blocked:
        grid.add_row("Exit blocked", Text(", ".join(risk.exits_blocked), style="bold red"))
    if risk.killswitch is not None:
        switch = Text(risk.killswitch, style=KILLSWITCH_STYLES.get(risk.killswitch, "bold"))
        if risk.killswitch != "RELEASED" and risk.killswitch_detail:
            switch.append(f" ({risk.killswitch_detail})")
        grid.add_row("Kill switch", switch)
    grid.add_row("Equity", fmt_money(risk.equity))
    grid.add_row("Peak", fmt_money(risk.peak_equity))
    grid.add_row("Drawdown", Text(f"{risk.drawdown_pct:.2f}%",
                                  style="red" if risk.drawdown_pct > 0 else ""))
    daily = _pnl_text(risk.daily_pnl)
    if risk.daily_loss_limit > 0:
        used = max(0.0, -risk.daily_pnl) / risk.daily_loss_limit * 100.0
        daily.append(f" of -{fmt_money(risk.daily_loss_limit)} limit ({used:.0f}% used)")
    grid.add_row("Daily P&L", daily)
    return Panel(grid, title="Risk", title_align="left", border_style=style.replace("bold ", ""))


def events_panel(snapshot: EngineSnapshot, limit: int = 50) -> Panel:
    """Recent events (at most ``limit``), newest last and always visible, level coloured."""
    events = snapshot.events[-limit:] if limit > 0 else []

    def build(rows: Sequence[EventRow]) -> Table:
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        for e in rows:
            level = e.level.upper()
            grid.add_row(
                _utc(e.ts_ms, "%m-%d %H:%M:%S"), Text(level, style=LEVEL_STYLES.get(level, "")),
                e.kind, e.message,
            )
        return grid

    body = _Newest(events, build, overhead=0) if events else _empty("no events yet")
    return Panel(body, title="Events", title_align="left")


def build_layout(snapshot: EngineSnapshot) -> Layout:
    """The whole dashboard: header; market across the full width (one line per symbol, up
    to 12); positions and open orders on the left, risk and recent fills on the right;
    events at the bottom. Region names: ``header``, ``market``, ``body``, ``left``,
    ``right``, ``positions``, ``orders``, ``risk``, ``fills``, ``events``."""
    layout = Layout(name="root")
    market_rows = min(12, max(1, len(snapshot.market)))
    layout.split_column(
        Layout(header_panel(snapshot), name="header", size=4),
        Layout(market_panel(snapshot), name="market", size=market_rows + 3),
        Layout(name="body", ratio=1),
        Layout(events_panel(snapshot), name="events", size=9),
    )
    layout["body"].split_row(Layout(name="left"), Layout(name="right"))
    layout["left"].split_column(
        Layout(positions_panel(snapshot), name="positions"),
        Layout(orders_panel(snapshot), name="orders"),
    )
    layout["right"].split_column(
        Layout(risk_panel(snapshot), name="risk", size=8),
        Layout(fills_panel(snapshot), name="fills"),
    )
    return layout


def plain_line(snapshot: EngineSnapshot) -> str:
    """One progress line without markup, for logs and cron::

        2021-05-19 13:00 UTC bars 12345/54820 (22.5%) equity 10234.12 dd 1.2% state ACTIVE
        orders 12 fills 10

    (one line; the reason follows the state in parentheses when there is one). Before the
    first bar the time reads ``-``; without risk state equity, dd and state read ``-``.
    """
    s = snapshot
    parts = [utc_minute(s.bar_ms), f"bars {_progress(s)}"]
    risk = s.risk
    if risk is None:
        parts.append(f"equity {NA} dd {NA} state {NA}")
    else:
        state = f"state {risk.trading_state.upper()}"
        if risk.state_reason:
            state += f" ({risk.state_reason})"
        if risk.exits_blocked:
            state += f" exit blocked: {','.join(risk.exits_blocked)}"
        parts.append(f"equity {risk.equity:.2f} dd {risk.drawdown_pct:.1f}% {state}")
    parts.append(f"orders {s.orders_total} fills {s.fills_total}")
    return " ".join(parts)
