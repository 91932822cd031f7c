"""`sigmax monitor`: the bots that write to this ledger, read-only.

One row per bot in the ledger's ``heartbeats`` table: its heartbeat age, trading state,
equity and P&L (from the heartbeat's detail, written by the engine every
``EngineConfig.heartbeat_s`` seconds), open orders (the ledger's ``orders`` table) and its
newest events. A bot whose heartbeat is older than ``stale_after_s`` while it says
``running`` is shown as ``stale`` (it may be stuck); one whose run is found gone (its process
is gone on this host, or another host's bot has been silent for five heartbeat intervals:
:mod:`sigmax_cli.ledger.liveness`) is marked and shown ``lost``, with the command that
acknowledges it.

Which bots are shown: by default the live ones and the recent ones, that is every bot
whose heartbeat says ``running`` (fresh, stale or lost), every bot of an unacknowledged
lost run, and every bot whose newest heartbeat is at most :data:`RECENT_S` (24 h) old;
older stopped bots are counted (``hidden``) but not listed. ``all_bots=True``
(``monitor --all``) lists every bot that ever wrote to the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sigmax_cli.ledger import Ledger

DEFAULT_STALE_AFTER_S = 60.0  # six missed heartbeats at the engine's 10 s interval
RECENT_S = 86_400.0
"""A stopped bot is listed while its newest heartbeat is at most this old (24 h: a day's
runs, the window an operator checks each morning); ``--all`` lists older ones too."""


@dataclass
class BotRow:
    """One bot. Money in quote currency; ages in seconds; times UTC ms."""

    bot_id: str
    run_id: str | None
    mode: str
    host: str
    pid: int
    status: str                  # running | stopped | stale | lost
    heartbeat_age_s: float
    trading_state: str | None
    state_reason: str | None
    equity: float | None
    pnl: float | None
    pnl_pct: float | None
    bar_ms: int | None
    open_orders: int
    events: list[dict[str, Any]] = field(default_factory=list)
    exits_blocked: dict[str, str] = field(default_factory=dict)  # symbol -> rejection (risk rule exit_blocked)
    lost: str | None = None      # why its run was lost and how to acknowledge it (unacknowledged only)


class Bots(list[BotRow]):
    """The bots shown (a list of :class:`BotRow`), with ``hidden``: bots left out because
    they stopped more than :data:`RECENT_S` ago (0 with ``all_bots``)."""

    def __init__(self, rows: Iterable[BotRow] = (), hidden: int = 0) -> None:
        super().__init__(rows)
        self.hidden = hidden


def collect(ledger: Ledger, *, now_ms: int | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S,
            events_per_bot: int = 5, all_bots: bool = False, recent_s: float = RECENT_S) -> Bots:
    """The live and recent bots of ``ledger`` (see the module docstring; every bot with
    ``all_bots``), running ones first, newest heartbeat first. Runs whose bot is gone are
    marked ``lost`` first (:meth:`Ledger.mark_lost_runs`).

    Args:
        now_ms: the time to judge ages at, UTC ms (now by default).
        stale_after_s: seconds without a heartbeat after which a running bot is ``stale``.
        events_per_bot: newest events listed per bot.
        all_bots: list every bot, however long ago it stopped.
        recent_s: how old a stopped bot's newest heartbeat may be to be listed, seconds.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    lost = {run.run_id: run.sentence() for run in ledger.mark_lost_runs(now_ms)}
    since_ms = None if all_bots else now_ms - int(recent_s * 1000)
    beats = ledger.heartbeats(since_ms, runs=lost)
    run_ids = [b["run_id"] for b in beats if b["run_id"]]
    open_orders = ledger.open_order_counts(run_ids)
    rows = Bots(hidden=0 if all_bots else max(0, ledger.count_heartbeats() - len(beats)))
    for beat in beats:
        detail = json.loads(beat["detail_json"]) if beat["detail_json"] else {}
        age_s = max(0.0, (now_ms - beat["ts_ms"]) / 1000)
        status = beat["status"]
        if status == "running" and beat["run_id"] in lost:
            status = "lost"  # judged lost but not written (another reader marked it first)
        if status == "running" and age_s > stale_after_s:
            status = "stale"
        run_id = beat["run_id"]
        events = ledger.newest_events(run_id, events_per_bot) if run_id else []
        equity, initial = detail.get("equity"), detail.get("initial_equity")
        pnl = equity - initial if equity is not None and initial else None
        rows.append(BotRow(
            bot_id=beat["bot_id"], run_id=run_id, mode=beat["mode"], host=beat["host"], pid=beat["pid"],
            status=status, heartbeat_age_s=round(age_s, 1), trading_state=detail.get("state"),
            state_reason=detail.get("state_reason"), equity=equity, pnl=pnl,
            pnl_pct=pnl / initial * 100 if pnl is not None else None, bar_ms=detail.get("bar_ms"),
            open_orders=open_orders.get(run_id or "", 0), events=events,
            exits_blocked=dict(detail.get("exits_blocked") or {}), lost=lost.get(run_id or "")))
    order = {"running": 0, "stale": 1, "lost": 2, "stopped": 3}
    rows.sort(key=lambda r: (order.get(r.status, 3), r.heartbeat_age_s))
    return rows


