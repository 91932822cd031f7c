"""Research signals on the Redis stream ``sigmax:signals``: publish, read incrementally, age.

Publishing (``sigmax research --publish``) appends one entry per configured coin with
items in the window, plus one for the whole market (``coin`` = ``*``), with
``XADD <stream> MAXLEN ~ <max_len> * field value ...`` in one pipeline (MULTI/EXEC), so the
stream stays near ``max_len`` entries (Redis trims whole macro nodes: "~" is cheap and
may keep a few more) and a run's entries land together. Fields (all strings, as Redis
stores them; empty string for "none")::

    kind          "sentiment"
    coin          ticker, or "*" for the overall market
    ts_ms         when the run aggregated (UTC ms)
    score         time-decayed mean sentiment in [-1, 1]
    mean          plain mean sentiment in [-1, 1]
    count         items in the window
    fear_greed    Fear & Greed value 0..100 ("" if unavailable)
    fear_greed_class  its classification ("Neutral", ...)

Reading: a :class:`SignalReader` named ``reader`` keeps its checkpoint (the last entry id
it finished) in Redis under ``<stream>:checkpoint:<reader>``. The checkpoint lives beside
the stream rather than in the ledger because (1) readers on several hosts share one Redis
but may each have their own SQLite ledger, (2) stream and checkpoint are backed up,
restored and flushed together, so a checkpoint never points into a different stream's id
space, and (3) advancing it is one ``SET`` on the connection already open.
:meth:`SignalReader.consume` hands entries to a handler one at a time and advances the
checkpoint after each handler returns; a restart resumes after the last finished entry, so
nothing is lost and nothing finished is handled again. (If the process dies between a
handler's return and the ``SET`` -- a window of one round trip -- that one entry is seen
again: handlers with outside effects should be idempotent per entry id.)

A reader's name is what ``sigmax signals tail --group NAME`` calls a consumer group
(:mod:`sigmax_cli.research.tail`): :meth:`SignalReader.start` creates its checkpoint,
:attr:`SignalReader.started` says whether it has one, and :meth:`SignalReader.backlog` counts
the entries after it (the group's lag).

:func:`newest_signal_age_ms` gives the age of the newest entry for ``sigmax health`` and
the risk layer's sentiment rule (whose value :func:`latest_signal` reads), measured on the
Redis server's clock (``TIME``) against the entry id's millisecond part (also the server's
clock), so host clock skew cannot make a signal look fresh or stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sigmax_cli.errors import ConfigError, SigmaxError

DEFAULT_STREAM = "sigmax:signals"
_ID = re.compile(r"^\d+-\d+$")
_READER = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class StreamUnavailable(SigmaxError):
    """Redis (the signal stream) cannot be reached or refused a command."""

    exit_code = 69  # EX_UNAVAILABLE, as LedgerError


def connect(url: str, timeout_s: float = 5.0):
    """A ``redis.Redis`` client for ``url`` (strings decoded), checked with ``PING``.

    Raises:
        ConfigError: the URL is malformed.
        StreamUnavailable: Redis does not answer.
    """
    import redis

    from sigmax_cli.settings import redact_url

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                      decode_responses=True)
    except ValueError:
        raise ConfigError(f"Redis URL {redact_url(url)!r} is malformed",
                          "use redis://[:PASSWORD@]HOST:PORT/DB in SIGMAX_REDIS_URL") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise _unavailable(url, exc) from None
    return client


def _unavailable(url: str, exc: Exception) -> StreamUnavailable:
    from sigmax_cli.settings import redact_url

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StreamUnavailable(f"cannot reach Redis at {redact_url(url)} ({reason[:160]})",
                             "start Redis or fix SIGMAX_REDIS_URL")


@dataclass(frozen=True)
class Signal:
    """One stream entry: its id (``<ms>-<seq>``) and its fields."""

    id: str
    fields: Mapping[str, str]

    @property
    def ms(self) -> int:
        """The entry id's time part: when Redis appended it, UTC ms (server clock)."""
        return int(self.id.split("-", 1)[0])

    def value(self, name: str) -> float | None:
        """A numeric field as float, ``None`` when empty or absent."""
        raw = self.fields.get(name, "")
        return float(raw) if raw not in ("", None) else None


