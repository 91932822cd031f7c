"""Input a user can get wrong, through the real CLI: one sentence naming cause and fix, the
right exit code, nothing written (no ledger, no run left `running`). Non-finite --balance and
--speed, candle files with repeated or out-of-order rows (reported, see below), env files that
are devices, directories, malformed or readable by others, a state directory that is a file,
a malformed PostgreSQL URL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import FREQTRADE_1H

BTC_1H = FREQTRADE_1H / "BTC_USDT-1h.json"


def _one_sentence(result, code: int, text: str) -> None:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _nothing_written(tmp_path: Path) -> None:
    assert not (tmp_path / "home" / "ledger.db").exists()


@pytest.mark.parametrize("option, value, text", [
    ("--balance", "inf", "--balance inf is not a starting balance: it must be a finite number greater than 0; "
                         "give the starting quote balance, e.g. --balance 10000."),
    ("--balance", "nan", "--balance nan is not a starting balance"),
    ("--balance", "-5", "--balance -5 is not a starting balance"),
    ("--speed", "nan", "--speed nan is not a replay speed: it must be a finite number, 0 or more; pass e.g. "
                       "--speed 0 (as fast as possible) or --speed 60 (60 x real time)."),
    ("--speed", "inf", "--speed inf is not a replay speed"),
])
def test_non_finite_balance_and_speed_are_refused_before_anything_is_written(cli, tmp_path, option, value, text):
    result = cli("paper", "--data", BTC_1H, option, value, "--json")
    _one_sentence(result, 2, text)
    assert result.stdout == ""
    _nothing_written(tmp_path)


def test_a_non_finite_balance_from_the_environment_is_refused_too(cli, tmp_path):
    result = cli("paper", "--data", BTC_1H, "--json", env={"SIGMAX_PAPER__BALANCE": "inf"})
    _one_sentence(result, 2, "setting 'paper.balance' is invalid: Input should be a finite number")
    _nothing_written(tmp_path)


# -- candle files with repeated and out-of-order rows --------------------------------------------
# Decision: reported, not refused. An exact repeat carries no conflicting information (files
# assembled from overlapping downloads have them; two *different* candles at one time are still
# refused), and rows out of order are sorted; what was silent is now a warning line, a field in
# --json and counts in the run's data files in the ledger, so nobody replays a repaired file
# without knowing it.
@pytest.fixture
def messy(tmp_path) -> Path:
    rows = json.loads(BTC_1H.read_text())[:400]
    rows.insert(101, list(rows[100]))  # row 102 repeats row 101
    rows.insert(251, list(rows[250]))  # and row 252 repeats row 251 (of the new file)
    rows[300], rows[301] = rows[301], rows[300]  # rows 301 and 302 swapped
    folder = tmp_path / "messy"
    folder.mkdir()
    (folder / "BTC_USDT-1h.json").write_text(json.dumps(rows))
    return folder


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def test_data_check_reports_repeated_and_out_of_order_rows(cli, messy):
    rows = json.loads((messy / "BTC_USDT-1h.json").read_text())
    doc = json.loads(cli("data", "check", messy / "BTC_USDT-1h.json", "--json").stdout)
    (report,) = doc["files"]
    assert report["bars"] == 400 and report["dropped_duplicates"] == 2
    assert report["duplicates"] == {"count": 2, "first": _iso(rows[101][0]), "row": 102}
    assert report["out_of_order"] == {"count": 1, "first": _iso(rows[301][0]), "row": 302,
                                      "after": _iso(rows[300][0])}
    assert report["warnings"] == [
        f"BTC_USDT-1h.json: 2 candle row(s) repeat an earlier one (first: row 102, {_iso(rows[101][0])}); the "
        "repeats were identical and were dropped",
        f"BTC_USDT-1h.json: 1 candle row(s) out of time order (first: row 302, {_iso(rows[301][0])} after "
        f"{_iso(rows[300][0])}); they were sorted",
    ]
    text = cli("data", "check", messy / "BTC_USDT-1h.json")
    assert text.exit_code == 0 and text.stdout.count("warning: BTC_USDT-1h.json: ") == 2


def test_a_newest_first_file_is_a_layout_not_an_anomaly(cli, tmp_path):
    rows = json.loads(BTC_1H.read_text())[:100][::-1]
    path = tmp_path / "BTC_USDT-1h.json"
    path.write_text(json.dumps(rows))
    (report,) = json.loads(cli("data", "check", path, "--json").stdout)["files"]
    assert report["bars"] == 100 and report["out_of_order"] is None and report["warnings"] == []


def test_paper_warns_about_them_in_its_output_its_json_and_the_ledger(cli, tmp_path, messy):
    result = cli("paper", "--data", messy, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [w.split(":")[1].split("(")[0].strip() for w in doc["data_warnings"]] == [
        "2 candle row", "1 candle row"]
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        (files,) = conn.execute("select data_files_json from runs").fetchone()
    (entry,) = json.loads(files)
    assert entry["duplicates"] == 2 and entry["out_of_order"] == 1
    plain = cli("paper", "--data", messy, "--no-tui")
    assert plain.exit_code == 0 and plain.stdout.count("warning: BTC_USDT-1h.json: ") == 2


# -- env files ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["device", "directory", "syntax", "missing"])
@pytest.mark.parametrize("command", [["config"], ["paper", "--data", str(BTC_1H)], ["report", "--list"],
                                     ["run", "--max-ticks", "1"]])
def test_a_bad_env_file_is_named_for_what_it_is(cli, tmp_path, kind, command):
    if kind == "device":
        path, text = "/dev/zero", "env file /dev/zero is a character device, not a file of SIGMAX_* settings; " \
                                  "point --env-file at a dotenv file such as .env.testnet."
    elif kind == "directory":
        path, text = str(tmp_path), f"env file {tmp_path} is a directory, not a file of SIGMAX_* settings"
    elif kind == "syntax":
        bad = tmp_path / ".env.testnet"
        bad.write_text("SIGMAX_PROFILE=balanced\nSIGMAX_API_SECRET top-secret-value\n")
        bad.chmod(0o600)
        path, text = str(bad), (f"env file {bad} line 2 is not a KEY=VALUE setting; fix that line (quote values "
                                "with spaces or #, e.g. KEY=\"a b\") or remove it.")
    else:
        path, text = str(tmp_path / "nope.env"), f"env file {tmp_path / 'nope.env'} does not exist"
    result = cli("--env-file", path, *command)
    _one_sentence(result, 2, text)
    assert "top-secret-value" not in result.stdout + result.stderr  # the bad line is named, never shown
    assert "python-dotenv" not in result.stderr
    _nothing_written(tmp_path)


@pytest.mark.parametrize("command", [["config"], ["paper", "--data", str(BTC_1H), "--max-bars", "50", "--json"],
                                     ["report", "--list"], ["health", "--check", "killswitch"]])
def test_a_keys_file_others_may_read_warns_in_every_command_that_reads_it(cli, tmp_path, command):
    keys = tmp_path / "keys.env"
    keys.write_text("SIGMAX_API_KEY=abcdefghijklmnop\nSIGMAX_API_SECRET=qrstuvwxyz012345\n")
    keys.chmod(0o644)
    (tmp_path / "home").mkdir()
    if command[0] == "report":
        assert cli("paper", "--data", BTC_1H, "--max-bars", "50", "--json").exit_code == 0
    result = cli("--env-file", keys, *command)
    warning = f"warning: {keys} holds API keys and is readable by group or others (mode 0644); chmod 600 {keys}\n"
    assert result.stderr.count(warning) == 1, result.stderr
    assert "abcdefghijklmnop" not in result.stdout + result.stderr
    keys.chmod(0o600)
    assert "warning" not in cli("--env-file", keys, *command).stderr


# -- state directory, database URL --------------------------------------------------------------
@pytest.mark.parametrize("command", [["paper", "--data", str(BTC_1H)], ["report", "--list"], ["monitor", "--once"],
                                     ["runs", "list"], ["backup"]])
def test_a_home_that_is_a_file_says_so(cli, tmp_path, command):
    not_a_dir = tmp_path / "hostname"
    not_a_dir.write_text("myhost\n")
    result = cli("--home", not_a_dir, *command)
    _one_sentence(result, 2, f"the state directory {not_a_dir} (--home / SIGMAX_HOME) is a file, not a directory; "
                             "point --home or SIGMAX_HOME at a directory (it is created when missing).")
    assert not_a_dir.read_text() == "myhost\n"


@pytest.mark.parametrize("url, text", [
    ("postgresql://sigmax@127.0.0.1:99999/sigmax", "port 99999 is not between 1 and 65535"),
    ("postgresql://sigmax@127.0.0.1:5432/sigmax?sslmode=bogus", "sslmode=bogus is not one of disable, allow"),
    ("postgresql://sigmax@127.0.0.1:5432/sigmax?colour=blue", 'invalid connection option "colour"'),
    ("postgresql://sigmax@127.0.0.1:port/sigmax", "is malformed"),
])
@pytest.mark.parametrize("command", [["report", "--list"], ["paper", "--data", str(BTC_1H)]])
def test_a_malformed_postgresql_url_is_bad_input_not_an_outage(cli, tmp_path, url, text, command):
    result = cli(*command, env={"SIGMAX_DATABASE_URL": url})
    _one_sentence(result, 2, text)
    assert "postgresql://USER@HOST:PORT/DB" in result.stderr
    _nothing_written(tmp_path)
