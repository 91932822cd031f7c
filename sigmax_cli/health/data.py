"""Data freshness: live bots receive their candles on time, and research keeps coming in.

Measurements:

``data:candle_age`` (s, one per running bot on live data, ``component`` = bot id)
    Seconds since the newest candle the bot processed *closed*: ``now - (bar_ms +
    timeframe)``, with ``bar_ms`` from the ``{"bar_ms": ...}`` detail of the bot's
    heartbeat (before its first bar: since its run started). A live 1h bot's newest candle
    is normally up to one bar (3600 s) old, so ``health.data_age_s`` is the lateness
    allowed beyond one bar: the limits graded against are ``timeframe + data_age_s``.
    Bots replaying candle files (their run records data files with a path) are not on
    live data and are left out; skipped when no bot is on live data.
``data:research_age`` (s)
    Seconds since the newest research item was first seen (``max(first_seen_ms)`` of the
    ledger's ``research_items``), graded by ``health.research_age_s``. Skipped (not
    failed) while the table is missing or empty: research is optional, and an
    installation that never ran ``sigmax research`` is not unhealthy.

UNKNOWN when the ledger cannot be read (the ledger check says why).
"""

from __future__ import annotations

import json
from typing import Any

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, fmt_duration
from sigmax_cli.ledger import reader as db


class DataCheck(Check):
    """Newest candle of each live bot, newest research item (see the module docstring)."""

    name = "data"
    primary = "candle_age"
    description = "data freshness: newest candle of each live bot, newest research item"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        try:
            with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
                bots = _live_bots(reader, ctx.clock())
                research = self._research(reader, ctx)
        except SigmaxError as exc:
            return [self.result("candle_age", Status.UNKNOWN, f"cannot read the ledger: {exc.cause}", ctx)]
        return [*self._candles(bots, ctx), research]

    def _candles(self, bots: list[dict[str, Any]] | None, ctx: CheckContext) -> list[Outcome]:
        if bots is None:
            return [self.skip("candle_age", "the ledger has no heartbeats yet")]
        if not bots:
            return [self.skip("candle_age", "no running bot is on live data")]
        from sigmax_cli.timeframes import timeframe_to_ms

        now = ctx.clock()
        out: list[Outcome] = []
        for bot in bots:
            try:
                tf_s = timeframe_to_ms(bot["timeframe"]) / 1000
            except SigmaxError:
                out.append(self.result("candle_age", Status.UNKNOWN, f"{bot['bot_id']}: unknown timeframe "
                                       f"{bot['timeframe']!r} in its run", ctx, component=bot["bot_id"]))
                continue
            limits = Limits.of(ctx.health.data_age_s, offset=tf_s)
            if bot["bar_ms"] is not None:
                age_s = round((now - (bot["bar_ms"] + tf_s * 1000)) / 1000, 1)
                message = f"{bot['bot_id']}: newest {bot['timeframe']} candle closed {fmt_duration(age_s)} ago"
            else:
                age_s = round((now - bot["started_ms"]) / 1000, 1)
                message = f"{bot['bot_id']}: no candle yet, {fmt_duration(age_s)} after its start"
            out.append(self.graded("candle_age", age_s, "s", limits, message, ctx, component=bot["bot_id"]))
        return out

    def _research(self, reader: db.Reader, ctx: CheckContext) -> Outcome:
        if not reader.has_table("research_items"):
            return self.skip("research_age", "the ledger has no research_items table (an older schema)")
        newest_ms = reader.newest_research_ms()
        if newest_ms is None:
            return self.skip("research_age", "no research item yet (`sigmax research` has stored none)")
        age_s = round((ctx.clock() - newest_ms) / 1000, 1)
        return self.graded("research_age", age_s, "s", Limits.of(ctx.health.research_age_s),
                           f"newest research item first seen {fmt_duration(age_s)} ago", ctx)


def _live_bots(reader: db.Reader, now_ms: int) -> list[dict[str, Any]] | None:
    """Running bots whose run is not a replay of files, nor lost (their runs are marked here
    too, since the checks run at once; the heartbeat check reports them); ``None`` without a
    heartbeats table."""
    if not reader.has_table("heartbeats"):
        return None
    lost = {run.run_id for run in reader.lost_runs(now_ms)}
    rows = reader.running_bot_runs() or []
    bots = []
    for bot_id, detail_json, timeframe, files_json, started_ms, ts_ms, run_id in rows:
        if timeframe is None or _replays_files(files_json) or run_id in lost:
            continue
        detail = _json(detail_json)
        bar_ms = detail.get("bar_ms") if isinstance(detail, dict) else None
        bots.append({"bot_id": bot_id, "timeframe": timeframe, "bar_ms": int(bar_ms) if bar_ms is not None else None,
                     "started_ms": int(started_ms if started_ms is not None else ts_ms)})
    return bots


def _replays_files(files_json: str | None) -> bool:
    files = _json(files_json)
    return isinstance(files, list) and any(isinstance(f, dict) and f.get("path") for f in files)


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