def signal_fields(aggregates: Mapping[str, Any], fear_greed: Mapping[str, Any] | None,
                  ts_ms: int) -> list[dict[str, str]]:
    """Stream entries for one run's aggregates: one per coin with items, then ``*``."""
    fg_value = "" if not fear_greed else str(fear_greed["value"])
    fg_class = "" if not fear_greed else str(fear_greed["classification"])
    entries: list[dict[str, str]] = []
    coins = [(coin, agg) for coin, agg in aggregates["coins"].items() if agg["count"]]
    for coin, agg in [*coins, ("*", aggregates["overall"])]:
        entries.append({"kind": "sentiment", "coin": coin, "ts_ms": str(ts_ms), "score": _num(agg["decayed"]),
                        "mean": _num(agg["mean"]), "count": str(agg["count"]), "fear_greed": fg_value,
                        "fear_greed_class": fg_class})
    return entries


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def publish(client, stream: str, entries: list[dict[str, str]], max_len: int) -> list[str]:
    """Append ``entries`` to ``stream`` in one MULTI/EXEC with ``MAXLEN ~ max_len``; their ids.

    Raises:
        StreamUnavailable: Redis failed.
    """
    import redis

    if not entries:
        return []
    try:
        with client.pipeline(transaction=True) as pipe:
            for fields in entries:
                pipe.xadd(stream, fields, maxlen=max_len, approximate=True)
            return [str(i) for i in pipe.execute()]
    except redis.RedisError as exc:
        raise _unavailable(_client_url(client), exc) from None


