"""The baseline (ignore) file: findings a team has accepted, each with a reason and an
expiry date.

A TOML file of ``[[ignore]]`` tables::

    [[ignore]]
    id = "bandit/B602"                        # finding id <tool>/<rule>; * and ? globs allowed
    path = "tests/fixtures/security_tree/*"   # optional glob on the finding's path (* crosses /)
    fingerprint = "<32 hex chars>"            # optional: exactly one finding (from the report)
    reason = "planted problems for the security-scan tests"   # required
    expires = 2027-06-30                      # required, a TOML date (UTC day)

An entry needs ``id`` or ``fingerprint``, a non-empty ``reason`` and ``expires``. It hides the
findings it matches until its expiry day has passed (it still applies on that day); after
that the findings count again and the report says which entry expired. Entries that match
nothing are named too, so the file does not rot.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sigmax_cli.errors import ConfigError, NotFoundError
from sigmax_cli.security.base import Finding

KEYS = {"id", "path", "fingerprint", "reason", "expires"}
FIX = "give every [[ignore]] entry an id (or fingerprint), a reason and an expires = YYYY-MM-DD date"


@dataclass(frozen=True)
class BaselineEntry:
    """One accepted finding pattern (see the module docstring). ``number``: 1-based position."""

    number: int
    reason: str
    expires: dt.date
    id: str | None = None
    path: str | None = None
    fingerprint: str | None = None

    def matches(self, finding: Finding) -> bool:
        """Whether this entry names ``finding`` (expiry not considered)."""
        if self.fingerprint is not None and self.fingerprint != finding.fingerprint:
            return False
        if self.id is not None and not fnmatch.fnmatchcase(finding.id, self.id):
            return False
        if self.path is not None and (finding.path is None or not fnmatch.fnmatchcase(finding.path, self.path)):
            return False
        return True

    def label(self) -> str:
        """``entry 3 (bandit/B602 in tests/*)`` for notes."""
        what = self.id or f"fingerprint {self.fingerprint}"
        return f"entry {self.number} ({what}{f' in {self.path}' if self.path else ''})"


@dataclass(frozen=True)
class Suppressed:
    """A finding the baseline hides, and the entry that hides it."""

    finding: Finding
    entry: BaselineEntry


def load_baseline(path: Path) -> list[BaselineEntry]:
    """Parse and validate a baseline file.

    Raises:
        NotFoundError: the file does not exist.
        ConfigError: not TOML, or an entry lacks an id/fingerprint, a reason or a date, or
            has an unknown key (the entry is named by its position).
    """
    if not path.is_file():
        raise NotFoundError(f"baseline file {path} does not exist", "check --baseline or create it")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read baseline {path} ({exc})", "check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"baseline {path} is not valid TOML ({exc})", "fix the file") from None
    extra = set(data) - {"ignore"}
    if extra:
        raise ConfigError(f"baseline {path} has unknown table(s) {', '.join(sorted(extra))}",
                          "put every entry in an [[ignore]] table")
    raw = data.get("ignore", [])
    if not isinstance(raw, list):
        raise ConfigError(f"baseline {path}: ignore must be an array of tables", "write [[ignore]] entries")
    return [_entry(path, n, item) for n, item in enumerate(raw, start=1)]


def _entry(path: Path, number: int, item: object) -> BaselineEntry:
    where = f"baseline {path} entry {number}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where} is not a table", FIX)
    unknown = set(item) - KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}", FIX)
    for key in ("id", "path", "fingerprint", "reason"):
        if key in item and not isinstance(item[key], str):
            raise ConfigError(f"{where}: {key} must be a string", FIX)
    if not item.get("id") and not item.get("fingerprint"):
        raise ConfigError(f"{where} names no finding (id or fingerprint)", FIX)
    reason = str(item.get("reason", "")).strip()
    if not reason:
        raise ConfigError(f"{where} has no reason", FIX)
    expires = item.get("expires")
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            expires = None
    if isinstance(expires, dt.datetime) or not isinstance(expires, dt.date):
        raise ConfigError(f"{where} has no valid expires date", FIX)
    return BaselineEntry(number=number, reason=reason, expires=expires, id=item.get("id") or None,
                         path=item.get("path") or None, fingerprint=item.get("fingerprint") or None)


def apply_baseline(
    findings: Sequence[Finding], entries: Sequence[BaselineEntry], today: dt.date,
    ran: set[str] | None = None,
) -> tuple[list[Finding], list[Suppressed], list[str]]:
    """Split ``findings`` into active and suppressed.

    Args:
        today: the UTC day; an entry applies while ``today <= expires``.
        ran: tools that completed; an unused entry of another tool (skipped, failed) is not
            called stale. ``None``: every tool ran.

    Returns:
        ``(active, suppressed, notes)``: notes name expired entries (whose findings are
        active again) and entries that matched no finding.
    """
    active: list[Finding] = []
    suppressed: list[Suppressed] = []
    expired_hits: dict[int, int] = {}
    used: set[int] = set()
    for finding in findings:
        entry = next((e for e in entries if e.matches(finding)), None)
        if entry is None:
            active.append(finding)
            continue
        used.add(entry.number)
        if today > entry.expires:
            expired_hits[entry.number] = expired_hits.get(entry.number, 0) + 1
            active.append(finding)
        else:
            suppressed.append(Suppressed(finding, entry))
    notes: list[str] = []
    for entry in entries:
        if entry.number in expired_hits:
            notes.append(f"baseline {entry.label()} expired on {entry.expires.isoformat()}: "
                         f"its {expired_hits[entry.number]} finding(s) count again")
        elif entry.number not in used and (ran is None or entry.id is None or entry.id.split("/")[0] in ran):
            notes.append(f"baseline {entry.label()} matches no finding: remove it")
    return active, suppressed, notes
