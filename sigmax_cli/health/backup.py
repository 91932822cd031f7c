"""Backups: the newest archive is recent, was verified, and is still there.

Reads the newest row of the ledger's ``backups`` table (written by ``sigmax backup``:
``path``, ``created_ms``, ``verified_ms``).

Measurements:

``backup:age`` (h)
    Hours since the newest backup was made, graded by ``health.backup_age_h`` (defaults
    26 / 50: a daily cron backup plus two hours of slack; two missed days is critical).
    No backup recorded at all: WARNING - an unattended bot without backups is one disk
    failure from losing its ledger. Skipped while the ledger has no ``backups`` table.
``backup:verified`` (1 yes / 0 no)
    The newest archive was verified after it was written (``sigmax backup verify``).
    Not verified, or its file is missing on this host (an absolute path that does not
    exist): WARNING.

UNKNOWN when the ledger cannot be read (the ledger check says why).
"""

from __future__ import annotations

from pathlib import Path

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status, fmt_duration
from sigmax_cli.ledger import reader as db


class BackupCheck(Check):
    """Age and verification of the newest backup (see the module docstring)."""

    name = "backup"
    primary = "age"
    description = "backups: age and verification of the newest archive"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        try:
            with db.Reader(ctx.settings.ledger_url, ctx.left_s()) as reader:
                try:
                    newest = reader.newest_backup()
                except LookupError:
                    return [self.skip("age", "the ledger has no backups table (an older schema)")]
        except SigmaxError as exc:
            return [self.result("age", Status.UNKNOWN, f"cannot read backups: {exc.cause}", ctx)]
        if newest is None:
            return [self.result("age", Status.WARNING, "no backup recorded; schedule `sigmax backup` in cron", ctx)]
        path, created_ms, verified_ms = newest
        age_h = round((ctx.clock() - int(created_ms)) / 3_600_000, 2)
        age = self.graded("age", age_h, "h", Limits.of(ctx.health.backup_age_h),
                          f"newest backup {Path(path).name} made {fmt_duration(age_h * 3600)} ago", ctx)
        archive = Path(path)
        if archive.is_absolute() and not archive.exists():
            verified = self.result("verified", Status.WARNING, f"newest backup {archive} is missing on this host", ctx,
                                   value=0)
        elif verified_ms is None:
            verified = self.result("verified", Status.WARNING, f"newest backup {archive.name} was never verified; "
                                   f"run `sigmax backup verify {archive}`", ctx, value=0)
        else:
            verified = self.result("verified", Status.OK, f"verified {fmt_duration((ctx.clock() - verified_ms) / 1000)}"
                                   " ago", ctx, value=1)
        return [age, verified]
