"""Settings: precedence, profiles, env files, validation and secret redaction."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from sigmax_cli.errors import ConfigError
from sigmax_cli.settings import BUILTIN_PROFILES, Settings, load_settings, redacted_dict, secret_values

REPO = Path(__file__).resolve().parent.parent


def test_precedence_cli_over_env_over_env_file_over_profile_over_default(tmp_path, monkeypatch):
    profile = tmp_path / "p.toml"
    profile.write_text('timeframe = "4h"\nexchange = "okx"\nquote = "USDC"\n[risk]\nmax_open_orders = 7\n'
                       'max_order_notional = 100.0\n')
    env_file = tmp_path / ".env.testnet"
    env_file.write_text("SIGMAX_TIMEFRAME=15m\nSIGMAX_EXCHANGE=bybit\nSIGMAX_RISK__MAX_OPEN_ORDERS=8\n")
    monkeypatch.setenv("SIGMAX_TIMEFRAME", "5m")
    monkeypatch.setenv("SIGMAX_RISK__MAX_OPEN_ORDERS", "9")
    s = load_settings(profile=str(profile), env_file=env_file, overrides={"timeframe": "1m", "symbols": None})
    assert s.timeframe == "1m"                     # command line
    assert s.risk.max_open_orders == 9             # environment over env file and profile
    assert s.exchange == "bybit"                   # env file over profile
    assert s.quote == "USDC"                       # profile over default
    assert s.risk.max_order_notional == 100.0      # profile, nested
    assert s.risk.daily_loss_limit_pct == 2.0      # built-in default
    assert s.symbols == ["BTC/USDT"]               # None overrides are ignored


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_shipped_profiles_load_and_document_every_value_with_a_unit(name):
    s = load_settings(profile=name)
    assert s.profile == name
    text = (REPO / "profiles" / f"{name}.toml").read_text()
    for line in text.splitlines():
        if re.match(r"^\s*[a-z_]+\s*=", line):
            assert "#" in line, f"{name}.toml: no unit comment on {line!r}"


def test_default_profile_is_conservative_and_settings_are_frozen():
    s = load_settings()
    assert s.profile == "conservative"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        s.timeframe = "1m"


@pytest.mark.parametrize("kind, expected", [
    ("unknown profile", "unknown profile 'nope'"),
    ("malformed toml", "is not valid TOML"),
    ("missing env file", "does not exist"),
    ("bad value", "setting 'risk.max_open_orders' is invalid"),
    ("unknown key", "unknown setting 'risk.max_ordr'"),
    ("unknown timeframe", "unknown timeframe '7x'"),
    ("bad symbol", "must look like BASE/QUOTE"),
])
def test_bad_settings_are_one_config_error(tmp_path, kind, expected):
    bad = tmp_path / "bad.toml"
    bad.write_text("timeframe = '1h\n")
    env = tmp_path / "e.env"
    env.write_text("SIGMAX_RISK__MAX_OPEN_ORDERS=many\n" if kind == "bad value" else "SIGMAX_RISK__MAX_ORDR=1\n")
    calls = {
        "unknown profile": lambda: load_settings(profile="nope"),
        "malformed toml": lambda: load_settings(profile=str(bad)),
        "missing env file": lambda: load_settings(env_file=tmp_path / "absent.env"),
        "bad value": lambda: load_settings(env_file=env),
        "unknown key": lambda: load_settings(env_file=env),
        "unknown timeframe": lambda: load_settings(overrides={"timeframe": "7x"}),
        "bad symbol": lambda: load_settings(overrides={"symbols": ["BTCUSDT"]}),
    }
    with pytest.raises(ConfigError) as info:
        calls[kind]()
    assert expected in info.value.sentence()


def test_env_testnet_example_lists_every_setting_and_loads():
    text = (REPO / ".env.testnet.example").read_text()
    keys = set(re.findall(r"SIGMAX_[A-Z_]+", text))
    run_sections = {"strategy", "risk", "paper", "live"}  # what `sigmax run` reads; research, health... are not
    for name, field in Settings.model_fields.items():
        sub = field.annotation
        if hasattr(sub, "model_fields"):
            if name not in run_sections:
                continue
            for inner in sub.model_fields:
                if (name, inner) == ("strategy", "tables"):  # user strategies' tables: one variable per parameter
                    assert "SIGMAX_STRATEGY__<NAME>__<PARAM>" in text
                    continue
                assert f"SIGMAX_{name.upper()}__{inner.upper()}" in keys, inner
        else:
            assert f"SIGMAX_{name.upper()}" in keys, name
    example = load_settings(env_file=REPO / ".env.testnet.example")
    assert example.env == "testnet" and example.api_key is None  # blank values mean unset


SECRETS = {
    "SIGMAX_API_KEY": "key-AKIAEXAMPLE123",
    "SIGMAX_API_SECRET": "sec-very-secret-456",
    "SIGMAX_ALERT_WEBHOOK_URL": "https://hooks.example/T000/B000/XXXX",
    "SIGMAX_DATABASE_URL": "postgresql://sigmax:pg-pass-789@db.example:5432/sigmax",
    "SIGMAX_REDIS_URL": "redis://:redis-pass-000@cache.example:6379/0",
}


def test_redaction_in_settings_dict(monkeypatch):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    shown = json.dumps(redacted_dict(s))
    for secret in ("key-AKIAEXAMPLE123", "sec-very-secret-456", "XXXX", "pg-pass-789", "redis-pass-000"):
        assert secret not in shown
    assert "postgresql://sigmax:***@db.example:5432/sigmax" in shown
    assert set(secret_values(s)) >= {"key-AKIAEXAMPLE123", "sec-very-secret-456", "pg-pass-789", "redis-pass-000"}
    assert "sec-very-secret-456" not in repr(s)


def test_redaction_in_config_command_logs_and_errors(cli, monkeypatch, capsys):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    for args in (("config",), ("config", "--json")):
        result = cli(*args)
        assert result.exit_code == 0
        for secret in ("AKIAEXAMPLE123", "very-secret", "pg-pass-789", "redis-pass-000", "B000/XXXX"):
            assert secret not in result.output
    # a log line carrying a secret is masked by the handler's filter
    from sigmax_cli.logs import get_logger, setup_logging

    setup_logging(1)
    get_logger("sigmax_cli.test").warning("connecting with %s", "sec-very-secret-456")
    err = capsys.readouterr().err
    assert "connecting with ***" in err and "very-secret" not in err
    logging.getLogger("sigmax").handlers.clear()


def test_env_layers_nest_ignore_blanks_and_reject_typos(tmp_path, monkeypatch):
    monkeypatch.setenv("sigmax_health__disk_free_pct__warning", "30")   # names are case-insensitive
    monkeypatch.setenv("SIGMAX_API_KEY", "")                            # blank means unset
    monkeypatch.setenv("SIGMAX_SOMETHING_ELSE", "x")                    # another tool's variable: ignored
    env_file = tmp_path / "e.env"
    env_file.write_text("SIGMAX_PROFILE=balanced\nOTHER_TOOL=1\nSIGMAX_RISK__MAX_OPEN_ORDERS=3\n")
    s = load_settings(env_file=env_file)
    assert s.profile == "balanced"                                   # named by the env file
    assert s.health.disk_free_pct.warning == 30 and s.health.disk_free_pct.critical == 10  # half a pair
    assert s.api_key is None and s.risk.max_open_orders == 3

    env_file.write_text("SIGMAX_REDIS_URLL=redis://127.0.0.1:6379/0\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'redis_urll' \(SIGMAX_REDIS_URLL in env file"):
        load_settings(env_file=env_file)
    monkeypatch.setenv("SIGMAX_RISK", "5")
    monkeypatch.setenv("SIGMAX_RISK__MAX_OPEN_ORDERS", "5")
    with pytest.raises(ConfigError, match="both set"):
        load_settings()
    monkeypatch.delenv("SIGMAX_RISK__MAX_OPEN_ORDERS")
    with pytest.raises(ConfigError, match="setting 'risk' is invalid"):
        load_settings()
