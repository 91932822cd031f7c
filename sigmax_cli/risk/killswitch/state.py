"""The kill switch's records and states: what a store holds (:class:`Reading`) and what all
stores together say (:class:`KillSwitchStatus`, :func:`combine`). Pure values and rules: no I/O
but the clock and the user/host name recorded with a write."""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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


def short_error(exc: BaseException) -> str:
    """The first line of ``exc`` (at most 200 characters), or its type's name."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
