"""Kill switch: released, and readable everywhere it is kept.

Reads :meth:`sigmax_cli.risk.killswitch.KillSwitch.status` (the file in ``SIGMAX_HOME``,
plus the Redis key when Redis is configured).

``killswitch:engaged`` (1 engaged / 0 released)
    Engaged: CRITICAL with its reason, who engaged it and since when - every bot is
    halted until an operator releases it (``sigmax panic --release``). Released, but a
    store could not be read (Redis down): WARNING, since a remote engage would not be seen
    from here. Released everywhere: OK.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sigmax_cli.health.base import Check, CheckContext, Outcome, Status


class KillSwitchCheck(Check):
    """State of the kill switch (see the module docstring)."""

    name = "killswitch"
    primary = "engaged"
    description = "kill switch: engaged (critical, with its reason) or released"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        from sigmax_cli.risk.killswitch import KillSwitch

        status = KillSwitch.from_settings(ctx.settings).status()
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
        if degraded:
            return [self.result("engaged", Status.WARNING, f"released in what could be read, but {degraded}", ctx,
                                value=0)]
        where = "file and Redis" if ctx.settings.redis_url is not None else "file"
        return [self.result("engaged", Status.OK, f"released ({where})", ctx, value=0)]
