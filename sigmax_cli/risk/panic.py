"""``sigmax panic``: the emergency stop.

Order of work, safest first:

1. persist the kill switch: the local file first (atomic write + fsync, before any network
   call), then Redis with short timeouts: every bot on this host (and, with Redis, on
   others) halts at its next tick and refuses to start. A store that fails (a full disk,
   Redis down or hung) does not stop the other one, nor the steps below; how far the
   switch reached is the report's ``reach`` and its ``exit_code``;
2. record the engage in the ledger (skipped, and said so, when the database is down), in a
   thread beside step 3, so a slow or dead database never delays the exchange;
3. with exchange keys: for every configured symbol, and every symbol the ledger shows
   open orders for, all symbols at once, cancel all open orders (``cancel_all_orders`` where
   the exchange has it: its answer lists what it cancelled, so no listing first; else
   per-order cancels in parallel), then re-fetch open orders until none remain, in bounded
   rounds with back-off (two round trips per symbol when the first round clears it);
   optionally flatten spot positions (market sells of each base asset down to the market's
   minimums);
4. write an incident report, JSON and Markdown, in ``$SIGMAX_HOME/incidents/``.

Every step is recorded in a timeline; a failing step becomes a ``failures`` entry, never
an exception, so the report is always written. A second panic finds the switch engaged,
keeps its original reason and time, re-verifies the exchange and reports, doing no harm.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError, SigmaxError
from sigmax_cli.files import write_atomic
from sigmax_cli.risk.killswitch import KillSwitch, KillSwitchStatus, SwitchState, who
from sigmax_cli.risk.panic_exchange import (  # noqa: F401 - re-exported
    PER_ORDER_WORKERS,
    ROUND_BACKOFF_S,
    SYMBOL_WORKERS,
    VERIFY_ROUNDS,
    clear_exchange,
)

REACH_EVERYWHERE = "everywhere"          # the file and, when configured, Redis
REACH_THIS_HOST = "this host only"       # the file; Redis is configured but was not told
REACH_REDIS_ONLY = "redis only"          # Redis; the local file could not be written
REACH_NOTHING = "nothing"                # neither store holds the switch
EXIT_OK = 0             # engaged everywhere, exchange verified clear (or none configured)
EXIT_NOT_VERIFIED = 1   # engaged everywhere, but open orders may remain on the exchange
EXIT_PARTIAL = 4        # engaged in one store only: other hosts not told, or not this host's file
EXIT_NOTHING = 5        # the switch is not engaged anywhere
STATUS_EXIT = {SwitchState.RELEASED: 0, SwitchState.ENGAGED: 1, SwitchState.UNKNOWN: 3}  # panic --status


def reach_of(status: KillSwitchStatus, redis_configured: bool) -> str:
    """How far a write reached: one of the ``REACH_*`` values, from ``status.written``."""
    file_ok = "file" in status.written
    redis_ok = "redis" in status.written or not redis_configured
    if file_ok and redis_ok:
        return REACH_EVERYWHERE
    if file_ok:
        return REACH_THIS_HOST
    return REACH_REDIS_ONLY if redis_configured and "redis" in status.written else REACH_NOTHING


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@dataclass
class IncidentReport:
    """What a panic did. Times are UTC ms; balances in each asset's units.

    ``outcome`` is ``"ok"`` (switch engaged, exchange verified with zero open orders or no
    exchange configured), ``"degraded"`` (switch engaged but a store, the ledger or Redis,
    could not be written) or ``"failed"`` (open orders may remain on the exchange, or the
    switch reached no store at all). ``reach`` says where the switch is held (``REACH_*``);
    ``file_written_ms`` is when the local flag was on disk (UTC ms, ``None`` if it never was).
    """

    incident_id: str
    reason: str
    by: str
    started_ms: int
    finished_ms: int | None = None
    killswitch: dict[str, Any] = field(default_factory=dict)
    already_engaged: bool = False
    reach: str = REACH_NOTHING
    file_written_ms: int | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)
    exchange: str | None = None
    symbols: list[str] = field(default_factory=list)
    cancelled: list[dict[str, Any]] = field(default_factory=list)
    remaining_open_orders: dict[str, int] = field(default_factory=dict)
    round_trips: int = 0
    balances_before: dict[str, float] = field(default_factory=dict)
    balances_after: dict[str, float] = field(default_factory=dict)
    flattened: list[dict[str, Any]] = field(default_factory=list)
    running_bots: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.failures or any(self.remaining_open_orders.values()) or self.reach == REACH_NOTHING:
            return "failed"
        return "degraded" if self.degraded or self.reach != REACH_EVERYWHERE else "ok"

    @property
    def exit_code(self) -> int:
        """``EXIT_NOTHING`` > ``EXIT_PARTIAL`` > ``EXIT_NOT_VERIFIED`` > ``EXIT_OK``: how far the
        switch reached comes first, then whether the exchange was verified clear."""
        if self.reach == REACH_NOTHING:
            return EXIT_NOTHING
        if self.reach != REACH_EVERYWHERE:
            return EXIT_PARTIAL
        if self.failures or any(self.remaining_open_orders.values()):
            return EXIT_NOT_VERIFIED
        return EXIT_OK

    def step(self, text: str) -> None:
        """Add a timeline entry now."""
        self.timeline.append({"ts_ms": _now_ms(), "step": text})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome
        data["exit_code"] = self.exit_code
        return data


def panic(settings, reason: str, *, flatten: bool = False, exchange: Any = None,
          retry: Any = None, sleep=time.sleep) -> IncidentReport:
    """Engage the kill switch, clear the exchange, write the incident report.

    Args:
        settings: the invocation's settings (home, Redis, ledger, exchange, keys, symbols).
        reason: why; recorded everywhere.
        flatten: also sell every configured symbol's base asset to the quote currency.
        exchange: a ready ccxt exchange (tests, benchmarks); default: built from settings
            when API keys are configured (testnet unless ``settings.env == "live"``).
        retry: a :class:`~sigmax_cli.exchange.errors.RetryPolicy` for each exchange call.
        sleep: waits between verification rounds (injectable).

    Never raises for a store, the ledger or the exchange failing: each becomes a ``degraded``
    or ``failures`` entry and shapes ``reach`` / ``exit_code``. Even when no store could be
    written, the exchange is still cleared (cancelling adds no risk; the report says that
    running bots were not told and may place orders again).
    """
    by = who()
    started = _now_ms()
    report = IncidentReport(incident_id=datetime.fromtimestamp(started / 1000, UTC).strftime("%Y%m%dT%H%M%S")
                            + f"-{os.getpid()}", reason=reason, by=by, started_ms=started)
    switch = KillSwitch.from_settings(settings)

    def file_done(error: str | None) -> None:
        if error is None:
            report.file_written_ms = _now_ms()
            report.step(f"kill switch file written: {switch.path}")
        else:
            report.step(f"kill switch file NOT written: {switch.path} ({error})")

    status = switch.engage(reason, by, on_file=file_done)
    report.already_engaged = status.was_engaged
    report.killswitch = status.to_dict()
    report.reach = reach_of(status, bool(switch.redis_url))
    report.degraded.extend(status.degraded)
    if switch.redis_url:
        report.step("redis: kill switch key set and published" if "redis" in status.written
                    else f"redis: NOT told ({'; '.join(d for d in status.degraded if d.startswith('redis'))})")
    report.step(("kill switch was already engaged since " + _iso(status.since_ms) if status.was_engaged
                 else "kill switch engaged") + f" ({status.source or 'nowhere'}; reach: {report.reach})")
    if report.reach == REACH_NOTHING:
        report.failures.append("the kill switch is NOT engaged anywhere: " + "; ".join(status.degraded))
    elif report.reach == REACH_THIS_HOST:
        report.notes.append("bots on other hosts were NOT told (Redis could not be written): "
                            "run `sigmax panic` again once Redis answers, or stop them by hand")
    elif report.reach == REACH_REDIS_ONLY:
        report.notes.append("the local kill-switch file could not be written: bots on this host that do not "
                            "read Redis were NOT told")

    # the ledger (a fresh SQLite schema, or a PostgreSQL connect timeout) must not hold the
    # exchange up: it runs beside it, and the symbols it adds are cleared when they arrive
    ledger_pool = ThreadPoolExecutor(1)
    ledger_symbols = ledger_pool.submit(_ledger_record, settings, report, "killswitch.engaged",
                                        f"kill switch engaged by {by}: {reason}")
    ledger_pool.shutdown(wait=False)
    if exchange is None and settings.api_key is not None:
        try:
            from sigmax_cli.exchange.client import exchange_from_settings

            exchange = exchange_from_settings(settings, sandbox=settings.env != "live")
        except SigmaxError as exc:
            report.failures.append(f"exchange: {exc.sentence()}")
    if exchange is not None:
        report.symbols = list(dict.fromkeys(settings.symbols))
        clear_exchange(report, exchange, flatten, retry, sleep, more_symbols=ledger_symbols)
    elif not report.failures:
        report.notes.append("no exchange keys configured (SIGMAX_API_KEY): nothing to cancel on an exchange; "
                            "paper bots cancel their own orders when they halt")
    ledger_symbols.result()
    _alert(settings, report, "killswitch.engaged", "critical", f"PANIC: kill switch engaged by {by}",
           f"{reason} (outcome {report.outcome}; {len(report.cancelled)} orders cancelled)")
    report.finished_ms = _now_ms()
    report.step(f"done: {report.outcome}")
    _write_report(settings, report)
    return report


def _alert(settings, report: IncidentReport, trigger: str, severity: str, title: str, text: str) -> None:
    """Deliver one alert inline and record the delivery in the ledger (best effort)."""
    from sigmax_cli.alerts.base import Alert
    from sigmax_cli.alerts.dispatcher import from_settings, record_history

    dispatcher = from_settings(settings, background=False)
    if dispatcher is None:
        return
    dispatcher.notify(Alert(trigger, severity, title, text, _now_ms(), {"incident": report.incident_id}))
    history = dispatcher.drain_history()
    report.notes.extend(f"alert {h['channel']}: {h['status']}" + (f" ({h['error']})" if h.get("error") else "")
                        for h in history)
    if any(d.startswith("ledger:") for d in report.degraded):
        return  # the ledger was already found down: do not wait for its connect timeout again
    try:
        from sigmax_cli.ledger import Ledger

        with Ledger(settings.ledger_url) as ledger:
            record_history(ledger, None, history)
    except SigmaxError:
        pass  # the ledger being down is already in the report


def _ledger_record(settings, report: IncidentReport, kind: str, message: str, level: str = "critical") -> list[str]:
    """Record the event, list the running bots in ``report``; return the symbols the ledger
    shows open orders for (empty, and the report degraded, when the ledger is down)."""
    from sigmax_cli.ledger import Ledger, now_ms

    symbols: list[str] = []
    try:
        with Ledger(settings.ledger_url) as ledger:
            ledger.record_event(None, now_ms(), level, kind, message,
                                {"reason": report.reason, "by": report.by, "incident": report.incident_id})
            ledger.flush()
            report.running_bots = [{"bot_id": r["bot_id"], "run_id": r["run_id"], "host": r["host"], "pid": r["pid"],
                                    "last_seen_ms": r["ts_ms"]} for r in ledger.running_heartbeats()]
            symbols = ledger.open_order_symbols()
        report.step("ledger: event recorded")
    except SigmaxError as exc:
        report.degraded.append(f"ledger: {exc.sentence()}")
        report.step("ledger: unavailable, event not recorded")
    return symbols


def _write_report(settings, report: IncidentReport) -> None:
    folder = Path(settings.home) / "incidents"
    stem = f"{report.incident_id}-panic"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for suffix, text in ((".json", json.dumps(report.to_dict(), indent=2, default=str)),
                             (".md", incident_markdown(report))):
            path = folder / f"{stem}{suffix}"
            write_atomic(path, text)
            report.files.append(str(path))
    except OSError as exc:
        report.degraded.append(f"incident report not written ({exc.strerror})")


def incident_markdown(report: IncidentReport) -> str:
    """The incident report as Markdown: summary, timeline, orders, balances, failures."""
    lines = [f"# Incident {report.incident_id}: panic", "",
             f"* **Outcome:** {report.outcome}", f"* **Reason:** {report.reason}", f"* **By:** {report.by}",
             f"* **Started:** {_iso(report.started_ms)}", f"* **Finished:** {_iso(report.finished_ms)}",
             f"* **Kill switch:** engaged since {_iso(report.killswitch.get('since_ms'))} "
             f"({report.killswitch.get('source') or 'file'})"
             + (" (it was already engaged)" if report.already_engaged else ""),
             f"* **Reach:** {report.reach}",
             f"* **Exchange:** {report.exchange or 'none configured'}; round trips: {report.round_trips}", ""]
    lines += ["## Timeline", "", "| time (UTC) | step |", "|---|---|"]
    lines += [f"| {_iso(t['ts_ms'])} | {t['step']} |" for t in report.timeline]
    lines += ["", f"## Orders cancelled ({len(report.cancelled)})", ""]
    if report.cancelled:
        lines += ["| symbol | order id | client order id | side | amount | price |", "|---|---|---|---|---|---|"]
        lines += [f"| {o['symbol']} | {o['id']} | {o.get('client_order_id') or ''} | {o.get('side') or ''} | "
                  f"{o.get('amount')} | {o.get('price')} |" for o in report.cancelled]
    lines += ["", "## Open orders remaining", ""]
    lines += [f"* {s}: {n if n >= 0 else 'unknown'}" for s, n in report.remaining_open_orders.items()] or ["* none"]
    lines += ["", "## Balances", "", "| asset | before | after |", "|---|---|---|"]
    for asset in sorted(set(report.balances_before) | set(report.balances_after)):
        before, after = report.balances_before.get(asset, 0), report.balances_after.get(asset, 0)
        lines.append(f"| {asset} | {before:g} | {after:g} |")
    if report.flattened:
        lines += ["", "## Flattened", ""] + [f"* {f['symbol']}: sold {f['amount']}" for f in report.flattened]
    lines += ["", "## Running bots (expected to halt within one tick)", ""]
    lines += [f"* {b['bot_id']} (pid {b['pid']}, last seen {_iso(b['last_seen_ms'])})" for b in report.running_bots] \
        or ["* none"]
    for title, items in (("Failures", report.failures), ("Degraded", report.degraded), ("Notes", report.notes)):
        if items:
            lines += ["", f"## {title}", ""] + [f"* {item}" for item in items]
    return "\n".join(lines) + "\n"


def engage_without_settings(home: Path | None, error: ConfigError, reason: str | None) -> ConfigError:
    """Settings are broken (a bad SIGMAX_REDIS_URL, a bad profile), yet an engage was asked:
    still write the local flag in ``home`` (``--home``; else ``SIGMAX_HOME``; else the
    default: its home needs no settings), then return ``error`` restated to say exactly what
    was and was not done (exit 2)."""
    from sigmax_cli.settings import default_home

    if not home:
        home = Path(os.environ["SIGMAX_HOME"]) if os.environ.get("SIGMAX_HOME") else default_home()
    switch = KillSwitch(home)
    done = switch.engage(reason or "operator panic (no reason given)")
    where = (f"the kill switch file {switch.path} IS engaged (this host only)" if done.written
             else f"the kill switch is NOT engaged ({'; '.join(done.degraded)})")
    return ConfigError(f"{error.cause}; {where}, but Redis and the exchange were not touched",
                       f"{error.fix or 'fix the setting'}, then run `sigmax panic` again")


def release(settings, reason: str) -> KillSwitchStatus:
    """Release the kill switch with a reason: a release record in the file, then in Redis
    (bots resume when they see it), recorded in the ledger (when reachable).

    ``written`` of the result names the stores the release reached; with Redis configured
    but not reached, bots on other hosts stay halted (:func:`reach_of` gives
    ``REACH_THIS_HOST``).

    Raises:
        ConfigError: no reason, or the kill-switch file cannot be written (nothing released).
    """
    switch = KillSwitch.from_settings(settings)
    status = switch.release(reason, who())
    report = IncidentReport(incident_id="release", reason=reason, by=who(), started_ms=_now_ms())
    _ledger_record(settings, report, "killswitch.released", f"kill switch released by {report.by}: {reason}",
                   level="warning")
    _alert(settings, report, "killswitch.released", "warning", f"kill switch released by {report.by}", reason)
    if report.degraded:
        status.degraded.extend(report.degraded)
    return status
