"""Formatters of a :class:`~sigmax_cli.security.scan.ScanReport`: rich tables, plain lines,
JSON and SARIF 2.1.0.

Each formatter has one method, ``render(report)``, returning a rich renderable or a string;
:func:`get_formatter` picks one by name.

JSON (one document)::

    scan_version    1 (bumped when a key changes meaning or disappears)
    root, fail_on, exit_code, seconds (wall time, s), baseline (path or null)
    summary         {findings, by_severity: {low, medium, high, critical}, failing,
                     suppressed, failed: [names], skipped: [names]}
    scanners        [{name, status: ok|failed|skipped, seconds, findings, notes, reason, fix}]
    findings        [{id, tool, rule_id, severity, title, location, path, line, message, fix,
                      fingerprint, help_uri}]   active findings, most severe first
    suppressed      [{id, location, fingerprint, reason, expires, entry}]
    baseline_notes  [text]

SARIF: one ``run`` per scanner (failed and skipped ones too, with
``invocations[0].executionSuccessful`` false / a notification saying so); rule ids are the
findings' ``<tool>/<rule>`` ids, each rule carrying GitHub's ``security-severity`` (critical
9.5, high 8.0, medium 5.5, low 2.0: the middle of GitHub's bands, docs "SARIF support for
code scanning"); results carry ``partialFingerprints["sigmaxFingerprint/v1"]``, a location
relative to ``%SRCROOT%`` (the scanned root) when the finding has a file, and baseline
suppressions as ``suppressions[{kind: external, justification}]``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.security.base import Finding, ScanFailure, ScanSkipped, Severity

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sigmax_cli.security.scan import ScanReport

FORMATS = ("table", "json", "sarif")
SCAN_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SECURITY_SEVERITY = {Severity.critical: "9.5", Severity.high: "8.0", Severity.medium: "5.5", Severity.low: "2.0"}
SARIF_LEVEL = {Severity.critical: "error", Severity.high: "error", Severity.medium: "warning", Severity.low: "note"}
SEVERITY_STYLE = {Severity.critical: "bold red", Severity.high: "red", Severity.medium: "yellow", Severity.low: "cyan"}
DRIVERS = {
    "pip-audit": ("pip-audit", "pip-audit", "https://github.com/pypa/pip-audit"),
    "bandit": ("bandit", "bandit", "https://bandit.readthedocs.io/"),
    "secrets": ("sigmax-secrets", "detect-secrets", "https://github.com/Yelp/detect-secrets"),
    "config": ("sigmax-config", "sigmax", None),
}
"""scanner -> (SARIF driver name, distribution whose version it reports, information URI)."""


def verdict(report: ScanReport) -> str:
    """One line: ``PASS``/``FAIL``/``INCOMPLETE`` with the reason and the exit code."""
    if report.failures:
        names = ", ".join(f.tool for f in report.failures)
        return f"INCOMPLETE: {names} could not scan, so this is no clean bill (exit {report.exit_code})"
    failing = len(report.failing_findings)
    if failing:
        return f"FAIL: {failing} finding(s) at or above {report.fail_on} (exit {report.exit_code})"
    return f"PASS: no finding at or above {report.fail_on} (exit {report.exit_code})"


def _outcome_text(outcome) -> str:
    if isinstance(outcome, ScanFailure):
        return f"{outcome.reason}; {outcome.fix}" if outcome.fix else outcome.reason
    if isinstance(outcome, ScanSkipped):
        return outcome.reason
    return "; ".join(outcome.notes)


class Formatter(ABC):
    """Turns a scan report into output."""

    @abstractmethod
    def render(self, report: ScanReport) -> str | RenderableType:
        """The whole report: a rich renderable (table) or text (plain, JSON, SARIF)."""


class TableFormatter(Formatter):
    """rich tables for a terminal: scanners, then one table per severity, most severe first."""

    def render(self, report: ScanReport) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        scanners = Table(title=f"sigmax security-scan: {report.root}", title_justify="left")
        for column in ("scanner", "status", "findings", "seconds", "notes"):
            scanners.add_column(column, overflow="fold")
        for outcome in report.outcomes:
            style = {"ok": "green", "failed": "bold red", "skipped": "yellow"}[outcome.status]
            scanners.add_row(outcome.tool, Text(outcome.status, style=style), str(len(outcome.findings)),
                             f"{outcome.seconds:.1f}", _outcome_text(outcome))
        parts.append(scanners)
        for severity in reversed(Severity):
            group = [f for f in report.findings if f.severity == severity]
            if not group:
                continue
            table = Table(title=Text(f"{severity.value.upper()} ({len(group)})", style=SEVERITY_STYLE[severity]),
                          title_justify="left")
            for column in ("id", "location", "message", "fix"):
                table.add_column(column, overflow="fold")
            for f in group:
                table.add_row(f.id, f.location, f.message, f.fix)
            parts.append(table)
        parts.extend(Text(line) for line in _footer(report))
        return Group(*parts)


class PlainFormatter(Formatter):
    """Plain lines for cron and CI logs (stdout not a terminal)."""

    def render(self, report: ScanReport) -> str:
        lines = [f"sigmax security-scan: {report.root}"]
        for outcome in report.outcomes:
            lines.append(f"scanner {outcome.tool}: {outcome.status}, {len(outcome.findings)} findings, "
                         f"{outcome.seconds:.1f} s; {_outcome_text(outcome)}")
        for f in report.findings:
            lines.append(f"{f.severity.value.upper()} {f.id} {f.location}: {f.message}; fix: {f.fix}")
        lines.extend(_footer(report))
        return "\n".join(lines) + "\n"


def _footer(report: ScanReport) -> list[str]:
    counts = report.counts()
    lines = [
        f"{len(report.findings)} findings: " + ", ".join(f"{counts[s.value]} {s.value}" for s in reversed(Severity))
        + (f"; {len(report.suppressed)} hidden by baseline {report.baseline}" if report.suppressed else "")
    ]
    lines.extend(report.baseline_notes)
    lines.append(verdict(report))
    return lines


class JsonFormatter(Formatter):
    """The JSON document of the module docstring."""

    def render(self, report: ScanReport) -> str:
        return json.dumps(report_document(report), allow_nan=False) + "\n"


def finding_dict(f: Finding) -> dict[str, Any]:
    """One finding as JSON-safe data."""
    return {"id": f.id, "tool": f.tool, "rule_id": f.rule_id, "severity": f.severity.value, "title": f.title,
            "location": f.location, "path": f.path, "line": f.line, "message": f.message, "fix": f.fix,
            "fingerprint": f.fingerprint, "help_uri": f.help_uri}


def report_document(report: ScanReport) -> dict[str, Any]:
    """The report as JSON-safe data (see the module docstring)."""
    return {
        "scan_version": SCAN_VERSION,
        "root": str(report.root),
        "fail_on": report.fail_on.value,
        "exit_code": report.exit_code,
        "seconds": round(report.seconds, 3),
        "baseline": str(report.baseline) if report.baseline else None,
        "summary": {
            "findings": len(report.findings),
            "by_severity": report.counts(),
            "failing": len(report.failing_findings),
            "suppressed": len(report.suppressed),
            "failed": [o.tool for o in report.outcomes if o.status == "failed"],
            "skipped": [o.tool for o in report.outcomes if o.status == "skipped"],
        },
        "scanners": [
            {"name": o.tool, "status": o.status, "seconds": round(o.seconds, 3), "findings": len(o.findings),
             "notes": list(o.notes), "reason": getattr(o, "reason", None), "fix": getattr(o, "fix", None)}
            for o in report.outcomes
        ],
        "findings": [finding_dict(f) for f in report.findings],
        "suppressed": [
            {"id": s.finding.id, "location": s.finding.location, "fingerprint": s.finding.fingerprint,
             "reason": s.entry.reason, "expires": s.entry.expires.isoformat(), "entry": s.entry.number}
            for s in report.suppressed
        ],
        "baseline_notes": list(report.baseline_notes),
    }


class SarifFormatter(Formatter):
    """SARIF 2.1.0, one run per scanner (see the module docstring)."""

    def render(self, report: ScanReport) -> str:
        return json.dumps(sarif_document(report), indent=2, allow_nan=False) + "\n"


def sarif_document(report: ScanReport) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (a dict ready for ``json.dumps``)."""
    hidden = {id(s.finding): s for s in report.suppressed}
    runs = []
    for outcome in report.outcomes:
        findings = [*outcome.findings]
        active = [f for f in findings if id(f) not in hidden]
        suppressed = [f for f in findings if id(f) in hidden]
        rules: dict[str, dict[str, Any]] = {}
        for f in findings:
            rules.setdefault(f.id, _rule(f))
        index = {rule_id: n for n, rule_id in enumerate(rules)}
        results = [_result(f, index[f.id], report.root, None) for f in active]
        results += [_result(f, index[f.id], report.root, hidden[id(f)]) for f in suppressed]
        name, dist, uri = DRIVERS.get(outcome.tool, (outcome.tool, "sigmax", None))
        driver: dict[str, Any] = {"name": name, "rules": list(rules.values())}
        version = _version(dist)
        if version:
            driver["version"] = version
        if uri:
            driver["informationUri"] = uri
        runs.append({
            "tool": {"driver": driver},
            "automationDetails": {"id": f"sigmax-security-scan/{outcome.tool}/"},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": report.root.as_uri() + "/"}},
            "invocations": [_invocation(outcome)],
            "results": results,
        })
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}


