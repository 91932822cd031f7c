"""The parts of the security scan: exchange key shapes, pip-audit output, key rights read
from a Binance emulator over real HTTP, baseline expiry, the rich table."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import string
import uuid
from pathlib import Path

import pytest

from sigmax_cli.security.base import Finding, Severity, fingerprint, redact
from sigmax_cli.security.baseline import BaselineEntry, apply_baseline
from sigmax_cli.security.dependencies import DependencyScanner
from sigmax_cli.security.secrets import exchange_secrets
from tests.support.binance_emulator import Response

# FAKE values built at run time (so that no key-shaped literal sits in the source).
ALNUM = string.ascii_letters + string.digits
BINANCE_LIKE = (ALNUM[7:] + ALNUM)[:64]
API_KEY = (ALNUM[3:] + ALNUM)[:64]
API_SECRET = (ALNUM[11:] + ALNUM)[:64]
OKX_SECRET = "".join("0123456789ABCDEF"[(i * 7) % 16] for i in range(32))
OKX_KEY = str(uuid.UUID(int=0x3F1E2D4C5B6A47899ABCDEF012345678))
BYBIT_SECRET = (ALNUM[20:] + ALNUM)[:36]


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (f'BINANCE_API_SECRET = "{BINANCE_LIKE}"', "binance-api-secret"),
        (f"api_key: {BINANCE_LIKE}", "binance-api-key"),
        (f"exchange = ccxt.binance({{'apiKey': '{BINANCE_LIKE}'}})", "binance-api-key"),
        (f'OKX_SECRET_KEY = "{OKX_SECRET}"', "okx-api-secret"),
        (f'okx_api_key = "{OKX_KEY}"', "okx-api-key"),
        (f'bybit_secret = "{BYBIT_SECRET}"', "bybit-api-secret"),
    ],
)
def test_exchange_key_shapes(line, rule):
    hits = exchange_secrets("x = 1\n" + line + "\n")
    assert [(n, shape.rule_id) for n, shape, _, _ in hits] == [(2, rule)]


@pytest.mark.parametrize(
    "line",
    [
        "api_secret = " + "your-binance-api-secret-goes-here-" + "1" * 31,
        f'cache_key = "{hashlib.sha256(b"candles").hexdigest()}"',  # a digest, not a key
        "API_SECRET = " + "x" * 64,
        'api_secret = os.environ["SIGMAX_API_SECRET"]',
        f'symbol = "{BINANCE_LIKE}"',  # not named like a key
    ],
)
def test_exchange_key_shapes_ignore_placeholders_and_digests(line):
    assert exchange_secrets(line) == []


def test_redact_never_shows_the_value():
    assert redact(BINANCE_LIKE) == f"{BINANCE_LIKE[:4]}***(64 chars)"
    assert redact("hunter2") == "***"


def test_severity_order():
    assert Severity.low < Severity.medium < Severity.high < Severity.critical
    assert max([Severity.high, Severity.critical, Severity.low]) is Severity.critical


def _finding(rule: str = "B602", path: str = "strategy.py") -> Finding:
    return Finding(rule, "bandit", Severity.high, "m", "f", path, 3, fingerprint("bandit", rule, path, "x"))


def test_baseline_applies_through_its_expiry_day():
    entry = BaselineEntry(number=1, reason="accepted", expires=dt.date(2026, 3, 1), id="bandit/*", path="str*")
    finding = _finding()
    active, hidden, notes = apply_baseline([finding], [entry], dt.date(2026, 3, 1))
    assert (active, [h.finding for h in hidden], notes) == ([], [finding], [])
    active, hidden, notes = apply_baseline([finding], [entry], dt.date(2026, 3, 2))
    assert active == [finding] and hidden == []
    assert notes == ["baseline entry 1 (bandit/* in str*) expired on 2026-03-01: its 1 finding(s) count again"]


def test_baseline_by_fingerprint_and_unused_entries_of_tools_that_did_not_run():
    target, other = _finding("B602"), _finding("B506")
    by_print = BaselineEntry(number=1, reason="r", expires=dt.date(2999, 1, 1), fingerprint=target.fingerprint)
    audit = BaselineEntry(number=2, reason="r", expires=dt.date(2999, 1, 1), id="pip-audit/GHSA-*")
    active, hidden, notes = apply_baseline([target, other], [by_print, audit], dt.date(2026, 1, 1), ran={"bandit"})
    assert active == [other] and [h.finding for h in hidden] == [target]
    assert notes == []  # pip-audit did not run: its entry is not called stale
    _, _, notes = apply_baseline([target, other], [by_print, audit], dt.date(2026, 1, 1))
    assert notes == ["baseline entry 2 (pip-audit/GHSA-*) matches no finding: remove it"]


# pip-audit 2.10.1's real output on our machines with its default PyPI service, whose JSON
# API answers 404 to per-version lookups (run: pip-audit -r req.txt --no-deps --disable-pip
# -f json). It exits 0 and prints "No known vulnerabilities found". No real part can make
# pip-audit skip packages on loopback (its PyPI URL is fixed), so the recorded document is used.
PYPI_404 = {"dependencies": [
    {"name": "pyyaml", "skip_reason": "Dependency not found on PyPI and could not be audited: pyyaml (5.3.1)"},
    {"name": "requests", "skip_reason": "Dependency not found on PyPI and could not be audited: requests (2.19.0)"},
], "fixes": []}


def test_pip_audit_skipping_everything_is_a_failure(tmp_path):
    scanner = DependencyScanner(service="pypi")
    outcome = scanner.interpret(PYPI_404, tmp_path, "req.txt")
    assert outcome.status == "failed"
    assert outcome.reason.startswith("pip-audit could not audit any of the 2 packages against the PyPI JSON API")


def test_pip_audit_skipped_packages_are_findings(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = [\n  "requests>=2",\n  "rich>=13",\n]\n')
    document = {"dependencies": [PYPI_404["dependencies"][1], {"name": "rich", "version": "13.7.0", "vulns": []},
                                 {"name": "sigmax", "skip_reason": "distribution marked as editable"}]}
    outcome = DependencyScanner(service="pypi").interpret(document, tmp_path, "the environment")
    assert outcome.status == "ok"
    [finding] = outcome.findings
    assert (finding.id, finding.severity, finding.path, finding.line) == (
        "pip-audit/not-audited", Severity.medium, "pyproject.toml", 3)
    assert outcome.notes[0] == "audited 1 packages of the environment against the PyPI JSON API"
    assert "sigmax is installed editable" in outcome.notes[1]


def _restrictions(withdrawals: bool, ip_restrict: bool) -> dict:
    """Shaped like Binance's documented GET /sapi/v1/account/apiRestrictions response."""
    return {"ipRestrict": ip_restrict, "createTime": 1698645219000, "enableReading": True,
            "enableWithdrawals": withdrawals, "enableInternalTransfer": False, "enableMargin": False,
            "enableFutures": False, "permitsUniversalTransfer": False, "enableVanillaOptions": False,
            "enableSpotAndMarginTrading": True, "enablePortfolioMarginTrading": False}


