"""The kill switch's two stores: the flag file in ``SIGMAX_HOME`` and, optionally, a Redis key
plus pub/sub channel (:class:`KillSwitch`: read, engage, release)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.files import write_atomic
from sigmax_cli.risk.killswitch.state import (
    KillSwitchStatus,
    Reading,
    SwitchState,
    _now_ms,
    combine,
    engage_record,
    parse_record,
    who,
)
from sigmax_cli.risk.killswitch.state import short_error as _short

if TYPE_CHECKING:
    from redis import Redis

    from sigmax_cli.settings import Settings

FILE_NAME = "KILLSWITCH"
DEFAULT_PREFIX = "sigmax:"
READ_TIMEOUT_S = 1.0     # connect and socket timeout of one-shot reads (status, start-up check)
WRITE_TIMEOUT_S = 1.0    # connect and socket timeout of panic's engage/release in Redis


class KillSwitch:
    """File flag in ``home`` plus, optionally, a Redis key and channel.

    Args:
        home: the state directory (``SIGMAX_HOME``).
        redis_url: Redis URL, or ``None`` for the file alone.
        prefix: Redis key prefix (``sigmax:``).
    """

    def __init__(self, home: Path, redis_url: str | None = None, prefix: str = DEFAULT_PREFIX) -> None:
        self.home = Path(home)
        self.path = self.home / FILE_NAME
        self.redis_url = redis_url
        self.key = f"{prefix}killswitch"
        self.channel = f"{prefix}killswitch"
        self._clients: dict[float, Redis] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KillSwitch:
        """The kill switch of ``settings`` (home, redis_url, redis_prefix when present)."""
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
        return cls(settings.home, redis_url, getattr(settings, "redis_prefix", DEFAULT_PREFIX))

    # -- reading ---------------------------------------------------------------------------
    def read_file(self) -> Reading:
        """The flag file's record; UNKNOWN when it exists but cannot be read."""
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return Reading("file", SwitchState.RELEASED)
        except OSError as exc:
            return Reading("file", SwitchState.UNKNOWN, error=f"{self.path} unreadable ({exc.strerror or exc})")
        return parse_record(text, "file")

    def read_redis(self, timeout_s: float = READ_TIMEOUT_S) -> Reading | None:
        """The Redis key's record (``None`` without Redis); UNKNOWN when Redis does not
        answer within ``timeout_s`` (connect and read each)."""
        if not self.redis_url:
            return None
        try:
            raw = self.client(timeout_s).get(self.key)
        except Exception as exc:  # noqa: BLE001 - redis errors of every kind: the state is unknown
            return Reading("redis", SwitchState.UNKNOWN, error=_short(exc))
        return parse_record(raw, "redis")

    def readings(self, timeout_s: float = READ_TIMEOUT_S) -> list[Reading]:
        """Every configured store's reading, the file first."""
        out = [self.read_file()]
        redis_reading = self.read_redis(timeout_s)
        if redis_reading is not None:
            out.append(redis_reading)
        return out

    def status(self, timeout_s: float = READ_TIMEOUT_S) -> KillSwitchStatus:
        """Read every store (Redis within ``timeout_s``). Never raises: a store that cannot
        be read makes the state UNKNOWN unless another store holds an engage."""
        return combine(self.readings(timeout_s))

    def engaged(self) -> bool:
        """True when a store holds an engage (a one-shot read; bots use the watcher)."""
        return self.status().engaged

    # -- writing ---------------------------------------------------------------------------
    def engage(self, reason: str, by: str | None = None, *, timeout_s: float = WRITE_TIMEOUT_S,
               on_file: Any = None) -> KillSwitchStatus:
        """Engage: the file first (atomic write + fsync, before any network call), then the
        Redis key and a pub/sub message, each within ``timeout_s``.

        An engaged store keeps its original record (idempotent). Neither store's failure
        stops the other: failures are listed in ``degraded`` and ``written`` names the
        stores that hold the engage afterwards. ``on_file(error_or_None)`` is called right
        after the file step (for timing). Never raises for a store's failure.
        """
        current = self.read_file()
        was_engaged = current.state is SwitchState.ENGAGED
        record = current.record if was_engaged and current.record is not None else engage_record(reason, by)
        degraded: list[str] = []
        written: list[str] = []
        file_error = self._write_file(record)
        if file_error is None:
            written.append("file")
        else:
            degraded.append(f"file: {file_error}")
        if on_file is not None:
            on_file(file_error)
        readings = [Reading("file", SwitchState.ENGAGED, record) if file_error is None else current]
        if self.redis_url:
            try:
                client = self.client(timeout_s)
                held = parse_record(client.get(self.key), "redis")
                was_engaged = was_engaged or held.state is SwitchState.ENGAGED
                if held.state is not SwitchState.ENGAGED:
                    client.set(self.key, json.dumps(record))
                    held = Reading("redis", SwitchState.ENGAGED, record)
                client.publish(self.channel, json.dumps({"event": "engaged", **(held.record or record)}))
                written.append("redis")
                readings.append(held)
            except Exception as exc:  # noqa: BLE001 - the file (if written) already holds the switch here
                degraded.append(f"redis: {_short(exc)}")
                readings.append(Reading("redis", SwitchState.UNKNOWN, error=_short(exc)))
        return replace(combine(readings, tuple(written), degraded), was_engaged=was_engaged)

    def release(self, reason: str, by: str | None = None, *, timeout_s: float = WRITE_TIMEOUT_S) -> KillSwitchStatus:
        """Release: replace the engage by a release record in the file, then in Redis,
        and publish it. Bots resume when they see this record.

        Returns the status after the release; ``written`` names the stores the release
        reached (a store missing there still holds, or may hold, the engage).

        Raises:
            ConfigError: no reason given, or the file cannot be written (nothing was
                released then, not even in Redis).
        """
        if not reason or not reason.strip():
            raise ConfigError("releasing the kill switch needs a reason",
                              "pass --reason 'what was checked and by whom'")
        record = {"state": "released", "id": uuid.uuid4().hex, "reason": reason, "by": by or who(),
                  "released_ms": _now_ms()}
        error = self._write_file(record)
        if error is not None:
            raise ConfigError(f"cannot write the kill-switch file {self.path} ({error}), so nothing was released",
                              "free space or fix the permissions of SIGMAX_HOME and release again")
        written = ["file"]
        degraded: list[str] = []
        readings = [Reading("file", SwitchState.RELEASED, record)]
        if self.redis_url:
            try:
                client = self.client(timeout_s)
                client.set(self.key, json.dumps(record))
                client.publish(self.channel, json.dumps({"event": "released", **record}))
                written.append("redis")
                readings.append(Reading("redis", SwitchState.RELEASED, record))
            except Exception as exc:  # noqa: BLE001
                degraded.append(f"redis: {_short(exc)} (bots on other hosts stay halted)")
                readings.append(Reading("redis", SwitchState.UNKNOWN, error=_short(exc)))
        return combine(readings, tuple(written), degraded)

    def _write_file(self, record: dict[str, Any]) -> str | None:
        """Write ``record`` to the flag file; the OS error's text, or ``None`` on success."""
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(record))
        except OSError as exc:
            return exc.strerror or str(exc)
        return None

    def client(self, timeout_s: float = READ_TIMEOUT_S) -> Redis:
        """A Redis client with ``timeout_s`` connect and socket timeouts and no retries
        (a retry would multiply the wait on a hung server).

        Raises:
            ConfigError: no Redis is configured (``redis_url`` is ``None``).
        """
        if not self.redis_url:
            raise ConfigError("the kill switch has no Redis configured", "set SIGMAX_REDIS_URL")
        client = self._clients.get(timeout_s)
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(self.redis_url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
            self._clients[timeout_s] = client
        return client
