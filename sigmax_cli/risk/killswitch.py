"""The kill switch: one flag every bot obeys, on this host and on others. It fails closed.

Three states (:class:`SwitchState`):

* ``ENGAGED``: a store holds an engage record (written by ``sigmax panic``);
* ``RELEASED``: every configured store could be read and none holds an engage;
* ``UNKNOWN``: a store could not be read (Redis unreachable or hung, the flag file
  unreadable) and none that could be read holds an engage. UNKNOWN never counts as
  released: no new run starts under it and a running bot halts.

State lives in two stores, each holding one JSON record, the newest of either kind:

* the file ``$SIGMAX_HOME/KILLSWITCH``: always written first (atomically, fsynced), so the
  switch holds on this host even when Redis or the network is down;
* when Redis is configured, the key ``<prefix>killswitch`` plus a message on the pub/sub
  channel ``<prefix>killswitch``, so bots on other hosts see it at once.

An engage record is ``{"state": "engaged", "id", "reason", "by", "since_ms"}``; a release
(``sigmax panic --release``) replaces it by ``{"state": "released", "id", "reason", "by",
"released_ms"}`` - a release is a record, never the absence of one. A file without a
``state`` (written by an older sigmax, or a hand-made ``touch KILLSWITCH``) engages.

A running bot reads its state through a :class:`KillSwitchWatcher`: a background thread
polls the stores with short socket timeouts and exponential back-off and listens on the
channel, and the trading loop reads the cached result (plus a ``stat`` of the local file),
so no Redis fault slows the loop. A watcher that has seen ENGAGED *latches* it: the bot
stays halted through Redis outages, a lost Redis key or a deleted file, until it sees a
release record it had not seen before the engage.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.files import write_atomic

FILE_NAME = "KILLSWITCH"
DEFAULT_PREFIX = "sigmax:"
READ_TIMEOUT_S = 1.0     # connect and socket timeout of one-shot reads (status, start-up check)
WRITE_TIMEOUT_S = 1.0    # connect and socket timeout of panic's engage/release in Redis
WATCH_TIMEOUT_S = 0.5    # connect and socket timeout of the watcher's polls
WATCH_POLL_S = 0.5       # seconds between the watcher's polls while Redis answers
WATCH_MAX_BACKOFF_S = 8.0  # longest wait between polls while Redis fails (doubling from WATCH_POLL_S)


class SwitchState(StrEnum):
    """Where the kill switch stands; only RELEASED lets a bot trade."""

    ENGAGED = "ENGAGED"
    RELEASED = "RELEASED"
    UNKNOWN = "UNKNOWN"


def who() -> str:
    """``user@host`` of this process, recorded with every engage and release."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def engage_record(reason: str, by: str | None = None) -> dict[str, Any]:
    """A new engage record (``since_ms`` UTC ms, a fresh random ``id``)."""
    return {"state": "engaged", "id": uuid.uuid4().hex, "reason": reason, "by": by or who(), "since_ms": _now_ms()}


@dataclass(frozen=True)
class Reading:
    """What one store holds.

    Attributes:
        store: ``"file"`` or ``"redis"``.
        state: ENGAGED (an engage record), RELEASED (a release record, or nothing) or
            UNKNOWN (the store could not be read; ``error`` says why).
        record: the record read (``None`` when the store is empty or unreadable).
    """

    store: str
    state: SwitchState
    record: dict[str, Any] | None = None
    error: str | None = None

    @property
    def release_id(self) -> str | None:
        """The id of the release record this store holds, if it holds one."""
        if self.record and self.record.get("state") == "released":
            return str(self.record.get("id") or f"released-{self.record.get('released_ms')}")
        return None


def parse_record(raw: str | bytes | None, store: str) -> Reading:
    """A store's raw content as a :class:`Reading`. Empty: RELEASED with no record; a
    record without ``state`` or not JSON: ENGAGED (a hand-made flag engages)."""
    if raw is None:
        return Reading(store, SwitchState.RELEASED)
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("not an object")
    except ValueError:
        return Reading(store, SwitchState.ENGAGED, {"state": "engaged", "id": f"{store}-manual",
                                                    "reason": f"kill-switch {store} present (not written by sigmax)",
                                                    "by": None, "since_ms": None})
    if record.get("state") == "released":
        return Reading(store, SwitchState.RELEASED, record)
    record = {"state": "engaged", "id": record.get("id") or f"{store}-{record.get('since_ms')}", **{
        k: record.get(k) for k in ("reason", "by", "since_ms")}}
    return Reading(store, SwitchState.ENGAGED, record)