@pytest.mark.parametrize(("withdrawals", "ip_restrict", "expected"), [
    (True, False, {"config/withdrawal-permission": "critical", "config/key-not-ip-restricted": "medium"}),
    (False, True, {}),
])
def test_key_rights_read_from_the_exchange(cli, binance_emulator, tmp_path, withdrawals, ip_restrict, expected):
    binance_emulator.route("GET", "/sapi/v1/account/apiRestrictions",
                           lambda req: Response(200, _restrictions(withdrawals, ip_restrict)))
    (tmp_path / "empty").mkdir()
    env = {"SIGMAX_API_KEY": API_KEY, "SIGMAX_API_SECRET": API_SECRET, "SIGMAX_EXCHANGE_API_URL": binance_emulator.url}
    result = cli("security-scan", tmp_path / "empty", "--json", "--skip", "pip-audit,bandit,secrets", env=env)
    doc = json.loads(result.stdout)
    found = {f["id"]: f["severity"] for f in doc["findings"] if f["id"].startswith("config/")}
    assert found == expected
    assert result.exit_code == (1 if expected else 0)
    [request] = binance_emulator.requests("/sapi/v1/account/apiRestrictions")
    assert "signature" in request.params  # a real signed ccxt call
    assert API_KEY not in result.stdout and API_SECRET not in result.stdout
    assert any("read the rights of the binance API key" in n for n in doc["scanners"][3]["notes"])


def test_unreachable_exchange_is_a_visible_note_not_a_failure(cli, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "empty").mkdir()
    env = {"SIGMAX_API_KEY": API_KEY, "SIGMAX_API_SECRET": API_SECRET,
           "SIGMAX_EXCHANGE_API_URL": f"http://127.0.0.1:{port}"}
    result = cli("security-scan", tmp_path / "empty", "--json", "--skip", "pip-audit,bandit,secrets", env=env)
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["summary"]["failed"] == []
    assert any(n.startswith("withdrawal permission not checked: ") for n in doc["scanners"][3]["notes"])


def test_table_groups_by_severity(tmp_path):
    from rich.console import Console

    from sigmax_cli.security.base import ScanResult
    from sigmax_cli.security.formats import TableFormatter
    from sigmax_cli.security.scan import run_scan
    from sigmax_cli.settings import load_settings

    class Fixed:
        name = "bandit"

        def scan(self, path: Path) -> ScanResult:
            return ScanResult("bandit", (_finding("B101"), Finding("B602", "bandit", Severity.critical, "shell", "list",
                                                                   "a.py", 1, "f" * 32)))

    report = run_scan(tmp_path, load_settings(), scanners={"bandit": Fixed()}, fail_on="critical")
    assert report.exit_code == 1
    console = Console(record=True, width=160, color_system=None)
    console.print(TableFormatter().render(report))
    text = console.export_text()
    assert text.index("CRITICAL (1)") < text.index("HIGH (1)")
    assert "FAIL: 1 finding(s) at or above critical (exit 1)" in text


def test_testnet_env_file_that_goes_live(tmp_path):
    from sigmax_cli.security.config import ConfigScanner
    from sigmax_cli.settings import load_settings

    env = tmp_path / ".env.testnet"
    env.write_text("SIGMAX_EXCHANGE=binance\nSIGMAX_ENV=live\n")
    env.chmod(0o600)
    result = ConfigScanner(load_settings()).scan(tmp_path)
    assert sorted((f.id, f.severity, f.line) for f in result.findings) == [
        ("config/live-without-max-capital", Severity.high, None),
        ("config/testnet-env-file-live", Severity.high, 2)]