def _rule(f: Finding) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": f.id,
        "name": f.rule_id,
        "shortDescription": {"text": f.title or f.rule_id},
        "help": {"text": f.fix},
        "defaultConfiguration": {"level": SARIF_LEVEL[f.severity]},
        "properties": {"security-severity": SECURITY_SEVERITY[f.severity], "tags": ["security", f.tool]},
    }
    if f.help_uri:
        rule["helpUri"] = f.help_uri
    return rule


def _result(f: Finding, rule_index: int, root: Path, suppressed) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.id,
        "ruleIndex": rule_index,
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": f"{f.message}. Fix: {f.fix}."},
        "partialFingerprints": {"sigmaxFingerprint/v1": f.fingerprint},
        "properties": {"severity": f.severity.value},
    }
    if f.path is not None:
        absolute = f.path.startswith("/")
        artifact: dict[str, Any] = (
            {"uri": Path(f.path).as_uri()} if absolute else {"uri": f.path, "uriBaseId": "%SRCROOT%"}
        )
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if f.line:
            physical["region"] = {"startLine": f.line}
        result["locations"] = [{"physicalLocation": physical}]
    if suppressed is not None:
        result["suppressions"] = [{
            "kind": "external",
            "justification": f"{suppressed.entry.reason} (baseline entry {suppressed.entry.number}, "
                             f"expires {suppressed.entry.expires.isoformat()})",
        }]
    return result