class SignalReader:
    """Incremental reader of a signal stream with a checkpoint persisted in Redis.

    Args:
        client: a ``redis.Redis`` with ``decode_responses=True`` (see :func:`connect`).
        stream: the stream key (``sigmax:signals``).
        reader: this reader's name; readers with different names keep separate checkpoints.

    Raises:
        ConfigError: ``reader`` is empty or holds characters outside ``[A-Za-z0-9_.:-]``.
    """

    def __init__(self, client, stream: str, reader: str) -> None:
        if not _READER.match(reader or ""):
            raise ConfigError(f"consumer group name {reader!r} is not allowed",
                              "use letters, digits, '_', '.', ':' or '-'")
        self.client = client
        self.stream = stream
        self.reader = reader
        self.checkpoint_key = f"{stream}:checkpoint:{reader}"

    @property
    def checkpoint(self) -> str:
        """The id of the last entry this reader finished (``0-0`` before the first)."""
        value = self._call(self.client.get, self.checkpoint_key)
        return value if value and _ID.match(value) else "0-0"

    def read(self, count: int = 100, block_ms: int | None = None) -> list[Signal]:
        """Up to ``count`` entries after the checkpoint, oldest first; the checkpoint does not
        move (call :meth:`commit`). ``block_ms`` waits that long for new entries (None: no wait)."""
        answer = self._call(self.client.xread, {self.stream: self.checkpoint}, count=count, block=block_ms)
        if not answer:
            return []
        # redis-py answers [[stream, [(id, fields), ...]]] (RESP2) or {stream: [[...]]} (RESP3)
        entries = answer[0][1] if isinstance(answer, list) else next(iter(answer.values()))[0]
        return [Signal(str(entry_id), dict(fields)) for entry_id, fields in entries]

    @property
    def started(self) -> bool:
        """Whether this reader (consumer group) has a checkpoint on the stream yet."""
        return bool(self._call(self.client.exists, self.checkpoint_key))

    def start(self, at: str = "0-0") -> bool:
        """Create this reader's checkpoint at ``at`` (``0-0``: before the oldest entry) unless it
        has one (``SET NX``); whether it was created."""
        if not _ID.match(at):
            raise ValueError(f"{at!r} is not a stream entry id")
        return bool(self._call(self.client.set, self.checkpoint_key, at, nx=True))

    def backlog(self, limit: int = 100_000) -> tuple[int, int | None]:
        """Entries after the checkpoint (not yet finished) and the oldest one's time (UTC ms,
        ``None`` when there is none), counting at most ``limit`` (a stream is capped at
        ``research.stream_max_len``, 10,000 by default, so the count is exact in practice).

        Raises:
            StreamUnavailable: Redis failed.
        """
        entries = self._call(self.client.xrange, self.stream, f"({self.checkpoint}", "+", count=limit)
        return len(entries), (Signal(str(entries[0][0]), {}).ms if entries else None)

    def commit(self, signal_id: str) -> None:
        """Persist ``signal_id`` as finished: the next :meth:`read` (in any process) starts after it."""
        if not _ID.match(signal_id):
            raise ValueError(f"{signal_id!r} is not a stream entry id")
        self._call(self.client.set, self.checkpoint_key, signal_id)

    def consume(self, handler: Callable[[Signal], None], count: int = 100, block_ms: int | None = None) -> int:
        """Hand each entry after the checkpoint to ``handler``, advancing the checkpoint after
        each one returns; an exception from ``handler`` stops the batch with the checkpoint on
        the last finished entry and propagates. Returns the number of entries handled."""
        done = 0
        for signal in self.read(count=count, block_ms=block_ms):
            handler(signal)
            self.commit(signal.id)
            done += 1
        return done

    def _call(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise _unavailable(_client_url(self.client), exc) from None


def check_stream(client, stream: str) -> None:
    """Refuse a stream key that does not exist or holds another type.

    Raises:
        ConfigError: no key ``stream``, or it is not a stream.
        StreamUnavailable: Redis failed.
    """
    import redis

    try:
        kind = client.type(stream)
    except redis.RedisError as exc:
        raise _unavailable(_client_url(client), exc) from None
    if kind == "none":
        raise ConfigError(f"the signal stream {stream!r} does not exist in this Redis",
                          "check research.stream (SIGMAX_RESEARCH__STREAM) and SIGMAX_REDIS_URL, or publish first "
                          "with `sigmax research --publish`")
    if kind != "stream":
        raise ConfigError(f"the Redis key {stream!r} is a {kind}, not a stream",
                          "point research.stream (SIGMAX_RESEARCH__STREAM) at the signal stream")


def server_time_ms(client) -> int:
    """The Redis server's clock (``TIME``), UTC ms: the clock entry ids are made with.

    Raises:
        StreamUnavailable: Redis failed.
    """
    import redis

    try:
        seconds, micros = client.time()
    except redis.RedisError as exc:
        raise _unavailable(_client_url(client), exc) from None
    return int(seconds) * 1000 + int(micros) // 1000


def newest_signal_ms(client, stream: str = DEFAULT_STREAM) -> int | None:
    """When the newest entry of ``stream`` was appended (its id's time part, UTC ms, Redis
    server clock); ``None`` when the stream is empty or absent.

    Raises:
        StreamUnavailable: Redis failed.
    """
    import redis

    try:
        newest = client.xrevrange(stream, count=1)
    except redis.RedisError as exc:
        raise _unavailable(_client_url(client), exc) from None
    return Signal(str(newest[0][0]), {}).ms if newest else None


def newest_signal_age_ms(client, stream: str = DEFAULT_STREAM, now_ms: int | None = None) -> int | None:
    """Age of the newest entry of ``stream`` in ms, ``None`` when the stream is empty or absent.

    Args:
        now_ms: "now" in UTC ms; by default the Redis server's ``TIME`` (same clock as ids).

    Raises:
        StreamUnavailable: Redis failed.
    """
    newest = newest_signal_ms(client, stream)
    if newest is None:
        return None
    if now_ms is None:
        now_ms = server_time_ms(client)
    return max(0, now_ms - newest)


def latest_signal(client, stream: str = DEFAULT_STREAM, coin: str = "*", scan: int = 200) -> Signal | None:
    """The newest entry for ``coin`` (``*``: the whole market) among the newest ``scan``
    entries, or ``None``. For the risk layer: ``latest_signal(r).value("score")`` is the
    overall decayed sentiment in [-1, 1] and ``.ms`` when it was published (UTC ms).

    Raises:
        StreamUnavailable: Redis failed.
    """
    import redis

    try:
        entries = client.xrevrange(stream, count=scan)
    except redis.RedisError as exc:
        raise _unavailable(_client_url(client), exc) from None
    for entry_id, fields in entries:
        if fields.get("coin") == coin:
            return Signal(str(entry_id), dict(fields))
    return None


def _client_url(client) -> str:
    kwargs = getattr(client, "connection_pool", None)
    kwargs = getattr(kwargs, "connection_kwargs", {}) if kwargs else {}
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
