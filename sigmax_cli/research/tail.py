"""``sigmax signals tail``: a command-line consumer of the signal stream (``sigmax:signals``).

A consumer group is a :class:`~sigmax_cli.research.signals.SignalReader` name: its checkpoint
(``<stream>:checkpoint:<group>`` in Redis) says which entries it has finished. :func:`tail`
prints each entry after the checkpoint, oldest first, and advances the checkpoint after the
line is written and flushed (:meth:`SignalReader.consume`), so a restart resumes after the
last printed entry: nothing is skipped and nothing printed is printed again (an entry whose
line was written just before the process died, before its checkpoint ``SET``, is printed
once more: the window of one round trip that ``consume`` documents).

With a Pushgateway it pushes the stream's state (:func:`record_stream_state`): the newest
entry's time and age, the group's lag (unread entries and the oldest one's age) and the
entries this process consumed.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.research.signals import (
    Signal,
    SignalReader,
    check_stream,
    newest_signal_ms,
    server_time_ms,
)

BATCH = 100
"""Entries read per XREAD."""
POLL_MS = 1000
"""How long one XREAD waits for new entries with ``--follow`` (the stop flag is checked between)."""
PUSH_EVERY_S = 15.0
"""Seconds between pushes while ``--follow`` runs (a Prometheus scrape interval)."""


@dataclass(frozen=True)
class TailOptions:
    """What ``signals tail`` was asked for.

    Attributes:
        stream: the stream key (``research.stream``, ``sigmax:signals`` by default).
        group: the consumer group (reader) whose checkpoint is resumed and advanced.
        follow: keep waiting for new entries (until stopped or ``count``); else stop once caught up.
        count: stop after this many entries (``None``: no limit).
        create: start ``group`` at the oldest entry when it has no checkpoint yet.
        as_json: one JSON object per line instead of the readable line.
    """

    stream: str
    group: str
    follow: bool = False
    count: int | None = None
    create: bool = False
    as_json: bool = False


def iso_ms(ms: int) -> str:
    """UTC ms -> ``2026-12-03T20:58:55.123Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def text_line(signal: Signal) -> str:
    """``<time appended> <id> field=value ...`` (empty fields left out), e.g.
    ``2026-12-03T20:58:55.123Z 1796331535123-0 kind=sentiment coin=BTC score=0.231000 ...``."""
    fields = " ".join(f"{k}={v}" for k, v in signal.fields.items() if v not in ("", None))
    return f"{iso_ms(signal.ms)} {signal.id} {fields}".rstrip()


def json_line(signal: Signal, stream: str, group: str) -> str:
    """One JSON object: ``{"stream", "group", "id", "ms", "time", "fields"}`` (``ms``: when Redis
    appended the entry, UTC ms; ``fields``: the entry's fields as strings)."""
    return json.dumps({"stream": stream, "group": group, "id": signal.id, "ms": signal.ms,
                       "time": iso_ms(signal.ms), "fields": dict(signal.fields)}, separators=(",", ":"))


def open_reader(client: Any, options: TailOptions) -> SignalReader:
    """The group's reader, checked: the stream exists and the group has a checkpoint (created
    at the oldest entry with ``options.create``).

    Raises:
        ConfigError: unknown stream, a key that is not a stream, a bad group name, or a group
            without a checkpoint and no ``create``.
        StreamUnavailable: Redis failed.
    """
    reader = SignalReader(client, options.stream, options.group)
    check_stream(client, options.stream)
    if not reader.started:
        if not options.create:
            raise ConfigError(f"consumer group {options.group!r} has no checkpoint on {options.stream}",
                              "check the name, or pass --create to start it at the oldest entry")
        reader.start()
    return reader


def record_stream_state(metrics: Any, reader: SignalReader, newly_consumed: int) -> None:
    """Set the stream's gauges in ``metrics`` (a :class:`~sigmax_cli.observability.push.JobMetrics`):
    ``sigmax_signal_newest_timestamp_seconds`` and ``sigmax_signal_age_seconds`` (when the stream
    has an entry), ``sigmax_signal_consumer_lag_entries`` and ``..._lag_seconds`` (0 when caught
    up), and ``sigmax_signal_consumed_total`` raised by ``newly_consumed``. Ages use the Redis server's
    clock, as entry ids do.

    Raises:
        StreamUnavailable: Redis failed.
    """
    client, stream, group = reader.client, reader.stream, reader.reader
    now_ms = server_time_ms(client)
    newest = newest_signal_ms(client, stream)
    if newest is not None:
        metrics.metric("sigmax_signal_newest_timestamp_seconds").labels(stream).set(newest / 1000)
        metrics.metric("sigmax_signal_age_seconds").labels(stream).set(max(0, now_ms - newest) / 1000)
    unread, oldest = reader.backlog()
    metrics.metric("sigmax_signal_consumer_lag_entries").labels(stream, group).set(unread)
    metrics.metric("sigmax_signal_consumer_lag_seconds").labels(stream, group).set(
        0.0 if oldest is None else max(0, now_ms - oldest) / 1000)
    metrics.metric("sigmax_signal_consumed_total").labels(stream, group).inc(newly_consumed)


def tail(reader: SignalReader, options: TailOptions, write: Callable[[str], None], stop: threading.Event,
         on_batch: Callable[[int], None] | None = None) -> int:
    """Print the group's unread entries through ``write`` (one line each, checkpointed after
    the line is written); returns how many were printed.

    Stops when caught up (``follow`` false), after ``count`` entries, or when ``stop`` is set.
    ``on_batch(consumed so far)`` runs after each read (the caller pushes metrics there).

    Raises:
        StreamUnavailable: Redis failed (entries printed before stay checkpointed).
        OSError: ``write`` failed (the entry it was writing stays unread).
    """
    done = 0

    def handle(signal: Signal) -> None:
        write(json_line(signal, options.stream, options.group) if options.as_json else text_line(signal))

    while not stop.is_set():
        want = BATCH if options.count is None else min(BATCH, options.count - done)
        if want <= 0:
            break
        got = reader.consume(handle, count=want, block_ms=POLL_MS if options.follow else None)
        done += got
        if on_batch is not None:
            on_batch(done)
        if not got and not options.follow:
            break
    return done


class Throttle:
    """True at most once per ``every_s`` seconds (the first call is True)."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: float | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every_s:
            self._last = now
            return True
        return False
