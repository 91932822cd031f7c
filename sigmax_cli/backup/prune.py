"""``backup prune``: keep N daily / weekly / monthly backups, delete the rest.

The policy is restic's ``forget --keep-daily/--keep-weekly/--keep-monthly``: walking the
backups newest first, each rule keeps the newest backup of each of its N most recent
buckets (UTC calendar day, ISO week, calendar month) that hold at least one backup. A
backup is kept when any rule keeps it. On top of that, the newest *verified* backup is
always kept, whatever the rules say: it is the one a restore can trust.

Only valid archives are candidates; files that fail their structure check are reported
and left alone (look at them before deleting by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError

RULES = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Candidate:
    """A backup as the policy sees it: ``created_ms`` (UTC ms) and whether it was verified."""

    name: str
    created_ms: int
    verified: bool = False


@dataclass
class PrunePlan:
    """``keep`` maps each kept name to its reasons (``daily 2026-01-05``, ``newest verified``)."""

    keep: dict[str, list[str]] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)


def _bucket(rule: str, ms: int) -> str:
    day = datetime.fromtimestamp(ms / 1000, UTC)
    if rule == "daily":
        return day.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return day.strftime("%Y-%m")


def plan_prune(candidates: list[Candidate], *, keep_daily: int, keep_weekly: int,
               keep_monthly: int = 0) -> PrunePlan:
    """Decide which backups to keep (see the module docstring). Pure: no I/O.

    Args:
        candidates: valid backups, any order.
        keep_daily, keep_weekly, keep_monthly: N per rule (0 disables the rule).

    Raises:
        ConfigError: a negative N, or every N zero (that would delete all but one backup).
    """
    counts = {"daily": keep_daily, "weekly": keep_weekly, "monthly": keep_monthly}
    for rule, n in counts.items():
        if n < 0:
            raise ConfigError(f"--keep-{rule} is {n}", "give a number of backups, 0 or more")
    if not any(counts.values()):
        raise ConfigError("every --keep-* is 0, which would delete all backups but the newest verified one",
                          "keep at least one, e.g. --keep-daily 7")
    ordered = sorted(candidates, key=lambda c: (c.created_ms, c.name), reverse=True)
    plan = PrunePlan()
    left = dict(counts)
    last: dict[str, str | None] = dict.fromkeys(RULES)
    for cand in ordered:
        for rule in RULES:
            bucket = _bucket(rule, cand.created_ms)
            if left[rule] > 0 and bucket != last[rule]:
                plan.keep.setdefault(cand.name, []).append(f"{rule} {bucket}")
                left[rule] -= 1
                last[rule] = bucket
    newest_verified = next((c for c in ordered if c.verified), None)
    if newest_verified is not None:
        plan.keep.setdefault(newest_verified.name, []).append("newest verified")
    plan.remove = [c.name for c in ordered if c.name not in plan.keep]
    return plan


@dataclass
class PruneResult:
    """What :func:`prune` kept, removed (or would remove, with ``dry_run``) and left alone."""

    directory: Path
    dry_run: bool
    keep: dict[str, list[str]]
    remove: list[str]
    invalid: list[str]
    freed_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "dry_run": self.dry_run,
                "keep": [{"name": n, "reasons": r} for n, r in self.keep.items()],
                "remove": self.remove, "invalid": self.invalid, "freed_bytes": self.freed_bytes}


def prune(settings: Any, *, keep_daily: int, keep_weekly: int, keep_monthly: int = 0,
          directory: Path | None = None, dry_run: bool = False) -> PruneResult:
    """Apply :func:`plan_prune` to the archives of ``directory`` under the backup lock.

    Deleted archives also lose their row in the ledger's ``backups`` table.

    Raises:
        ConfigError: see :func:`plan_prune`.
        LockHeld: a backup or restore is running (exit 11).
    """
    from sigmax_cli.backup.catalog import backups_dir, forget, list_backups
    from sigmax_cli.backup.lock import BackupLock

    directory = Path(directory) if directory else backups_dir(settings)
    with BackupLock(settings.home, "prune"):
        listing = list_backups(settings, directory)
        valid = {item.path.name: item for item in listing if item.valid}
        plan = plan_prune([Candidate(n, i.created_ms or 0, i.verified_ms is not None) for n, i in valid.items()],
                          keep_daily=keep_daily, keep_weekly=keep_weekly, keep_monthly=keep_monthly)
        freed = sum(valid[n].size_bytes for n in plan.remove)
        if not dry_run:
            for name in plan.remove:
                valid[name].path.unlink(missing_ok=True)
            forget(settings, [valid[n].path for n in plan.remove])
    keep = {n: plan.keep[n] for n in sorted(plan.keep, key=lambda n: valid[n].created_ms or 0, reverse=True)}
    return PruneResult(directory, dry_run, keep, plan.remove, [i.path.name for i in listing if not i.valid], freed)
