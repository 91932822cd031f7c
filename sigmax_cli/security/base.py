"""The ``Scanner`` interface of ``sigmax security-scan`` and the values it passes around.

A :class:`Scanner` has a ``name`` (the one ``--skip`` takes: ``pip-audit``, ``bandit``,
``secrets``, ``config``) and one method, :meth:`Scanner.scan`, which looks at a path and
returns either a :class:`ScanResult` (it looked: zero or more :class:`Finding` and notes
on what it could not check) or a :class:`ScanFailure` (it could not look: tool missing,
service unreachable, nothing audited). A failure is never an empty "clean" result: the
command exits 2 on any failure (after pip-audit's own ``_service/interface.py``, where a
skipped dependency is its own type with a reason).

Severities, lowest first: ``low``, ``medium``, ``high``, ``critical``; each scanner's module
docstring says how it maps its tool's ratings onto them.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar


class Severity(StrEnum):
    """How bad a finding is; ordered (``Severity.high > Severity.medium``)."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        """0 for low ... 3 for critical."""
        return _RANK[self.value]

    def __lt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:  # type: ignore[override]
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}
SEVERITIES = tuple(Severity)


@dataclass(frozen=True)
class Finding:
    """One problem a scanner found.

    Attributes:
        rule_id: stable id of the check within its tool (``B602``, ``binance-api-secret``,
            ``GHSA-8q59-q68h-6hv4``, ``env-file-permissions``); SARIF rule ids are
            ``<tool>/<rule_id>``.
        tool: the scanner's name (``pip-audit``, ``bandit``, ``secrets``, ``config``).
        severity: see :class:`Severity`.
        message: what is wrong, one sentence; never a secret in clear (see :func:`redact`).
        fix: what to do about it, one sentence.
        path: file the finding is in, POSIX, relative to the scanned root when inside it,
            else absolute; ``None`` when it concerns no file (the environment).
        line: 1-based line in ``path``, or ``None``.
        fingerprint: 32 hex chars, stable across runs and line moves (see
            :func:`fingerprint`); baseline entries and SARIF ``partialFingerprints`` use it.
        title: short name of the rule (SARIF ``shortDescription``).
        help_uri: where the rule is documented, if anywhere.
    """

    rule_id: str
    tool: str
    severity: Severity
    message: str
    fix: str
    path: str | None
    line: int | None
    fingerprint: str
    title: str = ""
    help_uri: str | None = None

    @property
    def id(self) -> str:
        """``<tool>/<rule_id>``: the rule id shown to users and written to SARIF."""
        return f"{self.tool}/{self.rule_id}"

    @property
    def location(self) -> str:
        """``path:line``, ``path``, or ``-``."""
        if self.path is None:
            return "-"
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class ScanResult:
    """A scanner looked. ``notes`` say what it could not check and why (shown to users)."""

    tool: str
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    status: ClassVar[str] = "ok"


@dataclass(frozen=True)
class ScanFailure:
    """A scanner could not look (tool missing, service unreachable, nothing audited).

    Attributes:
        reason: what went wrong, one sentence without a trailing period.
        fix: what to do about it.
    """

    tool: str
    reason: str
    fix: str = ""
    seconds: float = 0.0
    findings: tuple[Finding, ...] = field(default=(), init=False)
    notes: tuple[str, ...] = field(default=(), init=False)
    status: ClassVar[str] = "failed"


@dataclass(frozen=True)
class ScanSkipped:
    """A scanner the user left out (``--skip``); shown, never counted as clean."""

    tool: str
    reason: str
    seconds: float = 0.0
    findings: tuple[Finding, ...] = field(default=(), init=False)
    notes: tuple[str, ...] = field(default=(), init=False)
    status: ClassVar[str] = "skipped"


Outcome = ScanResult | ScanFailure | ScanSkipped


class Scanner(ABC):
    """One kind of audit. Implementations live one per module beside this one."""

    name: ClassVar[str]

    @abstractmethod
    def scan(self, path: Path) -> ScanResult | ScanFailure:
        """Audit ``path`` (a directory or one file).

        Returns a :class:`ScanFailure` (never an empty result) when the scan could not run.
        """


# -- helpers shared by the scanners ------------------------------------------------------------
PRUNED_DIRS = frozenset({
    ".git", ".hg", ".svn", "__pycache__", ".venv", "venv", "node_modules", ".tox", ".nox",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".eggs", "build", "dist", "site-packages",
})
"""Directories no scanner walks into: VCS data, caches, virtual environments, build output."""


def iter_files(root: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Path]:
    """Regular files under ``root`` (or ``root`` itself), sorted, outside :data:`PRUNED_DIRS`
    and ``*.egg-info``; only names ending in one of ``suffixes`` when given."""
    if root.is_file():
        if suffixes is None or root.name.endswith(suffixes):
            yield root
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in PRUNED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if suffixes is None or name.endswith(suffixes):
                path = Path(folder) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def display_path(path: Path | str, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form when inside it, else absolute."""
    p = Path(path).resolve()
    base = root.resolve()
    if base.is_file():
        base = base.parent
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        return p.as_posix()


def fingerprint(tool: str, rule_id: str, path: str | None, context: str) -> str:
    """Stable identity of a finding: SHA-256 of tool, rule, path and a ``context`` that does
    not move with line numbers (the stripped source line, a secret's hash, a package and
    version), first 32 hex chars."""
    text = "\x1f".join((tool, rule_id, path or "", " ".join(context.split())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def redact(value: str) -> str:
    """A secret as it may be shown: its first 4 characters and its length when it is at
    least 16 long (enough to recognise it, useless to an attacker), else ``***``."""
    if len(value) >= 16:
        return f"{value[:4]}***({len(value)} chars)"
    return "***"


ENV_TEMPLATE_SUFFIXES = (".example", ".sample", ".template", ".dist")


def is_env_file(path: Path) -> bool:
    """``.env``, ``.env.testnet``, ``prod.env`` ...; not ``.env.testnet.example`` and the like."""
    name = path.name
    if name.endswith(ENV_TEMPLATE_SUFFIXES):
        return False
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")
