"""Bad input to ``sigmax security-scan``: one sentence on stderr, non-zero exit, nothing
on stdout, no file written."""

from __future__ import annotations

from pathlib import Path

import pytest

TREE = Path(__file__).resolve().parent / "fixtures" / "security_tree"
SKIP_SLOW = ("--skip", "pip-audit,bandit,secrets")


def assert_refused(result, code: int, *phrases: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith("."), result.stderr
    for phrase in phrases:
        assert phrase in lines[0]


@pytest.mark.parametrize(
    ("args", "code", "phrases"),
    [
        (("missing-dir",), 66, ("scan path", "does not exist")),
        ((".", "--fail-on", "severe"), 2, ("unknown severity 'severe'", "low, medium, high or critical")),
        ((".", "--skip", "pip-audit,trivy"), 2, ("unknown scanner 'trivy'",)),
        ((".", "--skip", "pip-audit,bandit,secrets,config"), 2, ("leaves no scanner",)),
        ((".", "--osv-url", "ftp://mirror/v1/query"), 2, ("is not an http(s) URL",)),
        ((".", "--json", "--format", "sarif"), 2, ("two formats",)),
        ((".", "--baseline", "nope.toml"), 66, ("baseline file", "does not exist")),
    ],
)
def test_bad_options(cli, args, code, phrases, tmp_path):
    before = sorted(tmp_path.rglob("*"))  # the cwd of the test
    skip = () if "--skip" in args else SKIP_SLOW
    assert_refused(cli("security-scan", *args, *skip), code, *phrases)
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        ('[[ignore]]\nid = "bandit/B602"\nexpires = 2030-01-01\n', ("entry 1 has no reason",)),
        ('[[ignore]]\nid = "bandit/B602"\nreason = "ok"\n', ("entry 1 has no valid expires date",)),
        ('[[ignore]]\nid = "bandit/B602"\nreason = "ok"\nexpires = "soon"\n', ("no valid expires date",)),
        ('[[ignore]]\nreason = "ok"\nexpires = 2030-01-01\n', ("names no finding",)),
        ('[[ignore]]\nid = "x"\nreason = "ok"\nexpires = 2030-01-01\nowner = "me"\n', ("unknown key(s) owner",)),
        ('[[ignore]\nid = "x"\n', ("is not valid TOML",)),
        ('[allow]\nid = "x"\n', ("unknown table(s) allow",)),
    ],
)
def test_bad_baseline(cli, tmp_path, content, phrases):
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(content)
    assert_refused(cli("security-scan", TREE, "--baseline", baseline, *SKIP_SLOW), 2, *phrases)


def test_output_in_missing_directory_writes_nothing(cli, tmp_path):
    target = tmp_path / "no-such-dir" / "scan.sarif"
    assert_refused(cli("security-scan", TREE, "--format", "sarif", "--output", target, *SKIP_SLOW), 2, "cannot write")
    assert not target.parent.exists()


def test_existing_output_is_replaced_whole(cli, tmp_path):
    target = tmp_path / "scan.json"
    target.write_text("old")
    result = cli("security-scan", TREE, "--json", "--output", target, *SKIP_SLOW)
    assert result.exit_code == 1  # the webhook in the fixture profile
    assert target.read_text().startswith('{"scan_version": 1')
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".scan.json")] == []
