"""What a backup holds: one small class per member kind, behind one interface.

=========  ==============================================  =====================================
kind       source                                          restored as
=========  ==============================================  =====================================
ledger     SQLite via sqlite3's online backup API          file swapped atomically (os.replace)
           PostgreSQL via ``pg_dump -Fc`` (:mod:`.postgres`) ``pg_restore --clean --if-exists
                                                           --single-transaction``
redis      keys under ``redis_prefix``: DUMP + expiry      RESTORE … REPLACE with their expiry
           (:mod:`.redis_keys`)
models     files of ``<home>/models``                      each file written atomically
config     ``<home>/profiles/*.toml``, the active profile,  profiles of ``<home>/profiles``; the
           the non-secret settings                         rest is kept for reference only
=========  ==============================================  =====================================

Secrets never enter an archive: settings are stored without any secret field (see
:func:`public_settings`), files named like env files (``.env*``, ``*.env``) are skipped,
and a profile that holds a secret stops the backup.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tomllib
import typing
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from sigmax_cli.backup.archive import ArchiveWriter, fsync_dir
from sigmax_cli.errors import ChecksumMismatch, ConfigError

KINDS = ("ledger", "redis", "models", "config")

Files = list[tuple[dict[str, Any], Path]]
"""Extracted members of one kind: ``(manifest entry, path of the decompressed content)``."""


@dataclass(frozen=True)
class Skipped:
    """A member kind that had nothing to back up, and why (not an error)."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Change:
    """One item a restore would change. ``action``: add, replace, delete, same, keep, expired, reference."""

    item: str
    action: str
    before: Any = None
    after: Any = None


@dataclass
class MemberPlan:
    """What restoring one member kind would do to ``target`` (a path or a redacted URL)."""

    kind: str
    target: str
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        """Number of items per action."""
        out: dict[str, int] = {}
        for change in self.changes:
            out[change.action] = out.get(change.action, 0) + 1
        return out

    def to_dict(self, limit: int = 1000) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "summary": self.summary(),
                "changes": [asdict(c) for c in self.changes[:limit]],
                "changes_truncated": max(0, len(self.changes) - limit), "notes": self.notes}


class Member(ABC):
    """One kind of archive member.

    Args:
        settings: the invocation's :class:`~sigmax_cli.settings.Settings`.
    """

    kind: ClassVar[str]
    backend: ClassVar[str | None] = None

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @abstractmethod
    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        """Add this member's files to ``writer``; :class:`Skipped` when there is nothing to save."""

    @abstractmethod
    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        """Check extracted content beyond its checksum (``integrity_check``, ``pg_restore --list``,
        key counts); ``deep`` also restores into a scratch target. Returns details for the report.

        Raises:
            ChecksumMismatch: the content disagrees with the manifest.
            IncompatibleArchive: this sigmax or its tools cannot read it.
        """

    @abstractmethod
    def plan(self, files: Files) -> MemberPlan:
        """Compare the archived content with the current state (reads only)."""

    @abstractmethod
    def apply(self, files: Files, plan: MemberPlan) -> dict[str, Any]:
        """Restore the archived content over the current state. Returns counts of what was done."""


def member_for(kind: str, settings: Any, backend: str | None = None) -> Member:
    """The member class for ``kind``; for ``ledger``, by ``backend`` or else the settings' ledger URL.

    Raises:
        ConfigError: unknown kind or backend.
    """
    if kind == "ledger":
        from sigmax_cli.ledger.connection import sqlite_path

        backend = backend or ("sqlite" if sqlite_path(settings.ledger_url) else "postgresql")
        if backend == "sqlite":
            from sigmax_cli.backup.sqlite_ledger import SqliteLedger

            return SqliteLedger(settings)
        if backend == "postgresql":
            from sigmax_cli.backup.postgres import PostgresLedger

            return PostgresLedger(settings)
        raise ChecksumMismatch(f"the archive names an unknown ledger backend {backend!r}",
                               "restore it with the sigmax version that wrote it")
    if kind == "redis":
        from sigmax_cli.backup.redis_keys import RedisKeys

        return RedisKeys(settings)
    if kind == "models":
        return ModelFiles(settings)
    if kind == "config":
        return ConfigFiles(settings)
    raise ConfigError(f"unknown backup member {kind!r}", f"use any of {', '.join(KINDS)}")


