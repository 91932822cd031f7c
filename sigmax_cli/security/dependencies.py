"""Dependency scanner: pip-audit against an OSV-compatible vulnerability service.

What is audited:

- ``requirements*.txt`` at the top of the scanned path, when there are any: each pinned
  requirement (``name==version``) through ``pip-audit --no-deps --disable-pip``; each
  unpinned, editable or URL requirement is a finding of its own (it cannot be audited);
- else, when the path is a Python project (``pyproject.toml`` / ``setup.py``): the
  installed environment of the running interpreter (where the project is installed),
  editable installs (the project itself) left to the code scanner;
- else nothing, and the result says so.

pip-audit runs as a subprocess (``python -m pip_audit -f json``), its stable interface. It
has a blind spot this scanner closes: when the service cannot answer for a package (the
PyPI JSON API answering 404 on our machines) pip-audit marks it skipped and still prints
"No known vulnerabilities found" with exit 0. Here every skipped package is a
``not-audited`` finding (medium), and a run in which no package at all could be audited,
or pip-audit could not reach the service, is a :class:`~sigmax_cli.security.base.ScanFailure`.

pip-audit also aborts its whole run when the service fails on *one* package (an HTTP 500 for
that query: ``ServiceError``, no JSON at all). Then the packages are audited again in halves
(bisection, at most ``MAX_AUDIT_RUNS`` pip-audit runs): every package that still fails on its
own is a ``not-audited`` finding naming pip-audit's reason, and the rest are audited as usual.
An environment audit is bisected over its installed distributions (editable ones left out,
as ``--skip-editable`` does).

Severity of a vulnerability: the OSV record's ``database_specific.severity`` (GitHub's
rating: LOW, MODERATE, HIGH, CRITICAL -> low, medium, high, critical), read from the same
service (``GET /v1/vulns/<id>``); ``high`` when the service gives no rating.
"""

from __future__ import annotations

import json
import os
import subprocess  # noqa: S404 - pip-audit runs as a subprocess, arguments as a list
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sigmax_cli.security.base import (
    Finding,
    ScanFailure,
    Scanner,
    ScanResult,
    Severity,
    display_path,
    fingerprint,
)

TOOL = "pip-audit"
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"
OSV_SEVERITY = {"LOW": Severity.low, "MODERATE": Severity.medium, "MEDIUM": Severity.medium,
                "HIGH": Severity.high, "CRITICAL": Severity.critical}
EDITABLE_SKIP = "distribution marked as editable"
UNREACHABLE_MARKERS = ("ConnectionError", "ConnectTimeout", "Max retries exceeded", "Failed to establish",
                       "NameResolutionError", "ReadTimeout", "Could not connect")
PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
MAX_AUDIT_RUNS = 48
"""pip-audit runs spent isolating the packages a service fails on (about 2 log2(n) per bad
package); past it, the packages of the groups still failing are each a finding."""
_ENVIRONMENT = (
    "import importlib.metadata as m, json\n"
    "out = {}\n"
    "for d in m.distributions():\n"
    "    name = d.metadata['Name']\n"
    "    direct = d.read_text('direct_url.json')\n"
    "    editable = bool(direct and json.loads(direct).get('dir_info', {}).get('editable'))\n"
    "    if name and not editable:\n"
    "        out[name.lower()] = f'{name}=={d.version}'\n"
    "print(json.dumps(sorted(out.values())))\n"
)


@dataclass(frozen=True)
class Pinned:
    """A requirement pip-audit can audit, and where it was written."""

    name: str
    version: str
    line: str  # the requirement as written, markers included
    path: Path
    lineno: int


