"""Configuration scanner: env files, profiles, the state directory and the API key's rights.

Checks, with their rule ids and severities:

====================================  =====================================================
``env-file-permissions``              an env file group/other can read or write (mode & 077):
                                      high when it holds a secret value, else low
``env-file-tracked``                  an env file in the git index: critical with a secret
                                      value (it is in the history), else medium
``live-key-in-testnet-env``           a key or secret of a testnet env file is also in a live
                                      env file (a live key used for testing): critical
``testnet-env-file-live``             a testnet env file that sets ``SIGMAX_ENV=live``: high
``live-without-max-capital``          a live env file (or this invocation's settings) whose
                                      settings have no ``risk.max_capital``: high
``env-file-invalid``                  an env file the settings loader rejects: medium
``secret-in-profile``                 a webhook URL, token, key or password in a profile
                                      TOML (profiles are shared and committed): high
``home-permissions``                  ``SIGMAX_HOME`` others can write (high) or read (medium)
``withdrawal-permission``             the configured API key may withdraw funds: critical
``key-not-ip-restricted``             the configured API key has no IP allow-list: medium
====================================  =====================================================

An env file is "testnet" or "live" by its name (``.env.testnet``, ``.env.live``), else by
its ``SIGMAX_ENV``; any file that sets ``SIGMAX_ENV=live`` gets the capital-cap check.
Secret values are settings named like ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``, ``*TOKEN*``,
``*PASSPHRASE*``, ``*WEBHOOK*`` (and URLs carrying a password). Git tracking is
read from the repository index with dulwich (no ``git`` binary needed).

The key's rights are read from the exchange (Binance ``GET /sapi/v1/account/apiRestrictions``)
only when a key is configured, the exchange is Binance and it answers; otherwise a note
says why they were not checked. Nothing here prints a secret: values are
:func:`~sigmax_cli.security.base.redact`-ed.
"""

from __future__ import annotations

import re
import stat
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmax_cli.security.base import (
    Finding,
    Scanner,
    ScanResult,
    Severity,
    display_path,
    fingerprint,
    is_env_file,
    iter_files,
    redact,
)

if TYPE_CHECKING:
    from sigmax_cli.settings import Settings

TOOL = "config"
_SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|PASSPHRASE|WEBHOOK", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.IGNORECASE)
_WEBHOOK_URL = re.compile(
    r"https?://(?:hooks\.slack\.com/|discord(?:app)?\.com/api/webhooks/|api\.telegram\.org/bot"
    r"|[^\s\"']*webhook|[^\s\"']*[?&](?:token|key)=)", re.IGNORECASE)
EXCHANGE_TIMEOUT_MS = 5_000


def _is_secret(name: str, value: str | None) -> bool:
    if not value:
        return False
    return bool(_SECRET_NAME.search(name) or _URL_PASSWORD.match(value))


def _declared(values: dict[str, str | None]) -> str:
    return (values.get("SIGMAX_ENV") or "").strip().lower()


def _env_kind(path: Path, values: dict[str, str | None]) -> str | None:
    """``testnet`` / ``live`` by the file's name, else by its ``SIGMAX_ENV``; else ``None``."""
    name = path.name.lower()
    for kind in ("testnet", "live"):
        if kind in name:
            return kind
    declared = _declared(values)
    return declared if declared in ("testnet", "live") else None