def _invocation(outcome) -> dict[str, Any]:
    if isinstance(outcome, ScanFailure):
        return {"executionSuccessful": False, "toolExecutionNotifications": [
            {"level": "error", "message": {"text": _outcome_text(outcome)}}]}
    notes = [outcome.reason] if isinstance(outcome, ScanSkipped) else list(outcome.notes)
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if notes:
        invocation["toolExecutionNotifications"] = [
            {"level": "warning" if isinstance(outcome, ScanSkipped) else "note", "message": {"text": n}}
            for n in notes]
    return invocation


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def get_formatter(name: str, terminal: bool = True) -> Formatter:
    """``table`` (rich on a terminal, plain lines otherwise), ``json`` or ``sarif``.

    Raises:
        ConfigError: unknown format.
    """
    if name == "table":
        return TableFormatter() if terminal else PlainFormatter()
    if name == "json":
        return JsonFormatter()
    if name == "sarif":
        return SarifFormatter()
    raise ConfigError(f"unknown format {name!r}", f"use one of {', '.join(FORMATS)}")


class StatusObserver:
    """A rich spinner on stderr naming the scanner at work (terminals only)."""

    def __init__(self, console) -> None:
        self.console = console
        self._status = None

    def started(self, name: str) -> None:
        if self._status is None:
            self._status = self.console.status(f"scanning: {name}")
            self._status.start()
        else:
            self._status.update(f"scanning: {name}")

    def finished(self, outcome) -> None:
        pass

    def close(self) -> None:
        """Stop the spinner (idempotent)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
