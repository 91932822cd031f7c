"""Exits: no running bot holds a position it cannot sell.

The engine puts the symbols whose exit orders were rejected
``risk.max_consecutive_rejections`` times in a row (risk rule ``exit_blocked``, see
:mod:`sigmax_cli.risk.rejections`) into every heartbeat's detail.

Measurements:

``exits:blocked`` (count, one per running bot, ``component`` = bot id)
    Symbols whose exit is blocked: 0 is OK, any is CRITICAL (a position that cannot be
    sold cannot be stopped out either), with the symbols and the rejection in the message.
    Skipped when no bot is running; UNKNOWN when the ledger cannot be read.
"""

from __future__ import annotations

import json

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Outcome, Status
from sigmax_cli.ledger import reader as db


class ExitsCheck(Check):
    """Blocked exits of every running bot in the ledger (see the module docstring)."""

    name = "exits"
    primary = "blocked"
    description = "bots: positions whose exit orders keep being rejected (risk rule exit_blocked)"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        try:
            with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
                if not reader.has_table("heartbeats"):
                    return [self.skip("blocked", "the ledger has no heartbeats table yet")]
                lost = {run.run_id for run in reader.lost_runs(ctx.clock())}  # gone: the heartbeat check says so
                rows = reader.bot_details() or []
        except SigmaxError as exc:
            return [self.result("blocked", Status.UNKNOWN, f"cannot read heartbeats: {exc.cause}", ctx)]
        running = [r[:3] for r in rows if r[1] == "running" and r[3] not in lost]
        if not running:
            return [self.skip("blocked", "no bot is running")]
        out: list[Outcome] = []
        for bot_id, _status, detail_json in running:
            try:
                blocked = dict((json.loads(detail_json) if detail_json else {}).get("exits_blocked") or {})
            except (ValueError, TypeError, AttributeError):
                out.append(self.result("blocked", Status.UNKNOWN, f"{bot_id}: heartbeat detail is not readable JSON",
                                       ctx, component=bot_id))
                continue
            if blocked:
                what = "; ".join(f"{sym}: {why}" for sym, why in sorted(blocked.items()))
                message = (f"{bot_id} cannot exit {len(blocked)} position(s) ({what}); no new entries on them; "
                           "see `sigmax monitor` and free the funds or fix the market rules")
                status = Status.CRITICAL
            else:
                message, status = f"{bot_id}: every exit goes through", Status.OK
            out.append(self.result("blocked", status, message, ctx, value=len(blocked), component=bot_id))
        return out
