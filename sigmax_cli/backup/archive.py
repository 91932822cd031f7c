"""The backup archive format: a plain tar, members compressed one by one, manifest last.

Layout (every archive ``sigmax backup`` writes)::

    sigmax-backup-20260101T000000.000Z[-TAG].tar     a POSIX (GNU) tar, readable by `tar tvf`
    ├── ledger/ledger.sqlite.zst    SQLite ledger (online backup API), zstd
    │   or ledger/ledger.pgdump     PostgreSQL ledger, `pg_dump -Fc` (compressed by pg_dump)
    ├── redis/keys.jsonl.zst        DUMP payloads and expiry of every key under the prefix
    ├── models/0001.zst ...         files of <home>/models (real paths in the manifest)
    ├── config/...                  profiles and the non-secret settings
    └── MANIFEST.json               written last: versions, host, tag, and per member its
                                    sha256, size, row or key counts and source versions

Each member is compressed on its own (zstd with frame checksums, level from
``backup.compression_level``) so that the tar itself stays seekable: ``list`` reads the
headers and the manifest without decompressing anything, and a restore of one member
reads only that member. Member names are short and ASCII (at most 100 bytes), so every
member is exactly one 512-byte header plus its data: no GNU long-name or PAX records.

Integrity covers every byte of the file (:func:`read_index` and :func:`hash_members`):

* each 512-byte header must equal what :meth:`tarfile.TarInfo.tobuf` rebuilds from it
  (the tar checksum alone misses its own terminator bytes);
* each member's stored bytes must match the sha256 and size in the manifest;
* the manifest must be canonical JSON and carry its own sha256 (``manifest_sha256``);
* block padding and the end-of-archive blocks must be zero bytes, and the file must end
  with them, padded to tar's 10240-byte record (so even a one-byte truncation is refused).

An archive is written under a hidden temporary name (``.NAME.partial``), fsynced, then
renamed; the manifest is its last member, so a backup killed half-way leaves either no
visible file or nothing :func:`read_index` accepts (after restic and pgBackRest, which
write their index/manifest last for the same reason).
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from sigmax_cli.backup.archive_format import (  # noqa: F401 - re-exported: the archive API
    BLOCK,
    CHUNK,
    ENCODING,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    PREFIX,
    RECORD,
    SUFFIX,
    TAG_RE,
    TAR_FORMAT,
    archive_name,
    canonical,
    check_tag,
    is_archive_name,
    iso_utc,
    round_up,
    seal,
)
from sigmax_cli.backup.archive_read import (  # noqa: F401 - re-exported: the archive API
    ArchiveIndex,
    StoredMember,
    check_compatible,
    extract,
    hash_members,
    read_index,
)
from sigmax_cli.errors import ConfigError

# -- writing -----------------------------------------------------------------------------


def compress_file(src: Path, dest: Path, level: int) -> tuple[int, str]:
    """zstd-compress ``src`` into ``dest`` (content checksum on, all cores).

    Returns:
        ``(raw_size, raw_sha256)`` of ``src``.
    """
    import zstandard

    digest = hashlib.sha256()
    size = 0
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=-1)
    with src.open("rb") as fin, dest.open("wb") as fout:
        with compressor.stream_writer(fout, closefd=False) as writer:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                writer.write(chunk)
    return size, digest.hexdigest()


@dataclass
class WrittenArchive:
    """An archive that :meth:`ArchiveWriter.commit` renamed into place."""

    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any] = field(repr=False)


class ArchiveWriter:
    """Writes one archive atomically: ``.NAME.partial`` + fsync + rename, manifest last.

    Use as a context manager; leaving it without :meth:`commit` (an error, Ctrl-C)
    deletes the partial file and the scratch directory, so nothing is left that
    :func:`read_index` or ``backup list`` would take for a backup.

    Args:
        directory: where the archive goes (created if missing).
        name: the final file name (see :func:`archive_name`).
        level: zstd level for compressed members.
    """

    def __init__(self, directory: Path, name: str, level: int = 3) -> None:
        self.directory = Path(directory)
        self.final = self.directory / name
        self.partial = self.directory / f".{name}.partial"
        self.work = self.directory / f".{name}.work"
        self.level = level
        self.entries: list[dict[str, Any]] = []
        self._fh: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._pos = 0
        self._committed = False

    def __enter__(self) -> ArchiveWriter:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.work.mkdir(mode=0o700)
        # 0600: an archive holds the whole trading history
        self._fh = os.fdopen(os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
        if not self._committed:
            self.partial.unlink(missing_ok=True)
        _rmtree(self.work)

    def _write(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)
        self._hash.update(data)
        self._pos += len(data)

    def add(self, name: str, src: Path, entry: dict[str, Any], *, compress: bool = True) -> dict[str, Any]:
        """Append ``src`` as member ``name`` (zstd-compressed unless ``compress`` is False).

        ``entry`` holds the member's manifest fields (kind, counts, source versions...);
        ``name``, ``size``, ``sha256``, ``compression`` and ``raw_size`` are filled in.
        ``src`` is deleted afterwards when it lies in :attr:`work` (never a user's file).
        Returns the completed entry.
        """
        if len(name.encode()) > 100 or not name.isascii() or name == MANIFEST:
            raise ValueError(f"member name {name!r} must be ASCII, at most 100 bytes")
        entry = dict(entry)
        scratch = self.work in src.parents
        if compress:
            packed = self.work / f"member-{len(self.entries):05d}.zst"
            raw_size, raw_sha = compress_file(src, packed, self.level)
            entry["raw_sha256"] = raw_sha
            if scratch:
                src.unlink()
            scratch = True
            entry.update(compression="zstd", raw_size=raw_size)
        else:
            packed = src
            entry.update(compression=entry.get("compression", "none"), raw_size=src.stat().st_size)
        digest = hashlib.sha256()
        size = packed.stat().st_size
        self._write(self._header(name, size))
        with packed.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                self._write(chunk)
        self._write(bytes(round_up(size) - size))
        if scratch:
            packed.unlink()
        entry.update(name=name, size=size, sha256=digest.hexdigest())
        self.entries.append(entry)
        return entry

    def _header(self, name: str, size: int) -> bytes:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o600
        info.uname = info.gname = ""
        return info.tobuf(TAR_FORMAT, ENCODING, "surrogateescape")

    def commit(self, manifest: dict[str, Any]) -> WrittenArchive:
        """Append the sealed manifest (with :attr:`entries`), fsync, rename into place."""
        assert self._fh is not None
        sealed = seal({**manifest, "members": self.entries})
        data = canonical(sealed)
        self._write(self._header(MANIFEST, len(data)))
        self._write(data)
        self._write(bytes(round_up(len(data)) - len(data)))
        end = self._pos + 2 * BLOCK
        self._write(bytes(end + (-end % RECORD) - self._pos))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        if self.final.exists():
            raise ConfigError(f"{self.final} already exists", "pick another --tag or --out")
        os.replace(self.partial, self.final)
        fsync_dir(self.directory)
        self._committed = True
        return WrittenArchive(self.final, self._hash.hexdigest(), self._pos, sealed)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename inside it survives a power cut (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def clean_stale(directory: Path) -> list[Path]:
    """Remove ``.sigmax-backup-*.partial`` / ``.work`` leftovers of killed backups in ``directory``.

    Only call while holding the backup lock (no other backup can be writing them).
    Returns the paths removed.
    """
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        name = entry.name
        if name.startswith("." + PREFIX) and (name.endswith(".partial") or name.endswith(".work")):
            if entry.is_dir():
                _rmtree(entry)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
