"""Bots: every running bot has written its heartbeat recently; lost runs are reported once.

The trading loop upserts one row per bot in the ledger's ``heartbeats`` table every
``EngineConfig.heartbeat_s`` (10 s) while it runs, and marks it ``stopped`` when it ends.
A bot killed without a word (``kill -9``, a crash, a power cut) leaves its run ``running``:
this check first marks such runs ``lost`` (:mod:`sigmax_cli.ledger.liveness`: on this host
when the bot's process is gone, for another host after five heartbeat intervals of silence).

Measurements:

``heartbeat:age`` (s, one per running bot, ``component`` = bot id)
    Seconds since the bot's last heartbeat, graded by ``health.heartbeat_age_s``. A bot
    that stopped cleanly (status ``stopped``) or whose run is lost is not graded; a bot
    that is alive but stuck keeps status ``running`` and goes stale, which is what this
    measurement is for. Skipped when no bot is running.
``heartbeat:lost`` (one per lost run not yet acknowledged, ``component`` = run id)
    WARNING, never CRITICAL: the bot is gone, nothing is trading any more, and an operator
    should look at why (its orders are reconciled by the next ``sigmax run``). The message
    names the command that acknowledges it (``sigmax runs ack RUN_ID``); once acknowledged
    it is no longer reported. The value is the seconds since its last sign of life.

UNKNOWN when the ledger cannot be read (the ledger check says why).
"""

from __future__ import annotations

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, fmt_duration
from sigmax_cli.ledger import reader as db


class HeartbeatCheck(Check):
    """Heartbeat age of every running bot in the ledger, and its lost runs (see the module docstring)."""

    name = "heartbeat"
    primary = "age"
    description = "bots: age of the last heartbeat of every running bot; runs lost without a word"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        now = ctx.clock()
        try:
            with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
                if not reader.has_table("heartbeats"):
                    return [self.skip("age", "the ledger has no heartbeats table yet")]
                lost = reader.lost_runs(now)
                rows = reader.heartbeat_rows() or []
        except SigmaxError as exc:
            return [self.result("age", Status.UNKNOWN, f"cannot read heartbeats: {exc.cause}", ctx)]
        out: list[Outcome] = []
        for run in lost:
            silent_s = round((now - run.last_seen_ms) / 1000, 1) if run.last_seen_ms is not None else None
            out.append(self.result("lost", Status.WARNING, run.sentence(), ctx, value=silent_s,
                                   unit="s" if silent_s is not None else "", component=run.run_id))
        lost_ids = {run.run_id for run in lost}
        running = [r for r in rows if r[2] == "running" and r[5] not in lost_ids]
        if not running:
            stopped = sum(1 for r in rows if r[2] == "stopped")
            gone = sum(1 for r in rows if r[2] == "lost" or r[5] in lost_ids)
            counts = [f"{n} {word}" for n, word in ((stopped, "stopped"), (gone, "lost")) if n]
            reason = f"no bot is running ({', '.join(counts)})" if counts else "no bot has written a heartbeat yet"
            return [*out, self.skip("age", reason)]
        limits = Limits.of(ctx.health.heartbeat_age_s)
        for bot_id, ts_ms, status, host, pid, _run_id in running:
            age_s = round((now - int(ts_ms)) / 1000, 1)
            message = f"{bot_id} ({status}, {host} pid {pid}) last seen {fmt_duration(age_s)} ago"
            out.append(self.graded("age", age_s, "s", limits, message, ctx, component=bot_id))
        return out