@dataclass(frozen=True)
class KillSwitchStatus:
    """The kill switch as read from every configured store.

    Attributes:
        state: ENGAGED if any store holds an engage; else UNKNOWN if a store could not be
            read; else RELEASED.
        reason, since_ms, by, engage_id: of the engage (``None`` unless ENGAGED); ``since_ms``
            is UTC ms.
        source: the stores holding the engage: ``"file"``, ``"redis"``, ``"file+redis"``, or ``""``.
        degraded: stores that could not be read or written, each ``"<store>: <why>"``.
        readings: what each store holds (``file``, then ``redis`` when configured).
        written: the stores a write (engage or release) reached, in order.
        was_engaged: after an engage, True when a store already held an engage (its
            original record was kept).
    """

    state: SwitchState
    reason: str | None = None
    since_ms: int | None = None
    by: str | None = None
    source: str = ""
    degraded: list[str] = field(default_factory=list)
    engage_id: str | None = None
    readings: tuple[Reading, ...] = ()
    written: tuple[str, ...] = ()
    was_engaged: bool = False

    @property
    def engaged(self) -> bool:
        """True only when ENGAGED (UNKNOWN is not engaged, and not released either)."""
        return self.state is SwitchState.ENGAGED

    @property
    def released(self) -> bool:
        """True only when every store was read and none holds an engage."""
        return self.state is SwitchState.RELEASED

    @property
    def unknown_reason(self) -> str:
        """Why the state is not known (``"redis: timeout"``), or ``""``."""
        return "; ".join(f"{r.store}: {r.error}" for r in self.readings if r.state is SwitchState.UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "engaged": self.engaged, "reason": self.reason, "since_ms": self.since_ms,
                "by": self.by, "source": self.source, "engage_id": self.engage_id, "degraded": list(self.degraded),
                "stores": {r.store: {"state": r.state.value, "error": r.error,
                                     "release_id": r.release_id} for r in self.readings},
                "written": list(self.written), "was_engaged": self.was_engaged}


