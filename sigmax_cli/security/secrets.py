"""Secrets scanner: detect-secrets' plugins plus exchange API key patterns.

Every text file under the scanned path is read once by detect-secrets (its default plugin
set and filters, ``detect_secrets.settings.default_settings``) and once by the exchange
patterns below. Env files (``.env``, ``.env.*`` but not ``*.example`` / ``*.sample`` /
``*.template``) are the place keys are meant to live: the config scanner audits them
(permissions, git tracking, live keys in testnet files), this one skips them.

Severity:

- exchange API secrets (an assignment whose name says secret / private / password /
  passphrase): critical; exchange API keys: high. Shapes recognised: Binance (64 letters
  and digits, mixed case, for key and secret), OKX (key a UUID, secret 32 upper-case hex),
  Bybit (key 18, secret 36 letters and digits), Kraken (private key, 88 base64 chars);
- detect-secrets' private keys and AWS keys: critical; its other format-specific detectors
  (GitHub, Slack, Stripe, JWT, Telegram, ...): high; its heuristics (``Secret Keyword``,
  high-entropy strings, ``Basic Auth Credentials``): medium (they are often test values).

A value is never shown in clear: messages carry :func:`~sigmax_cli.security.base.redact`.
Where an exchange pattern and a detect-secrets plugin hit the same line, the exchange
finding (more specific) is kept.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sigmax_cli.security.base import (
    Finding,
    ScanFailure,
    Scanner,
    ScanResult,
    Severity,
    display_path,
    fingerprint,
    is_env_file,
    iter_files,
    redact,
)

TOOL = "secrets"
MAX_FILE_BYTES = 2_000_000
"""Larger files (data dumps, archives) are not read; named in the notes."""
BINARY_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".gif", ".ico", ".pdf", ".zip", ".gz", ".tgz", ".bz2", ".xz", ".whl",
    ".feather", ".parquet", ".db", ".sqlite", ".pyc", ".so", ".pt", ".pth", ".npz", ".npy", ".pkl",
)

_ASSIGNMENT = re.compile(
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)["']?\s*(?:=|:=|:|=>)\s*(?:[rbuRBU]?["'])?"""
    r"""(?P<value>[A-Za-z0-9+/=_\-]{16,128})"""
)
_SECRET_WORDS = ("secret", "private", "password", "passphrase", "passwd")
_KEY_WORDS = ("key", "token", "apikey")
_PLACEHOLDER_WORDS = ("example", "xxxx", "your", "placeholder", "changeme", "dummy", "redacted")


@dataclass(frozen=True)
class KeyShape:
    """One exchange's key or secret format."""

    rule_id: str
    label: str
    pattern: re.Pattern[str]
    secret: bool  # True: the name must say secret/private/...; False: key/token

    def matches(self, value: str) -> bool:
        return bool(self.pattern.fullmatch(value))


def _mixed(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)


EXCHANGE_SHAPES = (
    KeyShape("binance-api-secret", "Binance-style API secret", re.compile(r"[A-Za-z0-9]{64}"), True),
    KeyShape("binance-api-key", "Binance-style API key", re.compile(r"[A-Za-z0-9]{64}"), False),
    KeyShape("okx-api-secret", "OKX-style API secret", re.compile(r"[0-9A-F]{32}"), True),
    KeyShape("okx-api-key", "OKX-style API key",
             re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), False),
    KeyShape("bybit-api-secret", "Bybit-style API secret", re.compile(r"[A-Za-z0-9]{36}"), True),
    KeyShape("bybit-api-key", "Bybit-style API key", re.compile(r"[A-Za-z0-9]{18}"), False),
    KeyShape("kraken-private-key", "Kraken-style private key", re.compile(r"[A-Za-z0-9+/]{86}=="), True),
)
"""Exchange key formats as the exchanges issue them (Binance HMAC keys, OKX v5, Bybit v5,
Kraken REST); the alphanumeric shapes must also mix upper case, lower case and digits."""

CRITICAL_TYPES = frozenset({"Private Key", "AWS Access Key"})
HEURISTIC_TYPES = frozenset({
    "Secret Keyword", "Base64 High Entropy String", "Hex High Entropy String", "Basic Auth Credentials",
})


