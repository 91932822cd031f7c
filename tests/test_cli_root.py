"""The root app: version, help, global options, lazy imports, the error boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.app import COMMANDS
from sigmax_cli import __version__
from tests.conftest import FREQTRADE_1H

REPO = Path(__file__).resolve().parent.parent


def test_version_and_help(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"sigmax {__version__}"
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("paper", "report", "data", "config"):
        assert command in result.stdout


def _modules_after(*argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter has imported after running ``sigmax ARGV``."""
    code = ("import sys\nfrom commands.app import main\nsys.argv = ['sigmax', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nMODULES ' + ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, env=env)
    return set(out.stderr.rsplit("MODULES ", 1)[1].split())


def test_help_does_not_import_heavy_libraries():
    loaded = _modules_after("--help")
    assert not loaded & {"ccxt", "pandas", "torch", "stable_baselines3", "matplotlib", "sqlalchemy"}
    assert {f"commands.{module}" for module in COMMANDS.values()} <= loaded  # --help lists them all


def test_a_command_imports_its_own_module_only(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMAX_")}
    loaded = _modules_after("--home", str(tmp_path), "health", "--check", "system", env=env)
    assert {m for m in loaded if m.startswith("commands.")} == {"commands.app", "commands.context", "commands.health"}
    assert not loaded & {"rich", "sqlalchemy", "pydantic_settings", "redis", "psycopg", "ccxt", "pandas"}


def test_every_command_in_the_table_builds_under_its_name():
    from typer.main import get_command

    from commands.app import app

    root = get_command(app)
    assert list(root.commands) == list(COMMANDS)
    for name in COMMANDS:
        command = root.commands[name]
        assert command.name == name and (command.help or "").strip(), name
    assert root.commands["data"].list_commands(None) == ["check", "download"]


def test_console_script_runs_without_a_traceback():
    out = subprocess.run(["sigmax", "--profile", "nope", "config"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "error: unknown profile 'nope'; use one of conservative, balanced, aggressive or a " \
                         "path to a .toml file.\n"


def test_traceback_only_with_verbose(cli):
    quiet = cli("--profile", "nope", "config")
    assert "Traceback" not in quiet.stderr
    loud = cli("-v", "--profile", "nope", "config")
    assert loud.exit_code == 2 and "Traceback" in loud.stderr and "unknown profile" in loud.stderr


def test_unexpected_errors_are_one_line_exit_70(cli, monkeypatch):
    import sigmax_cli.settings as settings_module

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(settings_module, "load_settings", boom)
    result = cli("config")
    assert result.exit_code == 70
    assert result.stderr == "error: unexpected RuntimeError: disk on fire; rerun with -v for the traceback and " \
                            "report it.\n"


def test_home_option_and_no_color(cli, tmp_path):
    result = cli("--home", tmp_path / "elsewhere", "--no-color", "config", "--json")
    assert result.exit_code == 0
    assert f'"home": "{tmp_path / "elsewhere"}"' in result.stdout
    assert "\x1b[" not in result.stdout


BAD_SETUPS = {
    "unknown profile": (["--profile", "nope"], {}, 2, "unknown profile 'nope'"),
    "malformed toml": (["--profile", "{toml}"], {}, 2, "is not valid TOML"),
    "missing env file": (["--env-file", "{missing}"], {}, 2, "env file"),
    "malformed database url": ([], {"SIGMAX_DATABASE_URL": "postgresql://a:b@:x:y/"}, 2, "malformed"),
    "unsupported database": ([], {"SIGMAX_DATABASE_URL": "mysql://root@127.0.0.1/test"}, 2, "does not support"),
    "unreachable database": ([], {"SIGMAX_DATABASE_URL": "postgresql://sigmax:pw-123@127.0.0.1:1/x"}, 69,
                             "cannot open the ledger at postgresql://sigmax:***@127.0.0.1:1/x"),
    "unknown timeframe": ([], {"SIGMAX_TIMEFRAME": "3q"}, 2, "unknown timeframe '3q'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SETUPS))
@pytest.mark.parametrize("command", [["paper", "--data", str(FREQTRADE_1H), "--json"], ["report", "--latest"]])
def test_bad_setup_is_one_sentence_and_nothing_written(cli, tmp_path, case, command):
    args, env, code, message = BAD_SETUPS[case]
    bad = tmp_path / "bad.toml"
    bad.write_text("[risk\nmax_open_orders = 1\n")
    args = [a.replace("{toml}", str(bad)).replace("{missing}", str(tmp_path / "absent.env")) for a in args]
    result = cli(*args, *command, env=env)
    assert result.exit_code == code, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "pw-123" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "home").exists()