def killswitch_status(settings) -> Any:
    """The kill switch as this host sees it (file, Redis within 1 s): a
    :class:`~sigmax_cli.risk.killswitch.KillSwitchStatus`; never raises."""
    from sigmax_cli.risk.killswitch import KillSwitch

    return KillSwitch.from_settings(settings).status()


def to_dict(rows: list[BotRow], killswitch: Any = None) -> dict[str, Any]:
    """The ``--json`` document: ``{"bots": [...], "running": n, "stale": n, "lost": n, "hidden": n,
    "killswitch": {...}}`` (``hidden``: bots not listed, stopped more than 24 h ago;
    ``killswitch``: :meth:`KillSwitchStatus.to_dict`, when given)."""
    doc: dict[str, Any] = {
        "bots": [asdict(r) for r in rows], "running": sum(r.status == "running" for r in rows),
        "stale": sum(r.status == "stale" for r in rows), "lost": sum(r.status == "lost" for r in rows),
        "hidden": getattr(rows, "hidden", 0)}
    if killswitch is not None:
        doc["killswitch"] = killswitch.to_dict()
    return doc


def killswitch_line(status: Any) -> str:
    """One rich-markup line: the kill switch's state and why (UNKNOWN names the store)."""
    if status.engaged:
        return f"kill switch: [bold red]ENGAGED[/] ({status.source}) by {status.by or 'unknown'}: {status.reason}"
    if status.released:
        return "kill switch: [green]RELEASED[/]"
    return (f"kill switch: [bold magenta]UNKNOWN[/] ({status.unknown_reason}): bots halt and none may start "
            "until it can be read")


def render(rows: list[BotRow], killswitch: Any = None):
    """A rich renderable: one table of bots (captioned with the kill switch's state when
    ``killswitch`` is given) and the newest events of the running ones."""
    from datetime import UTC, datetime

    from rich.console import Group
    from rich.table import Table

    table = Table(title="sigmax bots (read-only)", expand=True)
    for col in ("bot", "mode", "status", "heartbeat", "state", "equity", "P&L", "open orders", "bar (UTC)"):
        table.add_column(col, justify="right" if col in ("heartbeat", "equity", "P&L", "open orders") else "left")
    colours = {"running": "green", "stale": "bold red", "lost": "yellow", "stopped": "dim"}
    states = {"ACTIVE": "green", "REDUCING": "yellow", "HALTED": "bold red"}
    for r in rows:
        pnl = f"{r.pnl:+,.2f} ({r.pnl_pct:+.2f}%)" if r.pnl is not None else "-"
        bar = datetime.fromtimestamp(r.bar_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if r.bar_ms else "-"
        state = f"[{states.get(r.trading_state or '', 'white')}]{r.trading_state or '-'}[/]"
        if r.exits_blocked:
            state += f" [bold red]exit blocked: {', '.join(sorted(r.exits_blocked))}[/]"
        status = f"[{colours.get(r.status, 'white')}]{r.status}[/]"
        equity = f"{r.equity:,.2f}" if r.equity is not None else "-"
        table.add_row(r.bot_id, r.mode, status, f"{r.heartbeat_age_s:.0f} s", state, equity, pnl, str(r.open_orders),
                      bar)
    events = Table(title="newest events", expand=True, show_header=True)
    for col in ("bot", "level", "kind", "message"):
        events.add_column(col)
    for r in rows:
        if r.status != "stopped":
            for e in r.events:
                events.add_row(r.bot_id, e["level"], e["kind"], e["message"])
    captions = [killswitch_line(killswitch)] if killswitch is not None else []
    hidden = getattr(rows, "hidden", 0)
    if not rows:
        captions.append("no bot has run in the last 24 h" if hidden else "no bot has written to this ledger yet")
    if hidden:
        captions.append(f"{hidden} bot{'s' if hidden != 1 else ''} stopped more than 24 h ago not shown "
                        "(monitor --all lists them)")
    captions.extend(r.lost for r in rows if r.lost)
    if captions:
        table.caption = "\n".join(captions)
    return Group(table, events) if events.row_count else table