def exchange_secrets(text: str) -> list[tuple[int, KeyShape, str, str]]:
    """Exchange keys and secrets assigned in ``text``.

    Returns:
        ``(line, shape, name, value)`` per hit, line 1-based. Values that look like
        placeholders (``your``, ``example``, ``xxxx``..., fewer than 6 distinct characters)
        are left out.
    """
    hits: list[tuple[int, KeyShape, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for match in _ASSIGNMENT.finditer(line):
            name, value = match.group("name"), match.group("value")
            lowered = name.lower()
            is_secret = any(w in lowered for w in _SECRET_WORDS)
            is_key = any(w in lowered for w in _KEY_WORDS)
            if not (is_secret or is_key) or _placeholder(value):
                continue
            for shape in EXCHANGE_SHAPES:
                if shape.secret != is_secret or not shape.matches(value):
                    continue
                if shape.pattern.pattern.startswith("[A-Za-z0-9]") and not _mixed(value):
                    continue
                hits.append((lineno, shape, name, value))
                break
    return hits


def _placeholder(value: str) -> bool:
    lowered = value.lower()
    return len(set(value)) < 6 or any(w in lowered for w in _PLACEHOLDER_WORDS)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


class SecretsScanner(Scanner):
    """Hard-coded secrets through detect-secrets and the exchange key shapes above."""

    name = TOOL

    def scan(self, path: Path) -> ScanResult | ScanFailure:
        """Read every text file under ``path`` (env files excepted, see the module docstring)."""
        started = time.perf_counter()
        try:
            import detect_secrets  # noqa: F401
        except ImportError:
            return ScanFailure(TOOL, "detect-secrets is not installed",
                               "pip install detect-secrets (sigmax depends on it)")
        findings: list[Finding] = []
        too_big: list[str] = []
        texts: dict[str, str] = {}  # absolute path -> shown path
        taken: set[tuple[str, int]] = set()
        for file in iter_files(path):
            if is_env_file(file) or file.name.endswith(BINARY_SUFFIXES):
                continue
            shown = display_path(file, path)
            size = file.stat().st_size
            if size > MAX_FILE_BYTES:
                too_big.append(shown)
                continue
            try:
                raw = file.read_bytes()
            except OSError as exc:
                findings.append(self._unreadable(shown, exc))
                continue
            if b"\0" in raw[:8192]:
                continue
            texts[str(file.resolve())] = shown
            for lineno, shape, name, value in exchange_secrets(raw.decode("utf-8", errors="replace")):
                taken.add((shown, lineno))
                findings.append(Finding(
                    rule_id=shape.rule_id, tool=TOOL,
                    severity=Severity.critical if shape.secret else Severity.high,
                    message=f"{shape.label} hard-coded in {name}: {redact(value)}",
                    fix="revoke the key at the exchange, remove it from the file and its git history, "
                        "and load it from a chmod-600 env file (SIGMAX_API_KEY / SIGMAX_API_SECRET)",
                    path=shown, line=lineno,
                    fingerprint=fingerprint(TOOL, shape.rule_id, shown, _hash(value)),
                    title=shape.label,
                ))
        for filename, lineno, kind, value, secret_hash in detect_secrets_hits(list(texts)):
            shown = texts.get(str(Path(filename).resolve()), filename)
            if (shown, lineno) not in taken:
                findings.append(self._detect_secrets_finding(kind, value, secret_hash, lineno, shown))
        findings.sort(key=lambda f: (f.path or "", f.line or 0, f.rule_id))
        notes = [f"read {len(texts)} text files"]
        if too_big:
            notes.append(f"{len(too_big)} files over {MAX_FILE_BYTES // 1_000_000} MB not read: "
                         f"{', '.join(too_big[:5])}")
        return ScanResult(TOOL, tuple(findings), tuple(notes), time.perf_counter() - started)

    @staticmethod
    def _detect_secrets_finding(kind: str, value: str | None, secret_hash: str, lineno: int, shown: str) -> Finding:
        if kind in CRITICAL_TYPES:
            severity = Severity.critical
        elif kind in HEURISTIC_TYPES:
            severity = Severity.medium
        else:
            severity = Severity.high
        rule_id = _slug(kind)
        return Finding(
            rule_id=rule_id, tool=TOOL, severity=severity,
            message=f"{kind} (detect-secrets): {redact(value) if value else '***'}",
            fix="move the value to the environment or a chmod-600 env file; if it is real, revoke it",
            path=shown, line=lineno,
            fingerprint=fingerprint(TOOL, rule_id, shown, secret_hash),
            title=kind,
        )

    @staticmethod
    def _unreadable(shown: str, exc: OSError) -> Finding:
        return Finding(
            rule_id="unreadable-file", tool=TOOL, severity=Severity.medium,
            message=f"file could not be read for secrets ({exc.strerror or exc})",
            fix="make it readable by the scanning user or move it out of the scanned tree",
            path=shown, line=None, fingerprint=fingerprint(TOOL, "unreadable-file", shown, ""),
            title="file not scanned",
        )


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def detect_secrets_hits(files: list[str]) -> list[tuple[str, int, str, str | None, str]]:
    """detect-secrets over ``files`` with its default plugins and filters, in this process
    (about 10 ms per KB of text: its per-line plugin dispatch dominates a project scan).

    Returns:
        ``(filename, line, type, secret value or None, secret hash)`` per hit.
    """
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    hits: list[tuple[str, int, str, str | None, str]] = []
    with default_settings():
        for name in files:
            hits.extend((name, s.line_number, s.type, s.secret_value, s.secret_hash) for s in scan_file(name))
    return hits
