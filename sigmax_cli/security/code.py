"""Code scanner: bandit over the Python files of the scanned path (the project, a folder
of user strategies, one file).

bandit runs in-process (``bandit.core.manager.BanditManager``) with its default plugin set;
``# nosec`` comments are honoured as bandit documents them. Severity is bandit's own
``issue_severity`` (LOW, MEDIUM, HIGH -> low, medium, high); its confidence is named in the
message. Two adjustments, both stated in the output:

- B101 (``assert``) is not reported in test files (``test_*.py``, ``*_test.py``,
  ``conftest.py``), where pytest's ``assert`` is the idiom; bandit reports it elsewhere;
- a file bandit cannot parse is a ``parse-error`` finding (medium): it was not audited.

Quoted literals in bandit's messages (the suspected password of B105-B107) are redacted.
"""

from __future__ import annotations

import linecache
import logging
import re
import time
import warnings
from pathlib import Path

from sigmax_cli.security.base import (
    PRUNED_DIRS,
    Finding,
    ScanFailure,
    Scanner,
    ScanResult,
    Severity,
    display_path,
    fingerprint,
    iter_files,
    redact,
)

TOOL = "bandit"
FIXES = {
    "B102": "do not exec() strings; call the code directly",
    "B105": "read the secret from the environment or the env file (SIGMAX_*), not the source",
    "B106": "read the secret from the environment or the env file (SIGMAX_*), not the source",
    "B107": "read the secret from the environment or the env file (SIGMAX_*), not the source",
    "B108": "use tempfile.mkstemp()/TemporaryDirectory() instead of a fixed /tmp path",
    "B113": "pass timeout= (seconds) to every requests call",
    "B301": "do not unpickle data you did not write; use JSON",
    "B307": "use ast.literal_eval() or a parser instead of eval()",
    "B324": "use hashlib.sha256 (or usedforsecurity=False where it is not security)",
    "B501": "keep TLS certificate verification on (verify=True)",
    "B506": "use yaml.safe_load() (or Loader=yaml.SafeLoader)",
    "B602": "pass the command as a list without shell=True (subprocess.run([...]))",
    "B605": "use subprocess.run([...]) without a shell",
    "B608": "use bound parameters (SQLAlchemy text() with :name) instead of string-built SQL",
}
TEST_FILE_SUFFIXES = ("_test.py",)
EXCLUDED = tuple(sorted(PRUNED_DIRS))


_QUOTED = re.compile(r"'([^']*)'")


def _redact_literals(text: str) -> str:
    """bandit quotes the string it suspects (B105-B107: ``'hunter2'``); never show it."""
    return _QUOTED.sub(lambda m: f"'{redact(m.group(1))}'", text)


def _is_test_file(path: str) -> bool:
    name = Path(path).name
    return name.startswith("test_") or name.endswith(TEST_FILE_SUFFIXES) or name == "conftest.py"


class BanditScanner(Scanner):
    """Python code through bandit (see the module docstring for the severity mapping)."""

    name = TOOL

    def scan(self, path: Path) -> ScanResult | ScanFailure:
        """Run bandit on every ``*.py`` under ``path``; a missing bandit is a failure."""
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():  # bandit passes stevedore a deprecated argument
                warnings.simplefilter("ignore", DeprecationWarning)
                from bandit.core import config as b_config
                from bandit.core import docs_utils, manager
        except ImportError:
            return ScanFailure(TOOL, "bandit is not installed", "pip install bandit (sigmax depends on it)")
        files = [str(p) for p in iter_files(path, (".py",))]
        if not files:
            return ScanResult(TOOL, (), (f"no Python files under {path}: nothing for bandit to audit",),
                              time.perf_counter() - started)
        logging.getLogger("bandit").setLevel(logging.ERROR)
        with warnings.catch_warnings():  # bandit passes stevedore a deprecated argument
            warnings.simplefilter("ignore", DeprecationWarning)
            mgr = manager.BanditManager(b_config.BanditConfig(), "file", quiet=True)
        mgr.discover_files(files, recursive=False)
        mgr.run_tests()
        findings: list[Finding] = []
        asserts_in_tests = 0
        for issue in mgr.get_issue_list():
            shown = display_path(issue.fname, path)
            if issue.test_id == "B101" and _is_test_file(shown):
                asserts_in_tests += 1
                continue
            linecache.checkcache(issue.fname)  # the file may have changed since an earlier scan
            source = linecache.getline(issue.fname, issue.lineno)
            findings.append(Finding(
                rule_id=issue.test_id,
                tool=TOOL,
                severity=Severity(str(issue.severity).lower()),
                message=f"{_redact_literals(issue.text)} (bandit {issue.test}, "
                        f"confidence {str(issue.confidence).lower()})",
                fix=FIXES.get(issue.test_id, f"see {docs_utils.get_url(issue.test_id)}"),
                path=shown,
                line=issue.lineno,
                fingerprint=fingerprint(TOOL, issue.test_id, shown, source),
                title=issue.test,
                help_uri=docs_utils.get_url(issue.test_id),
            ))
        for fname, reason in mgr.skipped:
            shown = display_path(fname, path)
            findings.append(Finding(
                rule_id="parse-error", tool=TOOL, severity=Severity.medium,
                message=f"bandit could not audit this file ({reason})",
                fix="make it valid Python 3 or move it out of the scanned tree",
                path=shown, line=None, fingerprint=fingerprint(TOOL, "parse-error", shown, ""),
                title="file not audited",
            ))
        notes = [f"bandit audited {len(files) - len(mgr.skipped)} of {len(files)} Python files"]
        if asserts_in_tests:
            notes.append(f"{asserts_in_tests} assert statements in test files not reported (B101)")
        return ScanResult(TOOL, tuple(findings), tuple(notes), time.perf_counter() - started)
