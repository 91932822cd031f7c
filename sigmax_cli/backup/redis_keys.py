"""The Redis member: every key under ``redis_prefix``, as DUMP payloads with their expiry.

* Backup: ``SCAN MATCH <prefix>*``, then ``DUMP`` and ``PEXPIRETIME`` (absolute expiry,
  UTC ms; Redis >= 7, else server ``TIME`` + ``PTTL``) per key, pipelined. Stored as JSON
  lines ``{"k": base64 key, "x": expiry ms or -1, "d": base64 payload}``, zstd-compressed.
  Redis offers no point-in-time view across keys short of BGSAVE, so keys written during
  the scan may or may not be in the archive.
* Restore follows Redis's own RDB semantics for expiry: a key whose absolute expiry has
  passed is not restored (it would have expired). Keys are first RESTOREd under staging
  names (``<prefix>restore-staging:<token>:<n>``, REPLACE + ABSTTL); only when every
  payload was accepted does one MULTI/EXEC delete the keys the archive does not hold and
  RENAME each staged key over its target (RENAME keeps the expiry). A rejected payload
  therefore changes nothing. (Not for Redis Cluster: RENAME needs both keys in one slot.)
* The kill-switch key (``<prefix>killswitch``) is live state, not history: it is neither
  archived nor touched by a restore, so a restore never releases an engaged switch.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

from sigmax_cli.backup.archive import ArchiveWriter
from sigmax_cli.backup.members import Change, Files, Member, MemberPlan, Skipped
from sigmax_cli.errors import ChecksumMismatch, ConfigError, IncompatibleArchive
from sigmax_cli.settings import redact_url

NAME = "redis/keys.jsonl.zst"
BATCH = 500
STAGING = "restore-staging:"


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _show(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


class RedisKeys(Member):
    """Keys under ``settings.redis_prefix`` on ``SIGMAX_REDIS_URL``."""

    kind = "redis"

    @property
    def prefix(self) -> bytes:
        return self.settings.redis_prefix.encode()

    def _excluded(self, key: bytes) -> bool:
        return key == self.prefix + b"killswitch" or key.startswith(self.prefix + STAGING.encode())

    def _client(self):
        import redis

        if self.settings.redis_url is None:
            raise ConfigError("the archive holds Redis keys, but no Redis is configured",
                              "set SIGMAX_REDIS_URL, or leave redis out with --only")
        url = self.settings.redis_url.get_secret_value()
        client = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot reach Redis at {redact_url(url)} ({exc})",
                              "start Redis or fix SIGMAX_REDIS_URL") from None
        return client

    def _keys(self, client) -> list[bytes]:
        match = _glob_escape(self.settings.redis_prefix) + "*"
        return sorted(k for k in client.scan_iter(match=match, count=1000) if not self._excluded(k))

    @staticmethod
    def _now_ms(client) -> int:
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def _snapshot(self, client, keys: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """``{key: (payload, absolute expiry ms or -1)}``; keys gone since the scan are left out."""
        version = int(str(client.info("server").get("redis_version", "0")).split(".")[0])
        out: dict[bytes, tuple[bytes, int]] = {}
        for start in range(0, len(keys), BATCH):
            batch = keys[start:start + BATCH]
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.dump(key)
                if version >= 7:
                    pipe.pexpiretime(key)
                else:
                    pipe.pttl(key)
            if version < 7:
                pipe.time()
            replies = pipe.execute()
            now = None
            if version < 7:
                seconds, micros = replies.pop()
                now = int(seconds) * 1000 + int(micros) // 1000
            for i, key in enumerate(batch):
                payload, expiry = replies[2 * i], int(replies[2 * i + 1])
                if payload is None or expiry == -2:
                    continue
                if now is not None and expiry >= 0:
                    expiry = now + expiry
                out[key] = (payload, expiry)
        return out

    # -- Member -----------------------------------------------------------------------------
    def dump(self, writer: ArchiveWriter) -> Skipped | None:
        if self.settings.redis_url is None:
            return Skipped(self.kind, "no Redis is configured (SIGMAX_REDIS_URL)")
        client = self._client()
        snapshot = self._snapshot(client, self._keys(client))
        out = writer.work / "keys.jsonl"
        with out.open("w", encoding="ascii") as fh:
            for key, (payload, expiry) in snapshot.items():
                fh.write(json.dumps({"k": base64.b64encode(key).decode(), "x": expiry,
                                     "d": base64.b64encode(payload).decode()}) + "\n")
        writer.add(NAME, out, {
            "kind": self.kind, "prefix": self.settings.redis_prefix,
            "counts": {"keys": len(snapshot), "with_expiry": sum(1 for _, x in snapshot.values() if x >= 0)},
            "source": {"redis": str(client.info("server").get("redis_version")),
                       "url": redact_url(self.settings.redis_url.get_secret_value())},
        })
        return None

    @staticmethod
    def _records(path: Path) -> list[tuple[bytes, int, bytes]]:
        records = []
        try:
            with path.open(encoding="ascii") as fh:
                for line in fh:
                    doc = json.loads(line)
                    records.append((base64.b64decode(doc["k"], validate=True), int(doc["x"]),
                                    base64.b64decode(doc["d"], validate=True)))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ChecksumMismatch(f"the archived Redis keys do not parse ({exc})", "use another backup") from None
        return records

    def check(self, files: Files, *, deep: bool = False) -> dict[str, Any]:
        ((entry, path),) = files
        records = self._records(path)
        if len(records) != entry.get("counts", {}).get("keys"):
            raise ChecksumMismatch(f"the archive holds {len(records)} Redis keys, its manifest says "
                                   f"{entry.get('counts', {}).get('keys')}", "use another backup")
        detail: dict[str, Any] = {"keys": len(records)}
        if deep:
            if self.settings.redis_url is None:
                detail["restore_test"] = "skipped: no Redis configured (SIGMAX_REDIS_URL)"
            else:
                client = self._client()
                staged = self._stage(client, [(p, 60_000, False) for _, _, p in records], entry)
                if staged:
                    client.delete(*staged)
                detail["restore_test"] = "ok"
        return detail

    def _stage(self, client, items: list[tuple[bytes, int, bool]], entry: dict[str, Any]) -> list[bytes]:
        """RESTORE each ``(payload, ttl, absolute)`` under a staging name; all or nothing."""
        import redis

        base = self.prefix + f"{STAGING}{uuid.uuid4().hex[:12]}:".encode()
        names = [base + str(i).encode() for i in range(len(items))]
        errors: list[Exception] = []
        for start in range(0, len(items), BATCH):
            pipe = client.pipeline(transaction=False)
            for name, (payload, ttl, absolute) in zip(names[start:start + BATCH], items[start:start + BATCH],
                                                     strict=True):
                pipe.restore(name, ttl, payload, replace=True, absttl=absolute)
            errors += [r for r in pipe.execute(raise_on_error=False) if isinstance(r, Exception)]
            if errors:
                break
        if errors:
            client.delete(*names)
            made_by = entry.get("source", {}).get("redis", "?")
            here = client.info("server").get("redis_version")
            if isinstance(errors[0], redis.ResponseError) and "payload version" in str(errors[0]):
                raise IncompatibleArchive(f"Redis {here} rejects the archived keys (made by Redis {made_by})",
                                          f"restore into Redis {made_by} or newer")
            raise ChecksumMismatch(f"Redis rejects an archived key ({errors[0]})", "use another backup")
        return names

    def plan(self, files: Files) -> MemberPlan:
        ((_entry, path),) = files
        client = self._client()
        current = self._snapshot(client, self._keys(client))
        now = self._now_ms(client)
        plan = MemberPlan(self.kind, redact_url(self.settings.redis_url.get_secret_value()))
        archived = set()
        for key, expiry, payload in self._records(path):
            archived.add(key)
            before = current.get(key)
            if 0 <= expiry <= now:
                action = "expired" if before is None else "delete"
            elif before is None:
                action = "add"
            else:
                action = "same" if before == (payload, expiry) else "replace"
            plan.changes.append(Change(_show(key), action, None, expiry))
        for key in sorted(set(current) - archived):
            plan.changes.append(Change(_show(key), "delete"))
        plan.notes.append(f"{self.settings.redis_prefix}killswitch is live state: a restore never touches it")
        return plan

    def apply(self, files: Files, plan: MemberPlan) -> dict[str, Any]:
        ((entry, path),) = files
        client = self._client()
        stale = list(client.scan_iter(match=_glob_escape(self.settings.redis_prefix + STAGING) + "*", count=1000))
        if stale:  # leftovers of a restore killed between its two phases
            client.delete(*stale)
        now = self._now_ms(client)
        live = [(k, x, p) for k, x, p in self._records(path) if not 0 <= x <= now]
        staged = self._stage(client, [(p, max(x, 0), x >= 0) for _, x, p in live], entry)
        keep = {k for k, _, _ in live}
        gone = [k for k in self._keys(client) if k not in keep]
        pipe = client.pipeline(transaction=True)
        if gone:
            pipe.delete(*gone)
        for (key, _, _), name in zip(live, staged, strict=True):
            pipe.delete(key)  # if the staged key expires before the RENAME, the target is still gone
            pipe.rename(name, key)
        pipe.execute(raise_on_error=False)
        return {"restored": len(live), "deleted": len(gone),
                "expired": len(self._records(path)) - len(live)}