class DependencyScanner(Scanner):
    """Known vulnerabilities in dependencies, through pip-audit.

    Args:
        service: ``osv`` (any OSV-compatible API at ``osv_url``) or ``pypi`` (the PyPI JSON
            API pip-audit knows).
        osv_url: the service's ``/v1/query`` URL (``--osv-url``, ``security.osv_url``).
        timeout_seconds: per HTTP request, seconds.
        python: interpreter whose environment is audited (default: the running one).
    """

    name = TOOL

    def __init__(self, service: str = "osv", osv_url: str = DEFAULT_OSV_URL, timeout_seconds: float = 15.0,
                 python: str | None = None) -> None:
        self.service = service
        self.osv_url = osv_url
        self.timeout_seconds = timeout_seconds
        self.python = python or sys.executable

    @property
    def service_label(self) -> str:
        """The service as users should read it: ``OSV at <url>`` or ``PyPI``."""
        return f"OSV at {self.osv_url}" if self.service == "osv" else "the PyPI JSON API"

    def scan(self, path: Path) -> ScanResult | ScanFailure:
        """Audit the requirements files or the installed environment (module docstring)."""
        started = time.perf_counter()
        if path.is_dir():
            requirement_files = sorted(path.glob("requirements*.txt"))
            project = any((path / name).is_file() for name in PROJECT_FILES)
        else:  # one file: a requirements file, or nothing to audit
            requirement_files = [path] if path.suffix == ".txt" else []
            project = False
        findings: list[Finding] = []
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="sigmax-audit-") as tmp:
            if requirement_files:
                try:
                    pinned, unpinned = self._read_requirements(requirement_files, path)
                except ValueError as exc:
                    return ScanFailure(TOOL, str(exc), "fix the requirements file", time.perf_counter() - started)
                findings.extend(unpinned)
                if not pinned:
                    if not unpinned:
                        notes.append("the requirements files list no package")
                        return ScanResult(TOOL, (), tuple(notes), time.perf_counter() - started)
                    return ScanFailure(TOOL, "no requirement is pinned (name==version), so none could be audited",
                                       "pin them, e.g. with pip-compile", time.perf_counter() - started)
                listing = Path(tmp) / "requirements.txt"
                listing.write_text("".join(f"{p.line}\n" for p in pinned), encoding="utf-8")
                args = ["-r", str(listing), "--no-deps", "--disable-pip"]
                where = {canonicalize_name(p.name): p for p in pinned}
                subject = ", ".join(display_path(f, path) for f in requirement_files)
            elif project:
                args, where = ["--skip-editable"], {}
                subject = f"the environment of {self.python}"
            else:
                return ScanResult(TOOL, (), (f"no requirements*.txt or Python project at {path}: "
                                             "no dependency to audit",), time.perf_counter() - started)
            outcome = self._run_pip_audit(args, Path(tmp))
            failed: list[tuple[str, str]] = []
            if isinstance(outcome, str) and outcome.startswith("pip-audit failed"):  # one package may break it
                lines = ([p.line for p in pinned] if requirement_files else self._environment_lines())
                if len(lines) > 1:
                    outcome, failed = self._bisect(lines, Path(tmp), outcome)
        if isinstance(outcome, str):
            return ScanFailure(TOOL, outcome, self._fix(outcome), time.perf_counter() - started)
        result = self.interpret(outcome, path, subject, where, notes)
        findings.extend(result.findings)
        if failed:
            pyproject = (path if path.is_dir() else path.parent) / "pyproject.toml"
            findings.extend(self._failed(line, reason, where, path, pyproject) for line, reason in failed)
            result = ScanResult(TOOL, result.findings, (*result.notes, f"pip-audit failed on {len(failed)} "
                                "package(s) and was run again without them"))
        if isinstance(result, ScanFailure):
            return ScanFailure(TOOL, result.reason, result.fix, time.perf_counter() - started)
        return ScanResult(TOOL, tuple(findings), result.notes, time.perf_counter() - started)

    def interpret(self, document: dict[str, Any], path: Path, subject: str,
                  where: dict[str, Pinned] | None = None, notes: list[str] | None = None) -> ScanResult | ScanFailure:
        """Turn pip-audit's JSON document into findings.

        A dependency pip-audit skipped (other than an editable install) is a
        ``not-audited`` finding; when it skipped every one, the result is a failure.

        Args:
            document: pip-audit's ``-f json`` output (``{"dependencies": [...], "fixes": [...]}``).
            path: the scanned path (locations are shown relative to it).
            subject: what was audited, for the note (``requirements.txt``).
            where: pinned requirements by PEP 503 name, to locate findings.
        """
        where = where or {}
        notes = list(notes or [])
        root = path if path.is_dir() else path.parent
        audited, skipped, vulns = 0, [], []
        for dep in document.get("dependencies", []):
            if "skip_reason" in dep:
                if dep["skip_reason"] == EDITABLE_SKIP:
                    notes.append(f"{dep['name']} is installed editable (the project itself): left to bandit")
                else:
                    skipped.append(dep)
                continue
            audited += 1
            vulns.extend((dep, vuln) for vuln in dep.get("vulns", []))
        if skipped and audited == 0:
            reason = skipped[0]["skip_reason"].rstrip(".")
            return ScanFailure(
                TOOL, f"pip-audit could not audit any of the {len(skipped)} packages against {self.service_label} "
                f"(first: {reason})", self._fix("could not audit"))
        pyproject = root / "pyproject.toml"
        findings = [self._not_audited(dep, where, path, pyproject) for dep in skipped]
        records = self._records({i for _, v in vulns for i in _ids(v)})
        for dep, vuln in vulns:
            findings.append(self._vulnerability(dep, vuln, records, where, path, pyproject))
        notes.insert(0, f"audited {audited} packages of {subject} against {self.service_label}")
        return ScanResult(TOOL, tuple(findings), tuple(notes))

    # -- requirements --------------------------------------------------------------------------
    def _read_requirements(self, files: list[Path], root: Path) -> tuple[list[Pinned], list[Finding]]:
        from pip_requirements_parser import RequirementsFile

        pinned: list[Pinned] = []
        problems: list[Finding] = []
        for file in files:
            try:
                with warnings.catch_warnings():  # the parser calls packaging with a deprecated argument
                    warnings.simplefilter("ignore", DeprecationWarning)
                    parsed = RequirementsFile.from_file(str(file), include_nested=True)
            except Exception as exc:  # the parser raises several kinds  # noqa: BLE001
                raise ValueError(f"cannot read {display_path(file, root)} ({exc})") from None
            for line in parsed.invalid_lines:
                shown = display_path(line.filename, root)
                problems.append(self._unauditable(shown, line.line_number, line.line,
                                                  f"is not a valid requirement ({line.error_message})"))
            for req in parsed.requirements:
                source = req.requirement_line
                shown = display_path(source.filename, root) if source else display_path(file, root)
                text = source.line if source else str(req.req)
                spec = list(req.specifier or [])
                if req.is_editable or req.link is not None or not req.name:
                    problems.append(self._unauditable(shown, req.line_number, text,
                                                      "is an editable, path or URL requirement"))
                elif not req.is_pinned or len(spec) != 1:
                    problems.append(self._unauditable(shown, req.line_number, text,
                                                      "is not pinned to one version (name==version)"))
                else:
                    marker = f" ; {req.marker}" if req.marker else ""
                    pinned.append(Pinned(req.name, spec[0].version, f"{req.name}=={spec[0].version}{marker}",
                                         Path(shown), req.line_number or 0))
        return pinned, problems

    @staticmethod
    def _unauditable(shown: str, lineno: int | None, text: str, why: str) -> Finding:
        rule = "unpinned-requirement"
        return Finding(
            rule_id=rule, tool=TOOL, severity=Severity.medium,
            message=f"requirement {text.strip()!r} {why}, so it cannot be audited",
            fix="pin it to one released version (name==version), e.g. with pip-compile",
            path=shown, line=lineno, fingerprint=fingerprint(TOOL, rule, shown, text),
            title="requirement not auditable",
        )

    # -- pip-audit -------------------------------------------------------------------------------
    def _run_pip_audit(self, args: list[str], cache: Path) -> dict[str, Any] | str:
        """pip-audit's JSON document, or the reason it gave none (one sentence)."""
        service = ["-s", "osv", "--osv-url", self.osv_url] if self.service == "osv" else ["-s", "pypi"]
        cmd = [self.python, "-m", "pip_audit", "-f", "json", "--progress-spinner", "off",
               "--timeout", str(max(1, round(self.timeout_seconds))), "--cache-dir", str(cache / "cache"),
               *service, *args]
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,  # noqa: S603 - fixed argv
                                  timeout=max(300.0, 40 * self.timeout_seconds), env=env, check=False)
        except subprocess.TimeoutExpired:
            return f"pip-audit did not finish against {self.service_label}"
        except OSError as exc:
            return f"pip-audit could not start ({exc.strerror or exc})"
        try:
            document = json.loads(proc.stdout)
        except ValueError:
            document = None
        if isinstance(document, dict) and "dependencies" in document:
            return document
        stderr = proc.stderr or ""
        if "No module named pip_audit" in stderr:
            return "pip-audit is not installed"
        if any(marker in stderr for marker in UNREACHABLE_MARKERS):
            return f"pip-audit could not reach the vulnerability service, {self.service_label}"
        lines = stderr.splitlines()
        http = next((ln.split("HTTPError:", 1)[1].strip() for ln in lines if "HTTPError:" in ln), None)
        last = http or next((ln.strip() for ln in reversed(lines) if ln.strip()), f"exit {proc.returncode}")
        return f"pip-audit failed ({last[:240]})"

    def _environment_lines(self) -> list[str]:
        """``name==version`` of every distribution installed in :attr:`python`'s environment
        but the editable ones; empty when they cannot be listed."""
        try:
            proc = subprocess.run([self.python, "-c", _ENVIRONMENT], capture_output=True,  # noqa: S603
                                  text=True, timeout=120, check=False)
            return [str(line) for line in json.loads(proc.stdout)]
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return []

    def _bisect(self, lines: list[str], cache: Path, first_failure: str) -> tuple[dict[str, Any] | str,
                                                                                   list[tuple[str, str]]]:
        """Audit ``lines`` (pinned requirements) in ever smaller groups until every package
        pip-audit fails on is isolated; returns the merged document of the groups that
        passed (or ``first_failure`` when none did) and ``[(line, reason)]`` of the packages
        that failed alone (or were left in a failing group when the run budget ran out)."""
        merged: dict[str, Any] = {"dependencies": [], "fixes": []}
        failed: list[tuple[str, str]] = []
        budget = [MAX_AUDIT_RUNS]
        passed = [False]
        listing = cache / "bisect.txt"

        def audit(group: list[str], reason: str) -> None:
            if len(group) == 1 or budget[0] <= 0:
                failed.extend((line, reason) for line in group)
                return
            for half in (group[: len(group) // 2], group[len(group) // 2:]):
                budget[0] -= 1
                listing.write_text("".join(f"{line}\n" for line in half), encoding="utf-8")
                outcome = self._run_pip_audit(["-r", str(listing), "--no-deps", "--disable-pip"], cache)
                if isinstance(outcome, dict):
                    passed[0] = True
                    merged["dependencies"].extend(outcome.get("dependencies", []))
                    merged["fixes"].extend(outcome.get("fixes", []))
                elif outcome.startswith("pip-audit failed"):
                    audit(half, outcome)
                else:  # the service went away meanwhile: nothing more can be told
                    failed.extend((line, outcome) for line in half)

        audit(lines, first_failure)
        return (merged if passed[0] else first_failure), failed

    def _failed(self, line: str, reason: str, where: dict[str, Pinned], root: Path, pyproject: Path) -> Finding:
        """A ``not-audited`` finding for a package pip-audit failed on (``reason``: its error)."""
        name, _, rest = line.partition("==")
        version = rest.split(";", 1)[0].strip()
        path, lineno = self._where(name, where, root, pyproject)
        why = reason.removeprefix("pip-audit failed (").removesuffix(")")
        return Finding(
            rule_id="not-audited", tool=TOOL, severity=Severity.medium,
            message=f"{name} {version} could not be audited: pip-audit failed on it against {self.service_label} "
                    f"({why})",
            fix="try again later or with another --osv-url; if it keeps failing, audit it by hand and put it "
                "in the baseline with a reason",
            path=path, line=lineno, fingerprint=fingerprint(TOOL, "not-audited", path, name.strip().lower()),
            title="package not audited",
        )

    def _fix(self, reason: str) -> str:
        if "not installed" in reason:
            return "pip install pip-audit (sigmax depends on it)"
        return ("point --osv-url (or SIGMAX_SECURITY__OSV_URL) at a reachable OSV-compatible service, "
                "or leave dependencies out with --skip pip-audit (the report then says so)")

    # -- OSV records for severity and fixed versions -----------------------------------------------
    def _records(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """``GET /v1/vulns/<id>`` for each id; ids the service cannot give are left out."""
        if not ids or self.service != "osv" or not self.osv_url.rstrip("/").endswith("/query"):
            return {}
        import requests

        base = self.osv_url.rstrip("/")[: -len("query")] + "vulns/"
        out: dict[str, dict[str, Any]] = {}
        with requests.Session() as session:
            for vuln_id in sorted(ids):
                try:
                    response = session.get(base + vuln_id, timeout=self.timeout_seconds)
                    if response.status_code == 200:
                        out[vuln_id] = response.json()
                except (requests.RequestException, ValueError):
                    continue
        return out

    def _vulnerability(self, dep: dict[str, Any], vuln: dict[str, Any], records: dict[str, dict[str, Any]],
                       where: dict[str, Pinned], root: Path, pyproject: Path) -> Finding:
        name, version = dep["name"], dep.get("version", "?")
        record = next((records[i] for i in _ids(vuln) if i in records), None)
        vuln_id = record["id"] if record else vuln["id"]
        rating = str(((record or {}).get("database_specific") or {}).get("severity", "")).upper()
        severity = OSV_SEVERITY.get(rating, Severity.high)
        summary = (record or {}).get("summary") or (vuln.get("description") or "").split(". ")[0] or vuln_id
        aliases = [a for a in [vuln["id"], *vuln.get("aliases", [])] if a != vuln_id]
        fixed = list(vuln.get("fix_versions") or []) or _fixed_versions(record, name)
        fix = (f"upgrade {name} to {fixed[0]} or later" if fixed
               else f"no fixed version is known: replace {name} or accept the risk in the baseline")
        path, line = self._where(name, where, root, pyproject)
        rated = f"severity {rating.lower()}" if rating in OSV_SEVERITY else "severity not rated by the service"
        return Finding(
            rule_id=vuln_id, tool=TOOL, severity=severity,
            message=f"{name} {version}: {summary}" + (f" ({', '.join(aliases)})" if aliases else "") + f"; {rated}",
            fix=fix, path=path, line=line,
            fingerprint=fingerprint(TOOL, vuln_id, path, f"{name.lower()} {version}"),
            title=summary, help_uri=f"https://osv.dev/vulnerability/{vuln_id}",
        )

    def _not_audited(self, dep: dict[str, Any], where: dict[str, Pinned], root: Path, pyproject: Path) -> Finding:
        name = dep["name"]
        path, line = self._where(name, where, root, pyproject)
        return Finding(
            rule_id="not-audited", tool=TOOL, severity=Severity.medium,
            message=f"{name} could not be audited against {self.service_label}: {dep['skip_reason'].rstrip('.')}",
            fix="use a vulnerability service that knows the package (--osv-url); "
                "a private package goes in the baseline with a reason",
            path=path, line=line, fingerprint=fingerprint(TOOL, "not-audited", path, name.lower()),
            title="package not audited",
        )

    @staticmethod
    def _where(name: str, where: dict[str, Pinned], root: Path, pyproject: Path) -> tuple[str | None, int | None]:
        pinned = where.get(canonicalize_name(name))
        if pinned is not None:
            return pinned.path.as_posix(), pinned.lineno or None
        if pyproject.is_file():
            shown = display_path(pyproject, root)
            wanted = canonicalize_name(name)
            for lineno, text in enumerate(pyproject.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if f'"{wanted}' in text.lower().replace("_", "-").replace(".", "-"):
                    return shown, lineno
            return shown, None
        return None, None


def _ids(vuln: dict[str, Any]) -> list[str]:
    """The ids pip-audit gives a vulnerability, GitHub's first (its records carry a severity
    rating), then PyPI's, then the rest (CVE)."""
    ids = [vuln["id"], *vuln.get("aliases", [])]
    return sorted(dict.fromkeys(ids), key=lambda i: (not i.startswith("GHSA-"), not i.startswith("PYSEC-"), i))


def _fixed_versions(record: dict[str, Any] | None, name: str) -> list[str]:
    """``fixed`` events of the record's ECOSYSTEM ranges for ``name`` (PEP 503 names)."""
    fixed: list[str] = []
    for affected in (record or {}).get("affected", []):
        package = affected.get("package", {})
        if canonicalize_name(package.get("name", "")) != canonicalize_name(name):
            continue
        for rng in affected.get("ranges", []):
            fixed.extend(e["fixed"] for e in rng.get("events", []) if "fixed" in e)
    return fixed
