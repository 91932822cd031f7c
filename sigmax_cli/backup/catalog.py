"""Where archives live, what the ledger's ``backups`` table says about them, and ``backup list``.

The ledger's ``backups`` table records each archive (path, tag, created_ms, sha256 of the
whole file, size_bytes, verified_ms); ``sigmax health`` reads it for the backup age. The
archive files are the truth, though: ``list`` reads them (headers and manifest only), and
takes only the ``verified`` time from the ledger, which may be gone after a lost disk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigmax_cli.backup.archive import is_archive_name, read_index
from sigmax_cli.errors import ArchiveNotFound, SigmaxError


def backups_dir(settings: Any) -> Path:
    """``backup.dir`` when set, else ``<home>/backups``."""
    return Path(settings.backup.dir) if settings.backup.dir else Path(settings.home) / "backups"


def _ledger(settings: Any):
    from sigmax_cli.ledger import Ledger

    return Ledger(settings.ledger_url, create=False)


def recorded(settings: Any) -> dict[str, dict[str, Any]] | None:
    """Rows of the ``backups`` table by resolved path; None when the ledger cannot be read.

    Reads only: no migration runs and no SQLite file is created (a dry run changes nothing).
    """
    from sigmax_cli.ledger.queries.peek import recorded_backups

    return recorded_backups(settings.ledger_url)


def record(settings: Any, path: Path, *, tag: str | None, created_ms: int, sha256: str, size: int,
           verified_ms: int | None) -> bool:
    """Insert or replace the ``backups`` row of ``path``. False when the ledger cannot be written
    (no ledger yet, database down): the archive stands on its own, the record is a convenience."""
    try:
        with _ledger(settings) as ledger:
            ledger.record_backup(str(Path(path).resolve()), tag=tag, created_ms=created_ms, sha256=sha256,
                                 size_bytes=size, verified_ms=verified_ms)
    except SigmaxError:
        return False
    return True


def forget(settings: Any, paths: list[Path]) -> None:
    """Delete the ``backups`` rows of ``paths`` (after prune removed the files)."""
    keys = [str(Path(p).resolve()) for p in paths]
    if not keys:
        return
    try:
        with _ledger(settings) as ledger:
            ledger.forget_backups(keys)
    except SigmaxError:
        pass


@dataclass
class Listing:
    """One file of the backups directory as ``backup list`` shows it.

    Attributes:
        valid: headers and manifest passed :func:`read_index` (member data not hashed).
        error: why not, one sentence, when ``valid`` is False.
        created_ms, verified_ms: UTC ms; ``verified_ms`` from the ledger (None: never, or unknown).
        size_bytes: file size.
        reason: ``manual`` or ``pre-restore`` (the safety backup a restore takes).
    """

    path: Path
    valid: bool
    size_bytes: int
    created_ms: int | None = None
    tag: str | None = None
    reason: str | None = None
    kinds: list[str] | None = None
    verified_ms: int | None = None
    sha256: str | None = None
    error: str | None = None

    def to_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        now_ms = now_ms or int(time.time() * 1000)
        return {"name": self.path.name, "path": str(self.path), "valid": self.valid, "tag": self.tag,
                "reason": self.reason, "created_ms": self.created_ms,
                "age_s": round((now_ms - self.created_ms) / 1000, 3) if self.created_ms else None,
                "size_bytes": self.size_bytes, "members": self.kinds, "verified_ms": self.verified_ms,
                "sha256": self.sha256, "error": self.error}


def list_backups(settings: Any, directory: Path | None = None) -> list[Listing]:
    """Every archive file in ``directory`` (default :func:`backups_dir`), newest first.

    Temporary files of unfinished backups (``.…partial``) are not archives and are not
    listed; a visible file that fails :func:`read_index` is listed with ``valid=False``.
    """
    directory = Path(directory) if directory else backups_dir(settings)
    if not directory.is_dir():
        return []
    rows = recorded(settings) or {}
    out: list[Listing] = []
    for path in directory.iterdir():
        if not is_archive_name(path.name) or not path.is_file():
            continue
        size = path.stat().st_size
        try:
            index = read_index(path, check_compat=False)
        except SigmaxError as exc:
            out.append(Listing(path, False, size, error=exc.sentence()))
            continue
        row = rows.get(str(path.resolve()), {})
        out.append(Listing(path, True, size, index.created_ms, index.tag, index.manifest.get("reason"),
                           index.kinds, row.get("verified_ms"), row.get("sha256")))
    out.sort(key=lambda x: (x.created_ms or 0, x.path.name), reverse=True)
    return out


def latest(settings: Any, directory: Path | None = None) -> Path:
    """The newest valid archive that is not a restore's safety backup (``reason`` pre-restore).

    Raises:
        ArchiveNotFound: there is none.
    """
    directory = Path(directory) if directory else backups_dir(settings)
    for item in list_backups(settings, directory):
        if item.valid and item.reason != "pre-restore":
            return item.path
    raise ArchiveNotFound(f"there is no valid backup in {directory}",
                          "name an archive, or make one with `sigmax backup`")
