"""`sigmax monitor`: the bots that write to this ledger, read-only.

One row per bot in the ledger's ``heartbeats`` table: its heartbeat age, trading state,
equity and P&L (from the heartbeat's detail, written by the engine every
``EngineConfig.heartbeat_s`` seconds), open orders (the ledger's ``orders`` table) and its
newest events. A bot whose heartbeat is older than ``stale_after_s`` while it says
``running`` is shown as ``stale`` (it may be stuck); one whose run is found gone (its process
is gone on this host, or another host's bot has been silent for five heartbeat intervals:
:mod:`sigmax_cli.ledger.liveness`) is marked and shown ``lost``, with the command that
acknowledges it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from sigmax_cli.ledger import Ledger
from sigmax_cli.ledger import schema as s

DEFAULT_STALE_AFTER_S = 60.0  # six missed heartbeats at the engine's 10 s interval


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


def collect(ledger: Ledger, *, now_ms: int | None = None, stale_after_s: float = DEFAULT_STALE_AFTER_S,
            events_per_bot: int = 5) -> list[BotRow]:
    """Every bot of ``ledger``, running ones first, newest heartbeat first. Runs whose bot is
    gone are marked ``lost`` first (:meth:`Ledger.mark_lost_runs`)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    lost = {run.run_id: run.sentence() for run in ledger.mark_lost_runs(now_ms)}
    rows: list[BotRow] = []
    with ledger.engine.connect() as conn:
        beats = conn.execute(select(s.heartbeats).order_by(s.heartbeats.c.ts_ms.desc())).mappings().all()
        for beat in beats:
            detail = json.loads(beat["detail_json"]) if beat["detail_json"] else {}
            age_s = max(0.0, (now_ms - beat["ts_ms"]) / 1000)
            status = beat["status"]
            if status == "running" and beat["run_id"] in lost:
                status = "lost"  # judged lost but not written (another reader marked it first)
            if status == "running" and age_s > stale_after_s:
                status = "stale"
            open_orders = 0
            events: list[dict[str, Any]] = []
            if beat["run_id"]:
                open_orders = conn.execute(select(func.count()).select_from(s.orders).where(
                    s.orders.c.run_id == beat["run_id"],
                    s.orders.c.status.in_(("new", "open", "partially_filled")))).scalar_one()
                events = [dict(e) for e in conn.execute(
                    select(s.events.c.ts_ms, s.events.c.level, s.events.c.kind, s.events.c.message)
                    .where(s.events.c.run_id == beat["run_id"]).order_by(s.events.c.id.desc())
                    .limit(events_per_bot)).mappings()]
            equity, initial = detail.get("equity"), detail.get("initial_equity")
            pnl = equity - initial if equity is not None and initial else None
            rows.append(BotRow(
                bot_id=beat["bot_id"], run_id=beat["run_id"], mode=beat["mode"], host=beat["host"], pid=beat["pid"],
                status=status, heartbeat_age_s=round(age_s, 1), trading_state=detail.get("state"),
                state_reason=detail.get("state_reason"), equity=equity, pnl=pnl,
                pnl_pct=pnl / initial * 100 if pnl is not None else None, bar_ms=detail.get("bar_ms"),
                open_orders=int(open_orders), events=events, exits_blocked=dict(detail.get("exits_blocked") or {}),
                lost=lost.get(beat["run_id"] or "")))
    order = {"running": 0, "stale": 1, "lost": 2, "stopped": 3}
    rows.sort(key=lambda r: (order.get(r.status, 3), r.heartbeat_age_s))
    return rows


def killswitch_status(settings) -> Any:
    """The kill switch as this host sees it (file, Redis within 1 s): a
    :class:`~sigmax_cli.risk.killswitch.KillSwitchStatus`; never raises."""
    from sigmax_cli.risk.killswitch import KillSwitch

    return KillSwitch.from_settings(settings).status()


def to_dict(rows: list[BotRow], killswitch: Any = None) -> dict[str, Any]:
    """The ``--json`` document: ``{"bots": [...], "running": n, "stale": n, "lost": n, "killswitch": {...}}``
    (``killswitch``: :meth:`KillSwitchStatus.to_dict`, when given)."""
    doc = {"bots": [asdict(r) for r in rows], "running": sum(r.status == "running" for r in rows),
           "stale": sum(r.status == "stale" for r in rows), "lost": sum(r.status == "lost" for r in rows)}
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
    if not rows:
        captions.append("no bot has written to this ledger yet")
    captions.extend(r.lost for r in rows if r.lost)
    if captions:
        table.caption = "\n".join(captions)
    return Group(table, events) if events.row_count else table
