"""``run_scan``: the one engine call behind ``sigmax security-scan``.

It picks the scanners (all four unless ``skip`` names some), runs each through
:meth:`Scanner.scan` (an exception inside a scanner becomes that scanner's
:class:`~sigmax_cli.security.base.ScanFailure`, so the others still run), applies the
baseline and returns a :class:`ScanReport` whose :attr:`~ScanReport.exit_code` is the
command's: 0 clean, 1 findings at or above ``fail_on``, 2 a scanner failed or is missing.
Progress reaches the terminal through a :class:`ScanObserver` (rich spinner, nothing in a
test or under cron).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sigmax_cli.errors import ConfigError, NotFoundError
from sigmax_cli.security.base import Finding, Outcome, ScanFailure, Scanner, ScanResult, ScanSkipped, Severity

if TYPE_CHECKING:
    from sigmax_cli.security.baseline import Suppressed
    from sigmax_cli.settings import Settings

SCANNER_NAMES = ("pip-audit", "bandit", "secrets", "config")
EXIT_CLEAN, EXIT_FINDINGS, EXIT_SCANNER_FAILED = 0, 1, 2


class ScanObserver(Protocol):
    """Receives progress: ``started(name)`` before a scanner runs, ``finished(outcome)`` after."""

    def started(self, name: str) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...


class NullObserver:
    """An observer that ignores everything."""

    def started(self, name: str) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        pass


@dataclass(frozen=True)
class ScanReport:
    """Everything one scan found.

    Attributes:
        root: the scanned path (absolute).
        fail_on: the threshold ``exit_code`` compares with.
        outcomes: one per scanner, in :data:`SCANNER_NAMES` order.
        findings: active findings (not hidden by the baseline), most severe first.
        suppressed: findings the baseline hides, with the entry that hides each.
        baseline_notes: expired and unused baseline entries.
        seconds: wall time of the whole scan.
    """

    root: Path
    fail_on: Severity
    outcomes: tuple[Outcome, ...]
    findings: tuple[Finding, ...]
    suppressed: tuple[Suppressed, ...]
    baseline_notes: tuple[str, ...]
    seconds: float
    baseline: Path | None = None

    @property
    def failures(self) -> list[ScanFailure]:
        """Scanners that could not look."""
        return [o for o in self.outcomes if isinstance(o, ScanFailure)]

    @property
    def failing_findings(self) -> list[Finding]:
        """Active findings at or above :attr:`fail_on`."""
        return [f for f in self.findings if f.severity >= self.fail_on]

    def counts(self) -> dict[str, int]:
        """Active findings per severity, every severity present (0 when none)."""
        out = {s.value: 0 for s in Severity}
        for finding in self.findings:
            out[finding.severity.value] += 1
        return out

    @property
    def exit_code(self) -> int:
        """2 when a scanner failed (its verdict is unknown), else 1 when a finding reaches
        :attr:`fail_on`, else 0."""
        if self.failures:
            return EXIT_SCANNER_FAILED
        return EXIT_FINDINGS if self.failing_findings else EXIT_CLEAN


def parse_skip(skip: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"pip-audit,bandit"`` -> ``("pip-audit", "bandit")``.

    Raises:
        ConfigError: an unknown scanner name.
    """
    if skip is None:
        return ()
    names = [s.strip() for s in (skip.split(",") if isinstance(skip, str) else skip) if s.strip()]
    unknown = [n for n in names if n not in SCANNER_NAMES]
    if unknown:
        raise ConfigError(f"unknown scanner {unknown[0]!r} in --skip", f"use names from {', '.join(SCANNER_NAMES)}")
    return tuple(dict.fromkeys(names))


def parse_severity(value: str) -> Severity:
    """``"high"`` -> ``Severity.high``.

    Raises:
        ConfigError: not one of low, medium, high, critical.
    """
    try:
        return Severity(value.strip().lower())
    except ValueError:
        raise ConfigError(f"unknown severity {value!r}", "use low, medium, high or critical") from None


