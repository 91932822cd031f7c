"""``sigmax security-scan`` end to end on a tree of planted problems.

Real parts throughout: pip-audit (a subprocess) queries the OSV-compatible server of
tests/support/osv_server.py on 127.0.0.1, which serves the real GitHub advisory
GHSA-8q59-q68h-6hv4 (PyYAML < 5.4); bandit and detect-secrets run on the files; the env
files are created here with the modes under test (git does not keep modes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import string
from pathlib import Path

import pytest

from tests.support.osv_server import OsvServer

TREE = Path(__file__).resolve().parent / "fixtures" / "security_tree"
SCHEMA = Path(__file__).resolve().parent / "fixtures" / "sarif-schema-2.1.0.json"
# FAKE values built at run time, shaped like Binance keys (64 letters and digits, mixed case).
ALNUM = string.ascii_letters + string.digits
LIVE_KEY = (ALNUM[5:] + ALNUM)[:64]
LIVE_SECRET = (ALNUM[13:] + ALNUM)[:64]


def planted_secret() -> str:
    return re.search(r'BINANCE_API_SECRET = "(\w+)"', (TREE / "strategy.py").read_text()).group(1)


@pytest.fixture
def tree(tmp_path) -> Path:
    """The fixture tree plus a live env file of mode 0644 (no capital cap) and a testnet env
    file (0600) that reuses the live key."""
    root = tmp_path / "tree"
    shutil.copytree(TREE, root)
    live = root / ".env.live"
    live.write_text(f"SIGMAX_ENV=live\nSIGMAX_API_KEY={LIVE_KEY}\nSIGMAX_API_SECRET={LIVE_SECRET}\n")
    live.chmod(0o644)
    testnet = root / ".env.testnet"
    testnet.write_text(f"SIGMAX_ENV=testnet\nSIGMAX_API_KEY={LIVE_KEY}\n")
    testnet.chmod(0o600)
    return root


@pytest.fixture
def osv():
    with OsvServer() as server:
        yield server


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/query"


def no_secret_in(*texts: str) -> None:
    for text in texts:
        for secret in (planted_secret(), LIVE_KEY, LIVE_SECRET, "FakeWebhookToken4Tests"):
            assert secret not in text


def by_id(document: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for finding in document["findings"]:
        out.setdefault(finding["id"], []).append(finding)
    return out


def test_every_planted_problem_is_found_with_its_severity(cli, tree, osv):
    result = cli("security-scan", tree, "--json", "--osv-url", osv.query_url)
    assert result.exit_code == 1, result.stderr
    doc = json.loads(result.stdout)
    found = by_id(doc)
    expect = {
        "pip-audit/GHSA-8q59-q68h-6hv4": ("critical", "requirements.txt", 3),
        "pip-audit/unpinned-requirement": ("medium", "requirements.txt", 5),
        "bandit/B602": ("high", "strategy.py", 13),
        "bandit/B506": ("medium", "strategy.py", 18),
        "secrets/binance-api-secret": ("critical", "strategy.py", 8),
        "config/env-file-permissions": ("high", ".env.live", None),
        "config/live-without-max-capital": ("high", ".env.live", None),
        "config/live-key-in-testnet-env": ("critical", ".env.testnet", 2),
        "config/secret-in-profile": ("high", "profiles/alerts.toml", 6),
    }
    for finding_id, (severity, path, line) in expect.items():
        assert finding_id in found, f"{finding_id} not found in {sorted(found)}"
        hit = found[finding_id][0]
        assert (hit["severity"], hit["path"], hit["line"]) == (severity, path, line), hit
    vuln = found["pip-audit/GHSA-8q59-q68h-6hv4"][0]
    assert "CVE-2020-14343" in vuln["message"] and "5.4" in vuln["fix"]
    assert "0644" in found["config/env-file-permissions"][0]["message"]
    # the dependency audit really went over HTTP to the OSV server, for the pinned version
    queries = [body for method, path, body in osv.log if method == "POST"]
    assert {"package": {"name": "pyyaml", "ecosystem": "PyPI"}, "version": "5.3.1"} in queries
    assert doc["summary"]["failed"] == [] and doc["exit_code"] == 1
    assert doc["summary"]["by_severity"]["critical"] == 3
    no_secret_in(result.stdout, result.stderr)


def test_plain_output_groups_by_severity_and_redacts(cli, tree, osv):
    result = cli("security-scan", tree, "--osv-url", osv.query_url)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    order = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}
    severities = [ln.split()[0] for ln in lines if ln.split() and ln.split()[0] in order]
    assert severities == sorted(severities, key=order.get) and severities[0] == "CRITICAL"
    assert any(ln.startswith("CRITICAL secrets/binance-api-secret strategy.py:8") for ln in lines)
    assert f"{planted_secret()[:4]}***(64 chars)" in result.stdout
    assert lines[-1].startswith("FAIL: ") and "(exit 1)" in lines[-1]
    no_secret_in(result.stdout, result.stderr)


def test_fail_on_threshold(cli, tree):
    # bandit alone: B602 high, B506 medium, B404/B105 low
    base = ("security-scan", tree, "--skip", "pip-audit,secrets,config")
    assert cli(*base, "--fail-on", "critical").exit_code == 0
    assert cli(*base, "--fail-on", "high").exit_code == 1
    assert cli(*base, "--fail-on", "HIGH").exit_code == 1
    assert cli(*base, env={"SIGMAX_SECURITY__FAIL_ON": "critical"}).exit_code == 0  # the setting is the default
    (tree / "strategy.py").write_text("def ok() -> int:\n    return 1\n")
    assert cli(*base, "--fail-on", "low").exit_code == 0


def test_sarif_validates_and_is_stable(cli, tree, osv, tmp_path):
    import jsonschema

    out = tmp_path / "scan.sarif"
    result = cli("security-scan", tree, "--format", "sarif", "--output", out, "--osv-url", osv.query_url)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"wrote {out}" in result.stderr and "FAIL:" in result.stderr
    text = out.read_text()
    no_secret_in(text)
    sarif = json.loads(text)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(sarif)
    assert sarif["version"] == "2.1.0"
    drivers = [run["tool"]["driver"]["name"] for run in sarif["runs"]]
    assert drivers == ["pip-audit", "bandit", "sigmax-secrets", "sigmax-config"]
    for run in sarif["runs"]:
        rule_ids = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
        assert len(rule_ids) == len(set(rule_ids))
        for res in run["results"]:
            assert res["ruleId"] == rule_ids[res["ruleIndex"]]
            assert re.fullmatch(r"[0-9a-f]{32}", res["partialFingerprints"]["sigmaxFingerprint/v1"])
    bandit = next(run for run in sarif["runs"] if run["tool"]["driver"]["name"] == "bandit")
    b602 = next(res for res in bandit["results"] if res["ruleId"] == "bandit/B602")
    location = b602["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "strategy.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"]["startLine"] == 13
    rule = next(r for r in bandit["tool"]["driver"]["rules"] if r["id"] == "bandit/B602")
    assert rule["properties"]["security-severity"] == "8.0"

    # the same problems after lines moved: same rule ids and fingerprints
    source = tree / "strategy.py"
    source.write_text("\n\n" + source.read_text())
    again = tmp_path / "again.sarif"
    assert cli("security-scan", tree, "--format", "sarif", "--output", again, "--osv-url", osv.query_url).exit_code == 1

    def prints(doc):
        return sorted((r["ruleId"], r["partialFingerprints"]["sigmaxFingerprint/v1"])
                      for run in doc["runs"] for r in run["results"])

    moved = json.loads(again.read_text())
    assert prints(moved) == prints(sarif)
    b602_moved = next(r for run in moved["runs"] for r in run["results"] if r["ruleId"] == "bandit/B602")
    assert b602_moved["locations"][0]["physicalLocation"]["region"]["startLine"] == 15


def test_unreachable_vulnerability_service_exits_2_and_says_so(cli, tree):
    url = closed_port_url()
    result = cli("security-scan", tree, "--osv-url", url, "--skip", "bandit,secrets,config")
    assert result.exit_code == 2
    assert f"pip-audit could not reach the vulnerability service, OSV at {url}" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("INCOMPLETE: pip-audit could not scan")
    as_json = cli("security-scan", tree, "--osv-url", url, "--json")
    assert as_json.exit_code == 2
    doc = json.loads(as_json.stdout)
    assert doc["summary"]["failed"] == ["pip-audit"] and doc["exit_code"] == 2
    assert doc["findings"], "the other scanners still report"
    sarif_out = tree.parent / "failed.sarif"
    cli("security-scan", tree, "--osv-url", url, "--format", "sarif", "--output", sarif_out)
    run = json.loads(sarif_out.read_text())["runs"][0]
    assert run["invocations"][0]["executionSuccessful"] is False


def test_skipped_scanner_is_shown_not_clean(cli, tree):
    result = cli("security-scan", tree, "--json", "--skip", "pip-audit,secrets")
    doc = json.loads(result.stdout)
    assert doc["summary"]["skipped"] == ["pip-audit", "secrets"]
    statuses = {s["name"]: s["status"] for s in doc["scanners"]}
    assert statuses == {"pip-audit": "skipped", "bandit": "ok", "secrets": "skipped", "config": "ok"}


def test_baseline_hides_until_expiry(cli, tree, tmp_path):
    baseline = tmp_path / "baseline.toml"
    base = ("security-scan", tree, "--skip", "pip-audit,secrets,config", "--json", "--baseline", baseline)
    baseline.write_text(
        '[[ignore]]\nid = "bandit/B602"\npath = "strategy.py"\nreason = "notify() only gets constants"\n'
        "expires = 2999-12-31\n"
        '[[ignore]]\nid = "bandit/B999"\nreason = "an old rule"\nexpires = 2999-12-31\n'
    )
    result = cli(*base)
    assert result.exit_code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert "bandit/B602" not in by_id(doc)
    [hidden] = doc["suppressed"]
    assert (hidden["id"], hidden["reason"]) == ("bandit/B602", "notify() only gets constants")
    assert any("entry 2 (bandit/B999)" in note and "matches no finding" in note for note in doc["baseline_notes"])

    baseline.write_text('[[ignore]]\nid = "bandit/B602"\nreason = "accepted for a while"\nexpires = 2020-01-31\n')
    expired = cli(*base)
    assert expired.exit_code == 1
    doc = json.loads(expired.stdout)
    assert "bandit/B602" in by_id(doc) and doc["suppressed"] == []
    assert any("expired on 2020-01-31" in note for note in doc["baseline_notes"])


def test_tracked_env_file_is_found(cli, tree):
    from dulwich import porcelain

    porcelain.init(str(tree))
    porcelain.add(str(tree), paths=[str(tree / ".env.live")])
    result = cli("security-scan", tree, "--json", "--skip", "pip-audit,bandit,secrets")
    tracked = by_id(json.loads(result.stdout))["config/env-file-tracked"]
    assert [(f["path"], f["severity"]) for f in tracked] == [(".env.live", "critical")]
    no_secret_in(result.stdout)


@pytest.mark.parametrize(("mode", "expected"), [(0o700, None), (0o755, "medium"), (0o777, "high")])
def test_state_directory_permissions(cli, tmp_path, mode, expected):
    home = Path(os.environ["SIGMAX_HOME"])
    home.mkdir(parents=True)
    home.chmod(mode)
    (tmp_path / "empty").mkdir()
    result = cli("security-scan", tmp_path / "empty", "--json", "--skip", "pip-audit,bandit,secrets")
    found = by_id(json.loads(result.stdout)).get("config/home-permissions")
    assert (found[0]["severity"] if found else None) == expected


def test_live_settings_without_cap_are_found(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    result = cli("security-scan", tmp_path / "empty", "--json", "--skip", "pip-audit,bandit,secrets",
                 env={"SIGMAX_ENV": "live"})
    assert by_id(json.loads(result.stdout))["config/live-without-max-capital"][0]["severity"] == "high"
    capped = cli("security-scan", tmp_path / "empty", "--json", "--skip", "pip-audit,bandit,secrets",
                 env={"SIGMAX_ENV": "live", "SIGMAX_RISK__MAX_CAPITAL": "500"})
    assert "config/live-without-max-capital" not in by_id(json.loads(capped.stdout))


def test_a_package_the_service_fails_on_is_itemised_and_the_rest_still_audited(cli, tmp_path, osv):
    """The OSV fake answers 500 for one package, as the real service does when it breaks on
    one: pip-audit aborts its whole run on it (ServiceError, no JSON)."""
    project = tmp_path / "deps"
    project.mkdir()
    (project / "requirements.txt").write_text("# pinned\npyyaml==5.3.1\nrequests==2.31.0\nidna==3.6\nsix==1.16.0\n")
    osv.failing = {"requests"}
    result = cli("security-scan", project, "--json", "--skip", "bandit,secrets,config", "--osv-url", osv.query_url)
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["summary"]["failed"] == [], result.stdout
    found = by_id(doc)
    assert [(f["severity"], f["path"], f["line"]) for f in found["pip-audit/GHSA-8q59-q68h-6hv4"]] == [
        ("critical", "requirements.txt", 2)]  # the others were audited
    (failed,) = found["pip-audit/not-audited"]
    assert (failed["severity"], failed["path"], failed["line"]) == ("medium", "requirements.txt", 3)
    assert failed["message"].startswith(f"requests 2.31.0 could not be audited: pip-audit failed on it against OSV at "
                                        f"{osv.query_url} (500 Server Error")
    queried = {body["package"]["name"] for method, _path, body in osv.log if method == "POST"}
    assert queried == {"pyyaml", "requests", "idna", "six"}
    pip_audit = next(s for s in doc["scanners"] if s["name"] == "pip-audit")
    assert any("pip-audit failed on 1 package(s)" in note for note in pip_audit["notes"])


def test_when_the_service_fails_on_every_package_the_audit_fails(cli, tmp_path, osv):
    project = tmp_path / "deps"
    project.mkdir()
    (project / "requirements.txt").write_text("requests==2.31.0\nidna==3.6\n")
    osv.failing = {"requests", "idna"}
    result = cli("security-scan", project, "--json", "--skip", "bandit,secrets,config", "--osv-url", osv.query_url)
    doc = json.loads(result.stdout)
    assert result.exit_code == 2 and doc["summary"]["failed"] == ["pip-audit"]
