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

Modules: :mod:`~sigmax_cli.risk.killswitch.state` (records, readings, the combined status),
:mod:`~sigmax_cli.risk.killswitch.store` (the file and Redis stores: :class:`KillSwitch`) and
:mod:`~sigmax_cli.risk.killswitch.watcher` (:class:`KillSwitchWatcher`). Callers import from
this package.
"""

from __future__ import annotations

from sigmax_cli.risk.killswitch.state import (
    KillSwitchStatus,
    Reading,
    SwitchState,
    combine,
    engage_record,
    parse_record,
    who,
)
from sigmax_cli.risk.killswitch.store import (
    DEFAULT_PREFIX,
    FILE_NAME,
    READ_TIMEOUT_S,
    WRITE_TIMEOUT_S,
    KillSwitch,
)
from sigmax_cli.risk.killswitch.watcher import (
    WATCH_MAX_BACKOFF_S,
    WATCH_POLL_S,
    WATCH_TIMEOUT_S,
    KillSwitchWatcher,
    WatchedState,
)

__all__ = [
    "DEFAULT_PREFIX", "FILE_NAME", "READ_TIMEOUT_S", "WATCH_MAX_BACKOFF_S", "WATCH_POLL_S", "WATCH_TIMEOUT_S",
    "WRITE_TIMEOUT_S", "KillSwitch", "KillSwitchStatus", "KillSwitchWatcher", "Reading", "SwitchState",
    "WatchedState", "combine", "engage_record", "parse_record", "who",
]