class ConfigScanner(Scanner):
    """Configuration audit (see the module docstring).

    Args:
        settings: this invocation's settings: ``home``, the live/``max_capital`` check and
            the API key whose rights are read from the exchange.
    """

    name = TOOL

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def scan(self, path: Path) -> ScanResult:
        """Run every check; a check that cannot run adds a note, never a silent pass."""
        started = time.perf_counter()
        findings: list[Finding] = []
        notes: list[str] = []
        env_files = [p for p in iter_files(path) if is_env_file(p)]
        parsed = {p: self._read_env(p) for p in env_files}
        tracked = self._tracked(env_files, notes)
        for file, values in parsed.items():
            findings.extend(self._env_file(file, values, path, tracked))
        findings.extend(self._live_keys_in_testnet(parsed, path))
        profiles = [p for p in iter_files(path, (".toml",)) if p.parent.name == "profiles"]
        for profile in profiles:
            findings.extend(self._profile(profile, path))
        findings.extend(self._settings_checks(notes))
        findings.extend(self._home(notes))
        findings.extend(self._key_rights(notes))
        notes.insert(0, f"checked {len(env_files)} env files and {len(profiles)} profiles")
        return ScanResult(TOOL, tuple(findings), tuple(notes), time.perf_counter() - started)

    # -- env files ------------------------------------------------------------------------------
    @staticmethod
    def _read_env(path: Path) -> dict[str, str | None]:
        from dotenv import dotenv_values

        try:
            return {k.upper(): v for k, v in dotenv_values(path).items()}
        except (OSError, UnicodeDecodeError):
            return {}

    @staticmethod
    def _tracked(files: list[Path], notes: list[str]) -> set[Path]:
        if not files:
            return set()
        try:
            from dulwich.errors import NotGitRepository
            from dulwich.repo import Repo
        except ImportError:
            notes.append("dulwich is not installed: git tracking of env files not checked")
            return set()
        tracked: set[Path] = set()
        repos: dict[str, Any] = {}
        for file in files:
            try:
                repo = Repo.discover(str(file.parent))
            except NotGitRepository:
                continue
            top = Path(repo.path).resolve()
            if str(top) not in repos:
                repos[str(top)] = repo.open_index()
            repo.close()
            rel = file.resolve().relative_to(top).as_posix().encode()
            if rel in repos[str(top)]:
                tracked.add(file)
        if not repos:
            notes.append("not inside a git work tree: git tracking of env files not checked")
        return tracked

    def _env_file(self, file: Path, values: dict[str, str | None], root: Path, tracked: set[Path]) -> list[Finding]:
        shown = display_path(file, root)
        secrets = sorted(k for k, v in values.items() if _is_secret(k, v))
        held = f"holds {', '.join(secrets)}" if secrets else "holds no secret value"
        out: list[Finding] = []
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            out.append(self._finding(
                "env-file-permissions", Severity.high if secrets else Severity.low,
                f"env file is readable by other users (mode {mode:04o}) and {held}",
                f"chmod 600 {shown}", shown, "", "env file readable by others"))
        if file in tracked:
            out.append(self._finding(
                "env-file-tracked", Severity.critical if secrets else Severity.medium,
                f"env file is tracked by git and {held}",
                "git rm --cached it, add it to .gitignore, and revoke any key it ever held"
                if secrets else "git rm --cached it and add it to .gitignore (keep a *.example instead)",
                shown, "", "env file tracked by git"))
        kind = _env_kind(file, values)
        if kind == "testnet" and _declared(values) == "live":
            out.append(self._finding(
                "testnet-env-file-live", Severity.high,
                "testnet env file sets SIGMAX_ENV=live, so its keys trade real money",
                "set SIGMAX_ENV=testnet here and keep live settings in .env.live", shown, "SIGMAX_ENV",
                "testnet env file runs live", line=_line_of(file, "SIGMAX_ENV")))
        if kind == "live" or _declared(values) == "live":
            out.extend(self._live_cap(file, values, root, shown))
        return out

    def _live_cap(self, file: Path, values: dict[str, str | None], root: Path, shown: str) -> list[Finding]:
        from sigmax_cli.errors import SigmaxError
        from sigmax_cli.settings import load_settings

        profile = values.get("SIGMAX_PROFILE") or None
        if profile:
            local = (root if root.is_dir() else root.parent) / "profiles" / f"{profile}.toml"
            profile = str(local) if local.is_file() else profile
        try:
            settings = load_settings(profile=profile, env_file=file)
        except SigmaxError as exc:
            return [self._finding("env-file-invalid", Severity.medium,
                                  f"live env file does not load: {exc.cause}", exc.fix or "fix the file",
                                  shown, exc.cause, "env file invalid")]
        if settings.risk.max_capital is None:
            return [self._finding(
                "live-without-max-capital", Severity.high,
                f"live env file sets no capital cap (risk.max_capital) and neither does profile {settings.profile}",
                f"add SIGMAX_RISK__MAX_CAPITAL=<quote amount> to {shown}", shown, "",
                "live trading without a capital cap")]
        return []

    def _live_keys_in_testnet(self, parsed: dict[Path, dict[str, str | None]], root: Path) -> list[Finding]:
        live_values = {v: (p, k) for p, values in parsed.items() if _env_kind(p, values) == "live"
                       for k, v in values.items() if _is_secret(k, v)}
        out: list[Finding] = []
        for file, values in parsed.items():
            if _env_kind(file, values) != "testnet":
                continue
            shown = display_path(file, root)
            for key, value in values.items():
                if value and value in live_values and _is_secret(key, value):
                    live_file, live_key = live_values[value]
                    out.append(self._finding(
                        "live-key-in-testnet-env", Severity.critical,
                        f"{key} ({redact(value)}) is the same value as {live_key} of live env file "
                        f"{display_path(live_file, root)}",
                        "put a key created on the exchange's testnet here and rotate the live key, "
                        "which has been kept outside its own env file",
                        shown, key, "live key in a testnet env file", line=_line_of(file, key)))
        return out

    # -- profiles ---------------------------------------------------------------------------------
    def _profile(self, file: Path, root: Path) -> list[Finding]:
        shown = display_path(file, root)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            return [self._finding("profile-invalid", Severity.low, f"profile could not be read ({exc})",
                                  "fix the TOML", shown, "", "profile unreadable")]
        out = []
        for dotted, value in _leaves(data):
            leaf = dotted.rsplit(".", 1)[-1]
            if not isinstance(value, str) or not value:
                continue
            if _is_secret(leaf, value) or _WEBHOOK_URL.match(value):
                out.append(self._finding(
                    "secret-in-profile", Severity.high,
                    f"profile setting {dotted} holds a webhook URL, token or key ({redact(value)})",
                    "move it to the chmod-600 env file (e.g. SIGMAX_ALERT_WEBHOOK_URL) and rotate it",
                    shown, dotted, "webhook token or secret in a profile", line=_line_of(file, leaf)))
        return out

    # -- this invocation's settings ---------------------------------------------------------------
    def _settings_checks(self, notes: list[str]) -> list[Finding]:
        s = self.settings
        if s.env == "live" and s.risk.max_capital is None:
            return [self._finding(
                "live-without-max-capital", Severity.high,
                "this invocation's settings select env live with no capital cap (risk.max_capital)",
                "set SIGMAX_RISK__MAX_CAPITAL (quote currency) or risk.max_capital in the profile",
                None, "settings", "live trading without a capital cap")]
        return []

    def _home(self, notes: list[str]) -> list[Finding]:
        home = Path(self.settings.home)
        if not home.is_dir():
            notes.append(f"SIGMAX_HOME {home} does not exist yet: permissions not checked")
            return []
        mode = stat.S_IMODE(home.stat().st_mode)
        if not mode & 0o007:
            return []
        writable = bool(mode & 0o002)
        return [self._finding(
            "home-permissions", Severity.high if writable else Severity.medium,
            f"SIGMAX_HOME {home} is {'writable' if writable else 'readable'} by every user (mode {mode:04o}): "
            "ledger, kill-switch flag and backups",
            f"chmod 700 {home}", home.as_posix(), "", "state directory open to other users")]

    def _key_rights(self, notes: list[str]) -> list[Finding]:
        s = self.settings
        if s.api_key is None or s.api_secret is None:
            notes.append("no API key configured (SIGMAX_API_KEY / SIGMAX_API_SECRET): withdrawal permission "
                         "not checked")
            return []
        if s.exchange.lower() != "binance":
            notes.append(f"withdrawal permission not checked: sigmax reads key rights from binance only, "
                         f"not {s.exchange}")
            return []
        if s.env == "testnet":
            notes.append("testnet key: the testnet has no withdrawals, permission not checked")
            return []
        from sigmax_cli.errors import SigmaxError
        from sigmax_cli.exchange.client import exchange_from_settings
        from sigmax_cli.exchange.errors import call

        try:
            exchange = exchange_from_settings(s, timeout_ms=EXCHANGE_TIMEOUT_MS)
            rights = call(exchange, "sapi_get_account_apirestrictions", attempts=2, base_delay=0.2)
        except SigmaxError as exc:
            notes.append(f"withdrawal permission not checked: {exc.cause}")
            return []
        where = f"{s.exchange} API key {redact(s.api_key.get_secret_value())}"
        out = []
        if rights.get("enableWithdrawals"):
            out.append(self._finding(
                "withdrawal-permission", Severity.critical,
                f"{where} has withdrawal permission: a leaked key can empty the account",
                "edit the key on the exchange: untick 'Enable Withdrawals' (a trading bot never needs it)",
                None, "withdraw", "API key can withdraw"))
        if rights.get("ipRestrict") is False:
            out.append(self._finding(
                "key-not-ip-restricted", Severity.medium,
                f"{where} accepts requests from any IP address",
                "restrict the key to the bot's IP addresses on the exchange", None, "ip", "API key not IP-restricted"))
        notes.append(f"read the rights of the {s.exchange} API key from the exchange")
        return out

    @staticmethod
    def _finding(rule_id: str, severity: Severity, message: str, fix: str, path: str | None, context: str,
                 title: str, line: int | None = None) -> Finding:
        return Finding(rule_id=rule_id, tool=TOOL, severity=severity, message=message, fix=fix, path=path,
                       line=line, fingerprint=fingerprint(TOOL, rule_id, path, context), title=title)


def _leaves(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_leaves(value, dotted + "."))
        elif isinstance(value, list):
            out.extend((f"{dotted}[{i}]", item) for i, item in enumerate(value))
        else:
            out.append((dotted, value))
    return out


def _line_of(file: Path, name: str) -> int | None:
    """1-based line where ``name`` is assigned in ``file`` (env or TOML), if found."""
    pattern = re.compile(rf"^\s*(?:export\s+)?[\"']?{re.escape(name)}[\"']?\s*=", re.IGNORECASE)
    try:
        for lineno, text in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if pattern.match(text):
                return lineno
    except OSError:
        return None
    return None
