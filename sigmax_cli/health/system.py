"""This host: the state directory is usable, its disk has room, memory and CPU are not exhausted.

Measurements (through psutil):

``system:home``
    ``SIGMAX_HOME`` exists, is a directory, and this user may read, write and enter it
    (the ledger, the kill-switch file and backups live there). Otherwise CRITICAL; the
    disk is then measured on its nearest existing parent.
``system:disk_free`` (%)
    Free space of the file system holding ``SIGMAX_HOME``, as ``df`` counts it (space
    reserved for root is not free), graded by ``health.disk_free_pct`` (lower is worse).
``system:memory_used`` (%)
    ``psutil.virtual_memory().percent``: RAM not available to new processes without
    swapping, graded by ``health.memory_used_pct``.
``system:load`` (load per CPU)
    The 1-minute load average divided by the logical CPU count, graded by
    ``health.load_per_cpu``. Skipped where the OS has no load average.
"""

from __future__ import annotations

import os
from pathlib import Path

from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, short_error


class SystemCheck(Check):
    """Disk of SIGMAX_HOME, memory and load of this host (see the module docstring)."""

    name = "system"
    primary = "disk_free"
    description = "this host: SIGMAX_HOME usable, free disk, memory, CPU load"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        import psutil

        home = Path(ctx.settings.home)
        out: list[Outcome] = [self._home(home, ctx)]
        probe = _existing_parent(home)
        try:
            usage = psutil.disk_usage(str(probe))
        except OSError as exc:
            out.append(self.result("disk_free", Status.UNKNOWN, f"cannot measure the disk of {probe} "
                                   f"({short_error(exc)})", ctx))
        else:
            free_pct = round(100.0 - usage.percent, 1)
            out.append(self.graded("disk_free", free_pct, "%", Limits.of(ctx.health.disk_free_pct),
                                   f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.1f} GB at {probe}", ctx))
        memory = psutil.virtual_memory()
        out.append(self.graded("memory_used", round(memory.percent, 1), "%", Limits.of(ctx.health.memory_used_pct),
                               f"{memory.available / 1e9:.1f} GB available of {memory.total / 1e9:.1f} GB", ctx))
        try:
            load1 = os.getloadavg()[0]
        except (AttributeError, OSError):
            out.append(self.skip("load", "this OS reports no load average"))
        else:
            cpus = psutil.cpu_count() or 1
            per_cpu = round(load1 / cpus, 2)
            out.append(self.graded("load", per_cpu, "", Limits.of(ctx.health.load_per_cpu),
                                   f"1-min load {load1:.2f} on {cpus} CPUs", ctx))
        return out

    def _home(self, home: Path, ctx: CheckContext) -> Outcome:
        if not home.exists():
            return self.result("home", Status.CRITICAL, f"SIGMAX_HOME {home} does not exist; "
                               "check --home / SIGMAX_HOME (cron has its own environment)", ctx, value=False)
        if not home.is_dir():
            return self.result("home", Status.CRITICAL, f"SIGMAX_HOME {home} is not a directory", ctx, value=False)
        missing = [word for flag, word in ((os.R_OK, "read"), (os.W_OK, "write"), (os.X_OK, "enter"))
                   if not os.access(home, flag)]
        if missing:
            return self.result("home", Status.CRITICAL, f"this user cannot {' or '.join(missing)} SIGMAX_HOME {home}",
                               ctx, value=False)
        return self.result("home", Status.OK, f"{home} is usable", ctx, value=True)


def _existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path("/")
