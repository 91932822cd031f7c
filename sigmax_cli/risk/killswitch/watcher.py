"""A running bot's view of the kill switch (:class:`KillSwitchWatcher`): background polling and
pub/sub listening, a cached state the trading loop reads without waiting, and the latch."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sigmax_cli.risk.killswitch.state import Reading, SwitchState, combine, parse_record
from sigmax_cli.risk.killswitch.state import short_error as _short
from sigmax_cli.risk.killswitch.store import KillSwitch

if TYPE_CHECKING:
    from redis.client import PubSub

WATCH_TIMEOUT_S = 0.5    # connect and socket timeout of the watcher's polls
WATCH_POLL_S = 0.5       # seconds between the watcher's polls while Redis answers
WATCH_MAX_BACKOFF_S = 8.0  # longest wait between polls while Redis fails (doubling from WATCH_POLL_S)


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
        self._pubsub: PubSub | None = None
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
                    if self._pubsub is not None:
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