def combine(readings: list[Reading] | tuple[Reading, ...], written: tuple[str, ...] = (),
            degraded: list[str] | None = None) -> KillSwitchStatus:
    """One status from the stores' readings (see :class:`KillSwitchStatus` for the rule)."""
    degraded = list(degraded or [])
    degraded += [f"{r.store}: {r.error}" for r in readings if r.state is SwitchState.UNKNOWN
                 and f"{r.store}: {r.error}" not in degraded]
    engaged = [r for r in readings if r.state is SwitchState.ENGAGED]
    if engaged:
        first = engaged[0].record or {}
        return KillSwitchStatus(SwitchState.ENGAGED, first.get("reason"), first.get("since_ms"), first.get("by"),
                                "+".join(r.store for r in engaged), degraded, first.get("id"), tuple(readings),
                                written)
    state = SwitchState.UNKNOWN if any(r.state is SwitchState.UNKNOWN for r in readings) else SwitchState.RELEASED
    return KillSwitchStatus(state, degraded=degraded, readings=tuple(readings), written=written)


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
        self._clients: dict[float, Any] = {}

    @classmethod
    def from_settings(cls, settings) -> KillSwitch:
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
        record = current.record if was_engaged else engage_record(reason, by)
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

    def client(self, timeout_s: float = READ_TIMEOUT_S):
        """A Redis client with ``timeout_s`` connect and socket timeouts and no retries
        (a retry would multiply the wait on a hung server)."""
        client = self._clients.get(timeout_s)
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(self.redis_url, socket_timeout=timeout_s,
                                          socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
            self._clients[timeout_s] = client
        return client


@dataclass(frozen=True)
class WatchedState:
    """What a bot acts on, from :meth:`KillSwitchWatcher.current`.

    Attributes:
        state: ENGAGED (seen and not explicitly released since: latched), UNKNOWN (never
            released either) or RELEASED.
        reason, by, since_ms, source: of the engage that holds (ENGAGED only).
        detail: why the state is UNKNOWN, or what is unreadable while latched.
        release: the release record that ended the last engage (RELEASED after a latch).
    """

    state: SwitchState
    reason: str | None = None
    by: str | None = None
    since_ms: int | None = None
    source: str = ""
    detail: str = ""
    release: dict[str, Any] | None = None


class KillSwitchWatcher:
    """Keeps a bot's view of the kill switch fresh without ever blocking the trading loop.

    A background thread reads the stores every ``poll_s`` seconds (Redis with
    ``WATCH_TIMEOUT_S`` socket timeouts), doubling the wait up to ``max_backoff_s`` while
    Redis fails; a second thread listens on the pub/sub channel (reconnecting with the same
    back-off) and wakes the poller at once. :meth:`current` returns the cached state after
    a ``stat`` of the local file (re-read only when it changed), so a local engage is seen
    on the very next step and a remote one within a poll.

    Latch: once ENGAGED is seen, :meth:`current` stays ENGAGED until a store shows a release
    record whose id was not known before the engage, no store holds an engage and every store
    could be read. A Redis outage, a Redis that comes back empty, or a deleted flag file
    does not release a bot; a Redis that comes back empty gets the engage it lost back
    (``SET NX``), so bots started later refuse to trade too.

    Use as a context manager (``__enter__`` makes one synchronous read, so the state is
    known before the first bar; ``__exit__`` stops the threads).

    Args:
        switch: the kill switch to watch.
        poll_s: seconds between polls while Redis answers.
        max_backoff_s: longest wait between polls while Redis fails.
        on_change: called with the new :class:`WatchedState` (from the watcher's thread)
            whenever the state changes; keep it cheap.
    """

    def __init__(self, switch: KillSwitch, poll_s: float = WATCH_POLL_S, max_backoff_s: float = WATCH_MAX_BACKOFF_S,
                 on_change: Any = None) -> None:
        self.switch = switch
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.on_change = on_change
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pubsub = None
        self._file_sig: tuple | None = None
        self._file = Reading("file", SwitchState.RELEASED)
        self._redis: Reading | None = None
        self._latched: dict[str, Any] | None = None  # the engage record that holds the bot
        self._known_releases: set[str] = set()
        self._last_release: dict[str, Any] | None = None  # the release that ended the last latch
        self._state = WatchedState(SwitchState.UNKNOWN, detail="not read yet")
        self.polls = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> KillSwitchWatcher:
        self._refresh_file()
        if self.switch.redis_url:
            self._redis = self.switch.read_redis(WATCH_TIMEOUT_S)
        self._recompute()
        if self.switch.redis_url:
            for target, name in ((self._poll_loop, "killswitch-poll"), (self._listen_loop, "killswitch-listen")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._wake.set()
        pubsub = self._pubsub
        if pubsub is not None:
            with contextlib.suppress(Exception):  # closing a dead connection must not mask the exit
                pubsub.close()
        for thread in self._threads:
            thread.join(timeout=2 * WATCH_TIMEOUT_S + 1)

    # -- what the loop reads -----------------------------------------------------------------
    def current(self) -> WatchedState:
        """The state to act on now: the cached Redis reading with the local file's newest
        content. Costs a ``stat`` (plus a small read when the file changed); never waits
        for the network."""
        if self._refresh_file():
            self._recompute()
        return self._state

    def engaged(self) -> bool:
        """True when :meth:`current` is ENGAGED."""
        return self.current().state is SwitchState.ENGAGED

    def wait_for(self, state: SwitchState, timeout_s: float) -> bool:
        """Block until :meth:`current` is ``state`` (tests, tools); False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.current().state is not state:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.01)
        return True

    # -- background work ---------------------------------------------------------------------
    def _refresh_file(self, force: bool = False) -> bool:
        """Re-read the file when its stat changed (or ``force``); True when the reading changed."""
        try:
            st = os.stat(self.switch.path)
            sig: tuple = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        except FileNotFoundError:
            sig = ("missing",)
        except OSError as exc:
            sig = ("error", exc.errno)
        if sig == self._file_sig and not force:
            return False
        with self._lock:
            self._file_sig = sig
            reading = self.switch.read_file()
            changed = reading != self._file
            self._file = reading
        return changed

    def _poll_loop(self) -> None:
        wait = self.poll_s
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            reading = self.switch.read_redis(WATCH_TIMEOUT_S)
            self.polls += 1
            if reading is not None and reading.record is None and reading.state is SwitchState.RELEASED:
                reading = self._restore_lost_engage(reading)
            self._redis = reading
            self._refresh_file(force=True)
            self._recompute()
            failing = reading is not None and reading.state is SwitchState.UNKNOWN
            wait = min(self.max_backoff_s, wait * 2) if failing else self.poll_s

    def _restore_lost_engage(self, empty: Reading) -> Reading:
        """Redis holds no record (restarted without persistence, key deleted) while this bot
        is latched: put the engage back (``SET NX``), so that a bot started now on any host
        still refuses to trade. Only a release record releases."""
        held = self._latched
        if held is None or held.get("source") != "redis":
            return empty
        record = {"state": "engaged", **{k: held.get(k) for k in ("id", "reason", "by", "since_ms")}}
        try:
            self.switch.client(WATCH_TIMEOUT_S).set(self.switch.key, json.dumps(record), nx=True)
            return parse_record(self.switch.client(WATCH_TIMEOUT_S).get(self.switch.key), "redis")
        except Exception as exc:  # noqa: BLE001 - Redis went again: unknown
            return Reading("redis", SwitchState.UNKNOWN, error=_short(exc))

    def _listen_loop(self) -> None:
        backoff = self.poll_s
        while not self._stop.is_set():
            try:
                pubsub = self.switch.client(WATCH_TIMEOUT_S).pubsub(ignore_subscribe_messages=True)
                self._pubsub = pubsub
                pubsub.subscribe(self.switch.channel)
                backoff = self.poll_s
                self._wake.set()  # (re)subscribed: read the key now, an event may have been missed
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=WATCH_TIMEOUT_S)
                    if message and message.get("type") == "message":
                        self._on_message(message.get("data"))
            except Exception:  # noqa: BLE001 - lost connection or timeout: back off, then resubscribe
                with contextlib.suppress(Exception):
                    self._pubsub.close()
                self._stop.wait(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    def _on_message(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (TypeError, ValueError):
            return
        if isinstance(event, dict) and event.get("event") == "engaged":
            record = {k: v for k, v in event.items() if k != "event"}
            self._redis = parse_record(json.dumps(record), "redis")
            self._recompute()
        self._wake.set()  # a release (or anything else): confirm by reading the key

    def _recompute(self) -> None:
        with self._lock:
            readings = [self._file] + ([self._redis] if self._redis is not None else [])
            status = combine(readings)
            previous = self._state
            if status.engaged:
                if self._latched is None:  # releases visible now are older than this engage
                    self._known_releases.update(r.release_id for r in readings if r.release_id)
                    self._latched = {"id": status.engage_id, "reason": status.reason, "by": status.by,
                                     "since_ms": status.since_ms,
                                     "source": "redis" if "redis" in status.source.split("+") else "file"}
                new = WatchedState(SwitchState.ENGAGED, status.reason, status.by, status.since_ms, status.source,
                                   status.unknown_reason)
            elif self._latched is not None:
                fresh = [r for r in readings if r.release_id and r.release_id not in self._known_releases]
                if status.released and fresh:
                    self._latched = None
                    self._known_releases.update(r.release_id for r in readings if r.release_id)
                    self._last_release = fresh[0].record
                    new = WatchedState(SwitchState.RELEASED, release=self._last_release)
                else:
                    held = self._latched
                    why = status.unknown_reason or "no release recorded since the engage"
                    new = WatchedState(SwitchState.ENGAGED, held["reason"], held["by"], held["since_ms"], "latched",
                                       why)
            else:
                self._known_releases.update(r.release_id for r in readings if r.release_id)
                new = (WatchedState(SwitchState.UNKNOWN, detail=status.unknown_reason)
                       if status.state is SwitchState.UNKNOWN
                       else WatchedState(SwitchState.RELEASED, release=self._last_release))
            self._state = new
        if new != previous and self.on_change is not None:
            with contextlib.suppress(Exception):
                self.on_change(new)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
