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
import json
import os
import re
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sigmax_cli.errors import ArchiveNotFound, ChecksumMismatch, ConfigError, IncompatibleArchive

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
_TAR_FORMAT = tarfile.GNU_FORMAT
_ENCODING = "utf-8"


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


# -- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredMember:
    """Where one member sits in the file: header at ``offset``, ``size`` data bytes at ``data_offset``."""

    name: str
    offset: int
    data_offset: int
    size: int

    @property
    def end(self) -> int:
        """First byte after the member's data padding (a multiple of 512)."""
        return self.data_offset + _round_up(self.size)


@dataclass(frozen=True)
class ArchiveIndex:
    """An archive whose structure and manifest passed :func:`read_index` (data not hashed yet).

    Attributes:
        path: the archive file.
        manifest: the parsed manifest (see :func:`sigmax_cli.backup.create.create_backup`).
        members: data members in file order, without the manifest.
        size: file size in bytes.
    """

    path: Path
    manifest: dict[str, Any]
    members: tuple[StoredMember, ...]
    size: int

    @property
    def created_ms(self) -> int:
        return int(self.manifest["created_ms"])

    @property
    def tag(self) -> str | None:
        return self.manifest.get("tag")

    def entries(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Manifest entries (one per stored file), optionally of one kind."""
        return [e for e in self.manifest["members"] if kind is None or e["kind"] == kind]

    @property
    def kinds(self) -> list[str]:
        """Member kinds present, in manifest order (``ledger``, ``redis``, ``models``, ``config``)."""
        return list(dict.fromkeys(e["kind"] for e in self.manifest["members"]))

    def stored(self, name: str) -> StoredMember:
        """Where member ``name`` sits in the file."""
        return next(m for m in self.members if m.name == name)


def _round_up(n: int) -> int:
    return (n + BLOCK - 1) // BLOCK * BLOCK


def _damaged(path: Path, what: str) -> ChecksumMismatch:
    return ChecksumMismatch(f"archive {path.name} is damaged: {what}",
                            "do not restore from it; use another backup (`sigmax backup list`)")


def read_index(path: Path, *, check_compat: bool = True) -> ArchiveIndex:
    """Read an archive's headers and manifest, checking every byte outside member data.

    Cheap: seeks over member data; reads one header per member, the padding, the end
    blocks and the manifest. Member data is hashed by :func:`hash_members`.

    Args:
        path: the archive file.
        check_compat: refuse archives of a newer format or ledger schema than this sigmax.

    Raises:
        ArchiveNotFound: no such file.
        ChecksumMismatch: not a sigmax archive, truncated, damaged header or padding, no
            manifest at the end, manifest edited (its sha256 fails) or listing other members.
        IncompatibleArchive: the archive's format or ledger schema is newer than this sigmax.
    """
    path = Path(path)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise ArchiveNotFound(f"there is no archive at {path}",
                              "list the archives with `sigmax backup list`") from None
    except IsADirectoryError:
        raise ArchiveNotFound(f"{path} is a directory, not an archive",
                              "name an archive file from `sigmax backup list`") from None
    except OSError as exc:
        raise ArchiveNotFound(f"cannot read {path} ({exc.strerror})", "check the path and its permissions") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        stored = _walk(fh, path, size)
        if not stored or stored[-1].name != MANIFEST:
            raise _damaged(path, "it has no manifest at the end (the backup did not finish, or the file was cut)")
        last = stored[-1]
        if last.size > MAX_MANIFEST_BYTES:
            raise _damaged(path, "its manifest is implausibly large")
        fh.seek(last.data_offset)
        raw = fh.read(last.size)
    manifest = _parse_manifest(path, raw)
    members = tuple(stored[:-1])
    listed = manifest["members"]
    if [m.name for m in members] != [e.get("name") for e in listed]:
        missing = sorted({e.get("name") for e in listed} - {m.name for m in members})
        extra = sorted({m.name for m in members} - {e.get("name") for e in listed})
        what = (f"member {missing[0]} listed in the manifest is missing" if missing else
                f"member {extra[0]} is not in the manifest" if extra else "its members are out of order")
        raise _damaged(path, what)
    for member, entry in zip(members, listed, strict=True):
        if entry.get("size") != member.size:
            raise _damaged(path, f"member {member.name} holds {member.size} bytes, "
                                 f"the manifest says {entry.get('size')}")
    index = ArchiveIndex(path, manifest, members, size)
    if check_compat:
        check_compatible(index)
    return index


def _walk(fh: BinaryIO, path: Path, size: int) -> list[StoredMember]:
    """Parse the tar strictly: exact headers, zero padding, zero end blocks up to EOF."""
    stored: list[StoredMember] = []
    pos = 0
    while True:
        if pos + BLOCK > size:
            raise _damaged(path, f"it ends inside a header at byte {pos} (truncated)")
        fh.seek(pos)
        header = fh.read(BLOCK)
        if header == bytes(BLOCK):
            break
        try:
            info = tarfile.TarInfo.frombuf(header, _ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            if pos == 0:
                raise ChecksumMismatch(f"{path.name} is not a sigmax backup archive ({exc})",
                                       "name an archive written by `sigmax backup`") from None
            raise _damaged(path, f"bad tar header at byte {pos} ({exc})") from None
        if not info.isreg() or info.tobuf(_TAR_FORMAT, _ENCODING, "surrogateescape") != header:
            raise _damaged(path, f"unexpected tar header at byte {pos}")
        member = StoredMember(info.name, pos, pos + BLOCK, info.size)
        if member.end > size:
            raise _damaged(path, f"member {info.name} is cut short (the file was truncated)")
        _expect_zeros(fh, path, member.data_offset + member.size, member.end)
        stored.append(member)
        pos = member.end
    if size - pos < 2 * BLOCK or size % RECORD:
        raise _damaged(path, "its end-of-archive blocks are cut short (the file was truncated)")
    _expect_zeros(fh, path, pos, size)
    return stored


def _expect_zeros(fh: BinaryIO, path: Path, start: int, end: int) -> None:
    fh.seek(start)
    left = end - start
    while left > 0:
        chunk = fh.read(min(left, CHUNK))
        if not chunk:
            raise _damaged(path, "it ends early (truncated)")
        if chunk.count(0) != len(chunk):
            where = start + (end - start - left) + next(i for i, b in enumerate(chunk) if b)
            raise _damaged(path, f"non-zero byte in tar padding at byte {where}")
        left -= len(chunk)


def _parse_manifest(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise _damaged(path, "its manifest is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ChecksumMismatch(f"{path.name} is not a sigmax backup archive (no sigmax manifest)",
                               "name an archive written by `sigmax backup`")
    try:
        sealed = seal(manifest)
        if canonical(manifest) != raw:
            raise ValueError
    except (ValueError, TypeError):
        raise _damaged(path, "its manifest is not in canonical form (edited by hand?)") from None
    if sealed["manifest_sha256"] != manifest.get("manifest_sha256"):
        raise _damaged(path, "its manifest does not match its own sha256 (the manifest was edited)")
    if not isinstance(manifest.get("members"), list) or not isinstance(manifest.get("created_ms"), int):
        raise _damaged(path, "its manifest lacks members or created_ms")
    return manifest


def check_compatible(index: ArchiveIndex) -> None:
    """Refuse archives this sigmax cannot restore.

    Raises:
        IncompatibleArchive: newer archive format, or a ledger schema newer than
            :data:`sigmax_cli.ledger.migrations.SCHEMA_VERSION`.
    """
    from sigmax_cli.ledger.migrations import SCHEMA_VERSION

    manifest = index.manifest
    made_by = manifest.get("sigmax_version", "?")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise IncompatibleArchive(
            f"archive {index.path.name} has format version {manifest['format_version']} (sigmax {made_by}); "
            f"this sigmax reads version {FORMAT_VERSION}", "upgrade sigmax to restore it")
    schema = manifest.get("ledger_schema_version")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise IncompatibleArchive(
            f"archive {index.path.name} holds a ledger of schema version {schema} (sigmax {made_by}); "
            f"this sigmax knows up to version {SCHEMA_VERSION}", "upgrade sigmax to restore it")


def hash_members(index: ArchiveIndex, progress: Callable[[int], None] | None = None) -> str:
    """Hash the whole file in one sequential pass and check every member's sha256.

    Args:
        index: from :func:`read_index`.
        progress: called with the bytes read so far (for a progress bar).

    Returns:
        The sha256 (hex) of the whole archive file.

    Raises:
        ChecksumMismatch: a member's bytes do not match the manifest (a flipped byte), or the
            file changed size since it was indexed.
    """
    whole = hashlib.sha256()
    done = 0
    with index.path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size != index.size:
            raise _damaged(index.path, "it changed while being verified")

        def feed(n: int, member_hash=None) -> None:
            nonlocal done
            while n > 0:
                chunk = fh.read(min(n, CHUNK))
                if not chunk:
                    raise _damaged(index.path, "it ends early (truncated)")
                whole.update(chunk)
                if member_hash is not None:
                    member_hash.update(chunk)
                n -= len(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)

        entries = {e["name"]: e for e in index.manifest["members"]}
        for member in index.members:
            feed(member.data_offset - fh.tell())
            digest = hashlib.sha256()
            feed(member.size, digest)
            if digest.hexdigest() != entries[member.name].get("sha256"):
                raise ChecksumMismatch(
                    f"member {member.name} of archive {index.path.name} does not match its sha256 "
                    "(the archive is damaged)", "do not restore from it; use another backup (`sigmax backup list`)")
        feed(index.size - fh.tell())
    return whole.hexdigest()


def extract(index: ArchiveIndex, entry: dict[str, Any], dest: Path) -> Path:
    """Write one member's content to ``dest``, decompressing zstd members (frame checksums checked).

    Raises:
        ChecksumMismatch: the zstd stream is corrupt or its size differs from ``raw_size``.
    """
    import zstandard

    stored = index.stored(entry["name"])
    dest.parent.mkdir(parents=True, exist_ok=True)
    with index.path.open("rb") as fh, dest.open("wb") as out:
        fh.seek(stored.data_offset)
        source = _Slice(fh, stored.size)
        written = 0
        try:
            if entry.get("compression") == "zstd":
                reader = zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True)
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
            else:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    written += len(chunk)
        except zstandard.ZstdError as exc:
            raise _damaged(index.path, f"member {entry['name']} does not decompress ({exc})") from None
    if "raw_size" in entry and written != entry["raw_size"]:
        raise _damaged(index.path, f"member {entry['name']} decompresses to {written} bytes, not {entry['raw_size']}")
    return dest


class _Slice:
    """A read-only view of ``size`` bytes from the current position of ``fh``."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        return data


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
        self._write(bytes(_round_up(size) - size))
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
        return info.tobuf(_TAR_FORMAT, _ENCODING, "surrogateescape")

    def commit(self, manifest: dict[str, Any]) -> WrittenArchive:
        """Append the sealed manifest (with :attr:`entries`), fsync, rename into place."""
        assert self._fh is not None
        sealed = seal({**manifest, "members": self.entries})
        data = canonical(sealed)
        self._write(self._header(MANIFEST, len(data)))
        self._write(data)
        self._write(bytes(_round_up(len(data)) - len(data)))
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
