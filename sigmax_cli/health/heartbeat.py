"""Bots: every running bot has written its heartbeat recently.

The trading loop upserts one row per bot in the ledger's ``heartbeats`` table every
``EngineConfig.heartbeat_s`` (10 s) while it runs, and marks it ``stopped`` when it ends.

Measurements:

``heartbeat:age`` (s, one per running bot, ``component`` = bot id)
    Seconds since the bot's last heartbeat, graded by ``health.heartbeat_age_s``. A bot
    that stopped cleanly (status ``stopped``) is not stale and is not graded; one that was
    killed keeps status ``running`` and goes stale, which is what this check is for.
    Skipped when no bot is running; UNKNOWN when the ledger cannot be read (the ledger
    check says why).
"""

from __future__ import annotations

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health import db
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, fmt_duration


class HeartbeatCheck(Check):
    """Heartbeat age of every running bot in the ledger (see the module docstring)."""

    name = "heartbeat"
    primary = "age"
    description = "bots: age of the last heartbeat of every running bot in the ledger"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        try:
            with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
                if not reader.has_table("heartbeats"):
                    return [self.skip("age", "the ledger has no heartbeats table yet")]
                rows = reader.query("SELECT bot_id, ts_ms, status, host, pid FROM heartbeats ORDER BY bot_id")
        except SigmaxError as exc:
            return [self.result("age", Status.UNKNOWN, f"cannot read heartbeats: {exc.cause}", ctx)]
        running = [r for r in rows if r[2] != "stopped"]
        if not running:
            stopped = len(rows) - len(running)
            reason = f"no bot is running ({stopped} stopped)" if stopped else "no bot has written a heartbeat yet"
            return [self.skip("age", reason)]
        limits = Limits.of(ctx.health.heartbeat_age_s)
        now = ctx.clock()
        out: list[Outcome] = []
        for bot_id, ts_ms, status, host, pid in running:
            age_s = round((now - int(ts_ms)) / 1000, 1)
            message = f"{bot_id} ({status}, {host} pid {pid}) last seen {fmt_duration(age_s)} ago"
            out.append(self.graded("age", age_s, "s", limits, message, ctx, component=bot_id))
        return out
