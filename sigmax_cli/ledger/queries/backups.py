"""The backup catalogue (``backups`` table): one row per archive written, by resolved path.

The archives stand on their own; the catalogue is a convenience for ``backup list`` and
``health``. Times are UTC ms since epoch; sizes in bytes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from sigmax_cli.ledger import schema as s
from sigmax_cli.ledger.base import LedgerBase


class BackupQueries(LedgerBase):
    """Catalogue writes (a mixin of :class:`~sigmax_cli.ledger.Ledger`); reads that must not
    create or migrate a ledger are in :mod:`sigmax_cli.ledger.queries.peek`.

    Raises (every method):
        LedgerUnavailable: the database does not answer.
    """

    def record_backup(self, path: str, *, tag: str | None, created_ms: int, sha256: str, size_bytes: int,
                      verified_ms: int | None) -> None:
        """Insert or replace the row of archive ``path`` (a resolved path)."""
        b = s.backups
        with self._writing(), self.engine.begin() as conn:
            conn.execute(delete(b).where(b.c.path == path))
            conn.execute(b.insert().values(path=path, tag=tag, created_ms=created_ms, sha256=sha256,
                                           size_bytes=size_bytes, verified_ms=verified_ms))

    def forget_backups(self, paths: list[str]) -> None:
        """Delete the rows of archives ``paths`` (resolved paths)."""
        if not paths:
            return
        b = s.backups
        with self._writing(), self.engine.begin() as conn:
            conn.execute(delete(b).where(b.c.path.in_(paths)))

    def put_back_backups(self, rows: list[dict[str, Any]]) -> int:
        """Insert the catalogue rows (``backups`` columns; ``id`` ignored) whose path the
        ledger lacks, as after a restore of an older ledger; returns how many."""
        b = s.backups
        with self._writing(), self.engine.begin() as conn:
            have = {r[0] for r in conn.execute(select(b.c.path))}
            missing = [{k: v for k, v in row.items() if k != "id"} for row in rows if row["path"] not in have]
            if missing:
                conn.execute(b.insert(), missing)
        return len(missing)
