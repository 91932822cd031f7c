"""Kill switch: released, and readable everywhere it is kept.

Reads :meth:`sigmax_cli.risk.killswitch.KillSwitch.status` (the file in ``SIGMAX_HOME``,
plus the Redis key when Redis is configured), each store within the check's time limit.

``killswitch:engaged`` (1 engaged / 0 released / no value when unknown)
    ENGAGED: CRITICAL with its reason, who engaged it and since when - every bot is halted
    until an operator releases it (``sigmax panic --release``). UNKNOWN (Redis unreachable
    or hung, the flag file unreadable, and no store says engaged): CRITICAL with the reason,
    not the plugin state UNKNOWN - the check itself worked, and what it found stops trading
    just as an engage does: running bots halt and no bot may start, since a remote engage
    could not be seen (fail closed). RELEASED everywhere: OK.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sigmax_cli.health.base import Check, CheckContext, Outcome, Status


class KillSwitchCheck(Check):
    """State of the kill switch (see the module docstring)."""

    name = "killswitch"
    primary = "engaged"
    description = "kill switch: engaged or unknown (critical, with the reason) or released"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        from sigmax_cli.risk.killswitch import KillSwitch

        status = KillSwitch.from_settings(ctx.settings).status(timeout_s=min(1.0, ctx.left_s()))
        degraded = "; ".join(status.degraded)
        if status.engaged:
            parts = [f"engaged ({status.source}): {status.reason or 'no reason recorded'}"]
            if status.by:
                parts.append(f"by {status.by}")
            if status.since_ms:
                parts.append(f"since {datetime.fromtimestamp(status.since_ms / 1000, UTC):%Y-%m-%d %H:%M} UTC")
            if degraded:
                parts.append(f"({degraded})")
            return [self.result("engaged", Status.CRITICAL, " ".join(parts), ctx, value=1)]
        if not status.released:
            return [self.result("engaged", Status.CRITICAL,
                                f"state UNKNOWN ({status.unknown_reason}): bots halt and none may start until it "
                                "can be read", ctx, value=None)]
        where = "file and Redis" if ctx.settings.redis_url is not None else "file"
        return [self.result("engaged", Status.OK, f"released ({where})", ctx, value=0)]