def build_scanners(settings: Settings, osv_url: str | None = None) -> dict[str, Scanner]:
    """The four scanners, configured from ``settings.security`` (``osv_url`` overrides it
    and selects the OSV service)."""
    from sigmax_cli.security.code import BanditScanner
    from sigmax_cli.security.config import ConfigScanner
    from sigmax_cli.security.dependencies import DependencyScanner
    from sigmax_cli.security.secrets import SecretsScanner

    sec = settings.security
    service = "osv" if osv_url else sec.vulnerability_service
    return {
        "pip-audit": DependencyScanner(service=service, osv_url=osv_url or sec.osv_url,
                                       timeout_seconds=sec.timeout_seconds),
        "bandit": BanditScanner(),
        "secrets": SecretsScanner(),
        "config": ConfigScanner(settings),
    }


def run_scan(
    path: Path,
    settings: Settings,
    *,
    skip: str | Sequence[str] | None = None,
    fail_on: str | None = None,
    baseline: Path | None = None,
    osv_url: str | None = None,
    observer: ScanObserver | None = None,
    scanners: dict[str, Scanner] | None = None,
    today: dt.date | None = None,
) -> ScanReport:
    """Scan ``path`` with every scanner not in ``skip``.

    Args:
        path: directory or file to scan.
        settings: this invocation's settings (``security`` section, ``home``, API key).
        skip: scanner names to leave out (shown as skipped, never as clean).
        fail_on: threshold for :attr:`ScanReport.exit_code`; ``settings.security.fail_on``
            when ``None``.
        baseline: baseline file (``settings.security.baseline`` when ``None``).
        osv_url: OSV ``/v1/query`` URL; overrides the settings and selects OSV.
        scanners: replaces :func:`build_scanners` (tests, other tool sets).
        today: UTC day for baseline expiry (default: today, UTC).

    Raises:
        NotFoundError: ``path`` or the baseline file does not exist.
        ConfigError: unknown scanner or severity, malformed baseline, bad OSV URL.
    """
    from sigmax_cli.security.baseline import apply_baseline, load_baseline

    root = Path(path).expanduser()
    if not root.exists():
        raise NotFoundError(f"scan path {root} does not exist", "give an existing directory or file")
    root = root.resolve()
    skipped = parse_skip(skip)
    if scanners is None and set(skipped) == set(SCANNER_NAMES):
        raise ConfigError("--skip leaves no scanner to run", "skip at most three of " + ", ".join(SCANNER_NAMES))
    threshold = parse_severity(fail_on or settings.security.fail_on)
    if osv_url is not None and not osv_url.startswith(("http://", "https://")):
        raise ConfigError(f"--osv-url {osv_url!r} is not an http(s) URL",
                          "give the service's /v1/query URL, e.g. https://api.osv.dev/v1/query")
    baseline_path = baseline if baseline is not None else settings.security.baseline
    entries = load_baseline(Path(baseline_path).expanduser()) if baseline_path is not None else []
    chosen = scanners if scanners is not None else build_scanners(settings, osv_url)
    observer = observer or NullObserver()
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    for name, scanner in chosen.items():
        if name in skipped:
            outcome: Outcome = ScanSkipped(name, "left out with --skip")
        else:
            observer.started(name)
            t0 = time.perf_counter()
            try:
                outcome = scanner.scan(root)
            except Exception as exc:  # one broken scanner must not hide the others' results
                outcome = ScanFailure(name, f"{name} crashed ({type(exc).__name__}: {exc})",
                                      "rerun with -v and report it", time.perf_counter() - t0)
        observer.finished(outcome)
        outcomes.append(outcome)
    ran = {o.tool for o in outcomes if isinstance(o, ScanResult)}
    everything = [f for o in outcomes for f in o.findings]
    active, suppressed, notes = apply_baseline(everything, entries, today or dt.datetime.now(dt.UTC).date(), ran)
    active.sort(key=lambda f: (-f.severity.rank, f.tool, f.path or "", f.line or 0, f.rule_id))
    return ScanReport(
        root=root, fail_on=threshold, outcomes=tuple(outcomes), findings=tuple(active),
        suppressed=tuple(suppressed), baseline_notes=tuple(notes), seconds=time.perf_counter() - started,
        baseline=Path(baseline_path) if baseline_path is not None else None,
    )