def parse_kinds(text: str | None, option: str) -> list[str] | None:
    """``"ledger,redis"`` -> ``["ledger", "redis"]`` (None when ``text`` is None).

    Raises:
        ConfigError: an unknown or empty list.
    """
    if text is None:
        return None
    kinds = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not kinds:
        raise ConfigError(f"{option} is empty", f"give one or more of {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"unknown member {kind!r} in {option}", f"use any of {', '.join(KINDS)}")
    return list(dict.fromkeys(kinds))


# -- helpers ------------------------------------------------------------------------------


def secretish(name: str) -> bool:
    """True for file names that look like env files (``.env``, ``.env.testnet``, ``live.env``)."""
    lower = name.lower()
    return lower.startswith(".env") or lower.endswith(".env")


def safe_relative(path: str) -> PurePosixPath:
    """A relative POSIX path with no ``..``; anything else means a crafted or damaged manifest.

    Raises:
        ChecksumMismatch: absolute path, ``..``, or empty.
    """
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts or "\\" in path or rel.parts[0] in ("", "."):
        raise ChecksumMismatch(f"the archive names an unsafe path {path!r}", "do not restore from it")
    return rel


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def install_file(src: Path, dest: Path, mtime_ms: int | None = None) -> None:
    """Copy ``src`` over ``dest`` atomically: temporary file beside ``dest``, fsync, rename, fsync dir."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.restore-{os.getpid()}"
    try:
        shutil.copyfile(src, tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        if mtime_ms is not None:
            os.utime(tmp, ns=(mtime_ms * 1_000_000, mtime_ms * 1_000_000))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(dest.parent)


def public_settings(settings: Any) -> dict[str, Any]:
    """The settings without any secret: ``redacted_dict`` minus every ``SecretStr`` field
    (top level and in sections), plus ``secrets_omitted`` naming the fields left out.

    Raises:
        ConfigError: a secret value still shows up in the result (never written).
    """
    from pydantic import BaseModel

    from sigmax_cli.settings import redacted_dict, secret_values

    data = redacted_dict(settings)
    omitted: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if is_secret(type(settings), name):
            data.pop(name, None)
            omitted.append(name)
        elif isinstance(value, BaseModel) and isinstance(data.get(name), dict):
            for sub in type(value).model_fields:
                if is_secret(type(value), sub):
                    data[name].pop(sub, None)
                    omitted.append(f"{name}.{sub}")
    data["secrets_omitted"] = omitted
    text = json.dumps(data, default=str)
    if any(secret in text for secret in secret_values(settings)):
        raise ConfigError("a secret would end up in the backup's settings", "report this as a bug")
    return json.loads(text)


def is_secret(model: Any, name: str) -> bool:
    """True when field ``name`` of the pydantic ``model`` is a ``SecretStr`` (optional or not)."""
    from pydantic import SecretStr

    annotation = model.model_fields[name].annotation
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def secret_field_names(settings: Any) -> set[str]:
    """Names of every secret setting, top level and in sections (``api_key``, ``cryptopanic_key``...)."""
    from pydantic import BaseModel

    names: set[str] = set()
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if is_secret(type(settings), name):
            names.add(name)
        elif isinstance(value, BaseModel):
            names.update(sub for sub in type(value).model_fields if is_secret(type(value), sub))
    return names


def _guard_profile(settings: Any, path: Path, raw: bytes) -> None:
    """Refuse a profile file that holds a secret (a secret setting or a secret's value)."""
    from sigmax_cli.settings import secret_values

    text = raw.decode("utf-8", "replace")
    secret_fields = secret_field_names(settings)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        doc = {}
    found = [k for k in doc if k in secret_fields and doc[k]]
    found += [f"{s}.{k}" for s, sub in doc.items() if isinstance(sub, dict) for k in sub
              if k in secret_fields and sub[k]]
    if found or any(secret in text for secret in secret_values(settings)):
        what = found[0] if found else "a secret value"
        raise ConfigError(f"profile {path} holds {what}, and backups never hold secrets",
                          "move secrets to the env file (chmod 600) and keep profiles secret-free")


# -- files: models and config --------------------------------------------------------------


class _TreeMember(Member):
    """Files restored one by one under ``home``; files not in the archive are kept."""

    def _restorable(self, entry: dict[str, Any]) -> bool:
        return True

    def _target(self, entry: dict[str, Any]) -> Path:
        return self.settings.home / safe_relative(entry["path"])

    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        for entry, path in files:
            if self._restorable(entry):
                safe_relative(entry.get("path", ""))
            if sha256_file(path) != entry.get("raw_sha256"):
                raise ChecksumMismatch(f"archived file {entry.get('path')} does not match its sha256",
                                       "use another backup")
        return {"files": len(files), "bytes": sum(e.get("raw_size", 0) for e, _ in files)}

    def plan(self, files: Files) -> MemberPlan:
        plan = MemberPlan(self.kind, str(self.settings.home))
        for entry, _path in files:
            if not self._restorable(entry):
                plan.changes.append(Change(entry["path"], "reference"))
                continue
            target = self._target(entry)
            if not target.exists():
                action = "add"
            else:
                action = "same" if sha256_file(target) == entry["raw_sha256"] else "replace"
            plan.changes.append(Change(entry["path"], action, None, entry.get("raw_size")))
        return plan

    def apply(self, files: Files, plan: MemberPlan) -> dict[str, Any]:
        written = 0
        for entry, path in files:
            if self._restorable(entry):
                install_file(path, self._target(entry), entry.get("mtime_ms"))
                written += 1
        return {"files": written}

    def _add_tree(self, writer: ArchiveWriter, root: Path, prefix: str, role: str | None = None,
                  pattern: str = "**/*") -> int:
        n = 0
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or path.is_symlink() or secretish(path.name):
                continue
            rel = path.relative_to(self.settings.home).as_posix()
            if role == "profile":
                _guard_profile(self.settings, path, path.read_bytes())
            n += 1
            entry = {"kind": self.kind, "path": rel, "mtime_ms": int(path.stat().st_mtime * 1000)}
            if role:
                entry["role"] = role
            writer.add(f"{prefix}{n:04d}.zst", path, entry)
        return n


class ModelFiles(_TreeMember):
    """Trained models: every regular file under ``<home>/models`` (env-like names skipped)."""

    kind = "models"

    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        root = self.settings.home / "models"
        if not root.is_dir():
            return Skipped(self.kind, f"there is no models directory at {root}")
        if not self._add_tree(writer, root, "models/"):
            return Skipped(self.kind, f"{root} holds no files")
        return None


class ConfigFiles(_TreeMember):
    """Profiles of ``<home>/profiles`` (restorable), the active profile and the non-secret
    settings (kept for reference: settings come from the environment, not from a file)."""

    kind = "config"

    def _restorable(self, entry: dict[str, Any]) -> bool:
        return entry.get("role") == "profile"

    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        from sigmax_cli.settings import profile_path

        settings_file = writer.work / "settings.json"
        settings_file.write_text(json.dumps(public_settings(self.settings), indent=2, sort_keys=True) + "\n")
        writer.add("config/settings.json.zst", settings_file,
                   {"kind": self.kind, "role": "settings", "path": "settings.json"})
        profiles = self.settings.home / "profiles"
        if profiles.is_dir():
            self._add_tree(writer, profiles, "config/profile-", "profile", "*.toml")
        try:
            active = profile_path(self.settings.profile).resolve()
        except ConfigError:
            return None
        if profiles.resolve() not in active.parents:
            raw = active.read_bytes()
            _guard_profile(self.settings, active, raw)
            copy = writer.work / "active-profile.toml"
            copy.write_bytes(raw)
            writer.add("config/active-profile.toml.zst", copy,
                       {"kind": self.kind, "role": "active-profile", "path": str(active)})
        return None

    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        detail = super().check(files, deep=deep)
        for entry, path in files:
            try:
                if entry.get("role") == "settings":
                    json.loads(path.read_bytes())
                else:
                    tomllib.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ChecksumMismatch(f"archived {entry.get('path')} does not parse ({exc})",
                                       "use another backup") from None
        return detail
