"""Reading a backup archive: its index (member offsets and the manifest, every byte
checked: :func:`read_index`), the members' hashes and one member extracted (layout and
integrity rules: :mod:`sigmax_cli.backup.archive`)."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from sigmax_cli.backup.archive_format import (
    BLOCK,
    CHUNK,
    ENCODING,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    RECORD,
    TAR_FORMAT,
    canonical,
    round_up,
    seal,
)
from sigmax_cli.errors import ArchiveNotFound, ChecksumMismatch, IncompatibleArchive


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
        return self.data_offset + round_up(self.size)


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
            info = tarfile.TarInfo.frombuf(header, ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            if pos == 0:
                raise ChecksumMismatch(f"{path.name} is not a sigmax backup archive ({exc})",
                                       "name an archive written by `sigmax backup`") from None
            raise _damaged(path, f"bad tar header at byte {pos} ({exc})") from None
        if not info.isreg() or info.tobuf(TAR_FORMAT, ENCODING, "surrogateescape") != header:
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
                reader = zstandard.ZstdDecompressor().stream_reader(cast("IO[bytes]", source), read_across_frames=True)
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


