"""The backup archive's names and constants (layout: :mod:`sigmax_cli.backup.archive`)."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from datetime import UTC, datetime
from typing import Any, Final

from sigmax_cli.errors import ConfigError

FORMAT = "sigmax-backup"
FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"
PREFIX = "sigmax-backup-"
SUFFIX = ".tar"
BLOCK = 512
RECORD = 20 * BLOCK  # tar's default record size; the end of the archive is padded to it
CHUNK = 1 << 20
MAX_MANIFEST_BYTES = 64 << 20
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TAR_FORMAT: Final = tarfile.GNU_FORMAT
ENCODING = "utf-8"


def iso_utc(ms: int) -> str:
    """UTC ms since epoch as ``2026-01-01T00:00:00.000Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def check_tag(tag: str | None) -> str | None:
    """Validate a backup tag: 1-64 characters of ``A-Z a-z 0-9 . _ -``, not starting with a dot or dash.

    Raises:
        ConfigError: the tag does not fit (it becomes part of the file name).
    """
    if tag is None:
        return None
    if not TAG_RE.match(tag):
        raise ConfigError(f"backup tag {tag!r} is not allowed",
                          "use 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit")
    return tag


def archive_name(created_ms: int, tag: str | None) -> str:
    """File name of an archive made at ``created_ms`` (UTC ms): ``sigmax-backup-<stamp>Z[-TAG].tar``."""
    stamp = datetime.fromtimestamp(created_ms / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"{PREFIX}{stamp}.{created_ms % 1000:03d}Z" + (f"-{tag}" if tag else "") + SUFFIX


def is_archive_name(name: str) -> bool:
    """True for a visible archive file name (temporary ``.…partial`` files are hidden)."""
    return name.startswith(PREFIX) and name.endswith(SUFFIX)


def canonical(document: dict[str, Any]) -> bytes:
    """The one byte form of a manifest: sorted keys, 2-space indent, ASCII, newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False) + "\n").encode()


def seal(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` plus ``manifest_sha256``: the sha256 of its canonical form without that key."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return {**body, "manifest_sha256": hashlib.sha256(canonical(body)).hexdigest()}


def round_up(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK
