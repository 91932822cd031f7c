"""The kill switch: one flag every bot obeys, on this host and on others.

State lives in two places:

* a file, ``$SIGMAX_HOME/KILLSWITCH`` (JSON: reason, who, when): always written, first,
  so the switch holds even when Redis or the database is down;
* when Redis is configured, the key ``<prefix>killswitch`` (same JSON) plus a message on
  the pub/sub channel ``<prefix>killswitch``, so bots on other hosts see it at once.

The switch is engaged when either place says so. Engaging writes the file and then Redis;
releasing needs a reason and clears both. Redis trouble never stops an engage: the
status then lists it under ``degraded`` (the file alone still halts every bot on this host).

Bots check :meth:`KillSwitch.engaged` every tick; a :class:`KillSwitchWatcher` keeps a
Redis pub/sub subscription so that a remote engage is seen without polling Redis.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.files import write_atomic

FILE_NAME = "KILLSWITCH"
DEFAULT_PREFIX = "sigmax:"
REDIS_TIMEOUT_S = 2.0


def who() -> str:
    """``user@host`` of this process, recorded with every engage and release."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class KillSwitchStatus:
    """Where the kill switch stands.

    Attributes:
        engaged: True when the file or the Redis key says so.
        reason: why it was engaged (``None`` when released).
        since_ms: when it was engaged, UTC ms.
        by: who engaged it (``user@host`` or a rule name).
        source: which stores say engaged: ``"file"``, ``"redis"``, ``"file+redis"``, or ``""``.
        degraded: stores that could not be read or written, with the reason.
    """

    engaged: bool
    reason: str | None = None
    since_ms: int | None = None
    by: str | None = None
    source: str = ""
    degraded: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        self._redis = None

    @classmethod
    def from_settings(cls, settings) -> KillSwitch:
        """The kill switch of ``settings`` (home, redis_url, redis_prefix when present)."""
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url is not None else None
        return cls(settings.home, redis_url, getattr(settings, "redis_prefix", DEFAULT_PREFIX))

    # -- reading ---------------------------------------------------------------------------
    def status(self) -> KillSwitchStatus:
        """Read both stores. Never raises for an unreachable Redis: it is listed as degraded."""
        degraded: list[str] = []
        file_state = self._read_file(degraded)
        redis_state = None
        if self.redis_url:
            try:
                raw = self._client().get(self.key)
                redis_state = json.loads(raw) if raw else None
            except Exception as exc:  # redis.RedisError, ValueError: never block a status read
                degraded.append(f"redis: {_short(exc)}")
        sources = [name for name, state in (("file", file_state), ("redis", redis_state)) if state]
        state = file_state or redis_state
        if not state:
            return KillSwitchStatus(False, degraded=degraded)
        return KillSwitchStatus(True, state.get("reason"), state.get("since_ms"), state.get("by"),
                                "+".join(sources), degraded)

    def engaged(self) -> bool:
        """Fast check for the trading loop: the file, then the Redis key (if configured)."""
        if self.path.exists():
            return True
        if self.redis_url:
            try:
                return bool(self._client().exists(self.key))
            except Exception:  # noqa: BLE001 - an unreachable Redis cannot engage anything
                return False
        return False

    def _read_file(self, degraded: list[str]) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            degraded.append(f"file: {exc.strerror}")
            return {"reason": "kill-switch file present but unreadable", "by": None, "since_ms": None}
        try:
            return json.loads(text)
        except ValueError:
            # a hand-made `touch KILLSWITCH` still engages: the flag's presence is what counts
            return {"reason": "kill-switch file present (not written by sigmax)", "by": None, "since_ms": None}

    # -- writing ---------------------------------------------------------------------------
    def engage(self, reason: str, by: str | None = None) -> KillSwitchStatus:
        """Engage: write the file (atomically), then the Redis key and a pub/sub message.

        An already engaged switch keeps its original reason and time (idempotent).

        Raises:
            ConfigError: the file cannot be written (the switch would not hold).
        """
        current = self.status()
        if current.engaged and current.since_ms is not None:
            record = {"reason": current.reason, "by": current.by, "since_ms": current.since_ms}
        else:
            record = {"reason": reason, "by": by or who(), "since_ms": int(time.time() * 1000)}
        self._write_file(record)
        degraded = [d for d in current.degraded if not d.startswith("redis")]
        if self.redis_url:
            try:
                client = self._client()
                client.set(self.key, json.dumps(record))
                client.publish(self.channel, json.dumps({"event": "engaged", **record}))
            except Exception as exc:  # noqa: BLE001 - the file already holds the switch
                degraded.append(f"redis: {_short(exc)}")
        status = self.status()
        return KillSwitchStatus(True, record["reason"], record["since_ms"], record["by"], status.source,
                                sorted(set(degraded + status.degraded)))

    def release(self, reason: str, by: str | None = None) -> KillSwitchStatus:
        """Release: remove the file and the Redis key, publish the release.

        Raises:
            ConfigError: no reason given, or the file cannot be removed.
        """
        if not reason or not reason.strip():
            raise ConfigError("releasing the kill switch needs a reason",
                              "pass --reason 'what was checked and by whom'")
        degraded: list[str] = []
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot remove {self.path} ({exc.strerror})", "check its permissions") from None
        if self.redis_url:
            try:
                client = self._client()
                client.delete(self.key)
                client.publish(self.channel, json.dumps({"event": "released", "reason": reason, "by": by or who(),
                                                          "at_ms": int(time.time() * 1000)}))
            except Exception as exc:  # noqa: BLE001
                degraded.append(f"redis: {_short(exc)} (the Redis key may still hold the switch)")
        status = self.status()
        return KillSwitchStatus(status.engaged, status.reason, status.since_ms, status.by, status.source,
                                sorted(set(degraded + status.degraded)))

    def _write_file(self, record: dict[str, Any]) -> None:
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(record))
        except OSError as exc:
            raise ConfigError(f"cannot write the kill-switch file {self.path} ({exc.strerror})",
                              "fix the permissions of SIGMAX_HOME; the switch is NOT engaged") from None

    def _client(self):
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                               socket_connect_timeout=REDIS_TIMEOUT_S)
        return self._redis


class KillSwitchWatcher:
    """Caches the kill switch for a trading loop.

    ``engaged()`` reads the file on every call (a ``stat``) and Redis at most every
    ``redis_every_s`` seconds; a background pub/sub subscription flags a remote engage at
    once. Use as a context manager so the subscription thread stops.
    """

    def __init__(self, switch: KillSwitch, redis_every_s: float = 1.0) -> None:
        self.switch = switch
        self.redis_every_s = redis_every_s
        self._remote = threading.Event()
        self._last_redis = 0.0
        self._redis_engaged = False
        self._thread: threading.Thread | None = None
        self._pubsub = None
        self._stop = threading.Event()

    def __enter__(self) -> KillSwitchWatcher:
        if self.switch.redis_url:
            try:
                self._pubsub = self.switch._client().pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self.switch.channel)
                self._thread = threading.Thread(target=self._listen, name="killswitch-watch", daemon=True)
                self._thread.start()
            except Exception:  # noqa: BLE001 - polling still covers Redis
                self._pubsub = None
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._pubsub is not None:
            with contextlib.suppress(Exception):  # closing a dead connection must not mask the exit
                self._pubsub.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except Exception:  # noqa: BLE001 - connection lost: polling takes over
                return
            if message and message.get("type") == "message":
                try:
                    event = json.loads(message["data"]).get("event")
                except (ValueError, AttributeError):
                    continue
                if event == "engaged":
                    self._remote.set()
                elif event == "released":
                    self._remote.clear()
                    self._last_redis = 0.0

    def engaged(self) -> bool:
        """True when the file exists, a remote engage was heard, or Redis says so."""
        if self.switch.path.exists() or self._remote.is_set():
            return True
        if self.switch.redis_url:
            now = time.monotonic()
            if now - self._last_redis >= self.redis_every_s:
                self._last_redis = now
                self._redis_engaged = self.switch.engaged()
            return self._redis_engaged
        return False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
