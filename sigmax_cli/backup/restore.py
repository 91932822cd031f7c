"""``sigmax restore``: put an archive back, safely.

Order of work (nothing is changed before step 5):

1. take the backup lock (no backup, prune or other restore meanwhile);
2. verify the archive fully (:func:`sigmax_cli.backup.verify.opened`) and extract it;
3. plan each member against the current state (this also proves every target is
   reachable and every tool present); ``--dry-run`` stops here and shows the plan;
4. refuse while a bot runs (a ``running`` heartbeat in the ledger younger than
   ``backup.heartbeat_fresh_seconds``) or while the kill switch is not engaged, unless
   ``--force``;
5. take a safety backup of the current state (tag and reason ``pre-restore``; ``--latest``
   skips those), then restore each member: the ledger (SQLite swapped atomically, or
   PostgreSQL in one transaction), Redis keys, model files, profiles;
6. after a ledger restore, put back the ``backups`` rows of archives the restored ledger
   does not know (the safety backup among them) and record a ``backup.restored`` event.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigmax_cli.backup.members import MemberPlan, member_for
from sigmax_cli.errors import ArchiveNotFound, ConfigError, TargetBusy


@dataclass
class RestoreResult:
    """What a restore did, or with ``dry_run`` would do.

    Attributes:
        plans: per member kind, the changes (tables with row counts before/after, keys, files).
        blockers: why a restore without ``--force`` is refused now (empty: none).
        safety_backup: the archive of the state before the restore (None for a dry run, or
            when there was nothing to save).
        applied: per member kind, counts of what was restored.
    """

    archive: Path
    dry_run: bool
    kinds: list[str]
    plans: list[MemberPlan]
    blockers: list[str]
    forced: bool = False
    safety_backup: Path | None = None
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"archive": str(self.archive), "dry_run": self.dry_run, "members": self.kinds,
                "plans": [p.to_dict() for p in self.plans], "blockers": self.blockers, "forced": self.forced,
                "safety_backup": str(self.safety_backup) if self.safety_backup else None, "applied": self.applied}


def busy_reasons(settings: Any, now_ms: int | None = None) -> list[str]:
    """Why restoring now could hurt a running bot: fresh ``running`` heartbeats in the
    ledger, and a kill switch that is not engaged. Empty when it is safe."""
    from sigmax_cli.errors import LedgerError
    from sigmax_cli.ledger.queries.peek import fresh_running_heartbeats

    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    reasons: list[str] = []
    fresh_ms = int(settings.backup.heartbeat_fresh_seconds * 1000)
    try:
        rows = fresh_running_heartbeats(settings.ledger_url, now_ms - fresh_ms)
    except LedgerError as exc:  # the plan already reached the ledger: it is there but unreadable
        reasons.append(exc.cause)
        rows = []
    for row in rows:
        age = max(0.0, (now_ms - row["ts_ms"]) / 1000)
        reasons.append(f"bot {row['bot_id']} (pid {row['pid']} on {row['host']}) sent a heartbeat {age:.0f} s ago")
    try:
        from sigmax_cli.risk.killswitch import KillSwitch
    except ImportError:  # the kill switch is not installed: it cannot be engaged
        reasons.append("the kill switch is not engaged")
    else:
        if not KillSwitch.from_settings(settings).status().engaged:
            reasons.append("the kill switch is not engaged")
    return reasons


def restore(settings: Any, archive: Path | None = None, *, latest: bool = False, directory: Path | None = None,
            only: list[str] | None = None, dry_run: bool = False, force: bool = False,
            observer: Any = None) -> RestoreResult:
    """Restore ``archive`` (or the newest valid one with ``latest``) over the current state.

    Args:
        settings: the invocation's settings: where the ledger, Redis, models and profiles are.
        archive: the archive file; exclusive with ``latest``.
        latest: the newest valid archive in ``directory`` that is not a safety backup.
        directory: where ``latest`` looks; default ``backup.dir`` or ``<home>/backups``.
        only: restore only these member kinds (default: all the archive holds).
        dry_run: verify and plan only; change nothing.
        force: restore even while a bot's heartbeat is fresh or the kill switch is released.
        observer: anything with ``step(text)``, for progress.

    Raises:
        ConfigError: ``archive`` and ``latest`` both or neither; ``only`` names a kind the
            archive lacks; the archive's ledger backend differs from the configured one.
        ArchiveNotFound (10), LockHeld (11), ChecksumMismatch (12), TargetBusy (13),
        IncompatibleArchive (69), LedgerError: see the module docstring.
    """
    from sigmax_cli.backup.catalog import latest as latest_archive
    from sigmax_cli.backup.catalog import recorded
    from sigmax_cli.backup.lock import BackupLock
    from sigmax_cli.backup.verify import clean_stale_scratch, opened

    if (archive is None) == (not latest):
        raise ConfigError("name one archive or pass --latest" if archive is None else
                          "an archive and --latest name two different backups", "give exactly one of them")
    if archive is not None and not Path(archive).is_file():
        raise ArchiveNotFound(f"there is no archive at {archive}", "list the archives with `sigmax backup list`")
    with BackupLock(settings.home, "restore", settings.ledger_url if only is None or "ledger" in only else None):
        clean_stale_scratch(settings.home)  # what a restore killed half-way left (kill -9, power cut)
        path = Path(archive) if archive is not None else latest_archive(settings, directory)
        with opened(settings, path, kinds=only, observer=observer) as arc:
            kinds = [k for k in arc.index.kinds if only is None or k in only]
            lacking = [k for k in (only or []) if k not in arc.index.kinds]
            if lacking:
                raise ConfigError(f"archive {path.name} holds no {lacking[0]}",
                                  f"choose --only among {', '.join(arc.index.kinds)}")
            members = {k: member_for(k, settings, arc.index.entries(k)[0].get("backend")) for k in kinds}
            plans = []
            for kind in kinds:
                if observer is not None:
                    observer.step(f"comparing {kind} with the current state")
                plans.append(members[kind].plan(arc.files[kind]))
            blockers = busy_reasons(settings)
            result = RestoreResult(path, dry_run, kinds, plans, blockers, forced=bool(blockers) and force)
            if dry_run:
                return result
            if blockers and not force:
                raise TargetBusy("restore refused: " + "; ".join(blockers),
                                 "stop the bots and engage the kill switch (`sigmax panic --reason ...`), "
                                 "or pass --force")
            safety = _safety_backup(settings, kinds, observer)
            result.safety_backup = safety.path if safety else None
            rows = list((recorded(settings) or {}).values()) if "ledger" in kinds else []
            if safety is not None and "ledger" in kinds:
                rows.append({"path": str(safety.path.resolve()), "tag": safety.tag, "created_ms": safety.created_ms,
                             "sha256": safety.sha256, "size_bytes": safety.size_bytes,
                             "verified_ms": safety.verified_ms})
            for plan in plans:
                if observer is not None:
                    observer.step(f"restoring {plan.kind}")
                result.applied[plan.kind] = members[plan.kind].apply(arc.files[plan.kind], plan)
            if "ledger" in kinds:
                _after_ledger_restore(settings, result, rows)
    return result


def _safety_backup(settings: Any, kinds: list[str], observer: Any):
    """A verified archive of what the restore is about to replace (None when there is nothing).

    Recorded in the ledger here only when the ledger is not being restored; otherwise the
    restore records it in the restored ledger (recording it first would also create the
    ledger's tables in an empty target database).
    """
    from sigmax_cli.backup.create import NothingToBackUp, create_backup

    if observer is not None:
        observer.step("taking a safety backup of the current state")
    try:
        return create_backup(settings, tag="pre-restore", include=kinds, reason="pre-restore", observer=observer,
                             locked=True, skip_empty=True, record_it="ledger" not in kinds)
    except NothingToBackUp:
        return None


def _after_ledger_restore(settings: Any, result: RestoreResult, rows: list[dict[str, Any]]) -> None:
    """Put back the ``backups`` rows the restored ledger lacks; record a ``backup.restored`` event."""
    from sigmax_cli.errors import SigmaxError
    from sigmax_cli.ledger import Ledger, now_ms

    try:
        with Ledger(settings.ledger_url) as ledger:
            ledger.put_back_backups(rows)
            ledger.record_event(None, now_ms(), "warning", "backup.restored",
                                f"restored {', '.join(result.kinds)} from {result.archive.name}",
                                {"archive": str(result.archive), "members": result.kinds, "forced": result.forced,
                                 "safety_backup": str(result.safety_backup) if result.safety_backup else None})
    except SigmaxError:
        pass  # the restore itself succeeded; the records are a courtesy
