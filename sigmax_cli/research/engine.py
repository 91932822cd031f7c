"""``sigmax research``: one entry point, :func:`research`, that gathers, scores, stores,
aggregates and (optionally) publishes, once or on an interval.

One run:

1. every selected source (:func:`build_sources`) fetches in parallel (a thread each, I/O
   bound); a source raising :class:`~sigmax_cli.research.base.SourceError` -- or anything
   else -- is reported ``degraded`` and the run goes on;
2. items get their coins (:class:`~sigmax_cli.research.coins.CoinDetector`, title and
   summary, plus CryptoPanic's own tags) and a sentiment score (title,
   :func:`~sigmax_cli.research.sentiment.score`);
3. they are stored in the ledger, de-duplicated on ``(source, guid)``; those inserted now
   are ``new``; then the sources' conditional-GET validators are remembered;
4. aggregates are computed over the ledger's items in the lookback window
   (:mod:`~sigmax_cli.research.aggregate`), so a feed answering 304 still counts;
5. with ``publish``, one stream entry per coin plus one overall go to Redis
   (:mod:`~sigmax_cli.research.signals`).

Exit codes (:attr:`ResearchResult.exit_code`; ``sigmax research`` exits with it):

==  =================================================================================
0   every source that ran answered (``ok`` or ``not_modified``; ``skipped`` is fine)
1   some sources failed (``degraded``), others worked: results are partial
69  every source that ran failed (EX_UNAVAILABLE): nothing was gathered
2   bad input (unknown source, malformed feed URL, bad setting): raised as ConfigError
==  =================================================================================
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sigmax_cli.errors import ConfigError, SigmaxError
from sigmax_cli.logs import get_logger
from sigmax_cli.research.base import Fetched, ScoredItem, Source, SourceError, SourceStatus

log = get_logger(__name__)

KINDS = ("rss", "feargreed", "coingecko", "cryptopanic")
EXIT_OK = 0
EXIT_DEGRADED = 1
EXIT_UNAVAILABLE = 69
MAX_WORKERS = 8


class AllSourcesFailed(SigmaxError):
    """Every research source that ran failed: nothing was gathered (exit 69)."""

    exit_code = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class ResearchOptions:
    """How :func:`research` runs (sources, feeds and symbols come from the settings).

    Attributes:
        publish: append signals to the Redis stream (needs ``SIGMAX_REDIS_URL``).
        watch: keep running every ``interval_s`` seconds until stopped.
        interval_s: seconds between the starts of two runs with ``watch``.
        max_runs: stop after this many runs (``None``: until the stop event).
    """

    publish: bool = False
    watch: bool = False
    interval_s: float = 300.0
    max_runs: int | None = None


@dataclass
class ResearchResult:
    """One run's outcome.

    Attributes:
        run: 1 for the first run of a ``research`` call, 2 for the next (watch), ...
        run_at_ms: when the run started, UTC ms (the aggregates' "now").
        items: what the sources returned this run, newest first.
        sources: one status per selected source, in selection order.
        aggregates: ``{"overall", "coins", "window", "fear_greed"}`` (see ``aggregate``).
        market: CoinGecko data per ticker (``{}`` when not fetched).
        published: ``{"stream", "ids"}`` when signals were published, else ``None``.
        elapsed_s: seconds the run took.
    """

    run: int
    run_at_ms: int
    items: list[ScoredItem]
    sources: list[SourceStatus]
    aggregates: dict[str, Any]
    market: dict[str, Any] = field(default_factory=dict)
    published: dict[str, Any] | None = None
    elapsed_s: float = 0.0

    @property
    def new_count(self) -> int:
        return sum(1 for si in self.items if si.new)

    @property
    def fear_greed(self) -> dict[str, Any] | None:
        return self.aggregates.get("fear_greed")

    @property
    def exit_code(self) -> int:
        """See the module docstring: 0 ok, 1 some sources failed, 69 all failed."""
        ran = [s for s in self.sources if s.status != "skipped"]
        failed = [s for s in ran if s.failed]
        if not failed:
            return EXIT_OK
        return EXIT_UNAVAILABLE if len(failed) == len(ran) else EXIT_DEGRADED


def build_sources(settings) -> list[Source]:
    """The sources selected by ``settings.research.sources``, in that order (feeds expanded).

    Raises:
        ConfigError: an unknown source name, a malformed feed, or a duplicate.
    """
    from sigmax_cli.research.coingecko import CoinGeckoSource
    from sigmax_cli.research.cryptopanic import CryptoPanicSource
    from sigmax_cli.research.feargreed import FearGreedSource
    from sigmax_cli.research.rss import feed_sources

    cfg = settings.research
    names = [n.strip().lower() for n in cfg.sources if n.strip()]
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        raise ConfigError(f"unknown research source {unknown[0]!r}", f"choose from {', '.join(KINDS)}")
    if not names:
        raise ConfigError("no research source is selected", f"give --sources with some of {', '.join(KINDS)}")
    sources: list[Source] = []
    for name in dict.fromkeys(names):
        if name == "rss":
            sources.extend(feed_sources(cfg.feeds))
        elif name == "feargreed":
            sources.append(FearGreedSource(cfg.feargreed_url))
        elif name == "coingecko":
            sources.append(CoinGeckoSource(cfg.coingecko_url, cfg.market_coins))
        else:
            key = cfg.cryptopanic_key.get_secret_value() if cfg.cryptopanic_key else None
            sources.append(CryptoPanicSource(cfg.cryptopanic_url, key, cfg.symbols))
    if all(src.skip_reason() for src in sources):
        reasons = "; ".join(src.skip_reason() or "" for src in sources)
        raise ConfigError(f"no selected research source can run ({reasons})", "select other --sources")
    return sources


def research(settings, options: ResearchOptions, stop: threading.Event | None = None,
             on_result: Callable[[ResearchResult], None] | None = None,
             clock: Callable[[], int] | None = None) -> ResearchResult:
    """Run research once (or repeatedly with ``options.watch``); returns the last result.

    Args:
        settings: the invocation's :class:`~sigmax_cli.settings.Settings`.
        options: publish / watch / interval / max runs.
        stop: set it to end a watch after the current run (Ctrl-C, SIGTERM, a test).
        on_result: called with each run's result as soon as it is ready.
        clock: "now" in UTC ms (tests); the wall clock by default.

    Raises:
        ConfigError: unknown source, malformed feed, ``publish`` without Redis, bad symbol.
        LedgerError: the ledger cannot be opened or written.
        StreamUnavailable: ``publish`` and Redis does not answer at start.
    """
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.research.coins import CoinDetector
    from sigmax_cli.research.http import HttpClient
    from sigmax_cli.research.store import ResearchStore

    cfg = settings.research
    if options.watch and options.interval_s <= 0:
        raise ConfigError(f"--interval {options.interval_s:g} must be more than 0 seconds",
                          "give the seconds between runs, e.g. --interval 300")
    sources = build_sources(settings)
    try:
        detector = CoinDetector(cfg.symbols)
    except ValueError as exc:
        raise ConfigError(f"research symbols: {exc}", "give tickers such as --symbols BTC,ETH") from None
    redis_client = _redis_for(settings) if options.publish else None
    stop = stop or threading.Event()
    clock = clock or (lambda: int(time.time() * 1000))
    result: ResearchResult | None = None
    try:
        with Ledger(settings.ledger_url) as ledger:
            store = ResearchStore(ledger)
            with HttpClient(cfg.http_timeout_seconds, cfg.http_retries, cache=store) as http, \
                    ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(sources))),
                                       thread_name_prefix="research") as pool:
                run = 0
                while True:
                    run += 1
                    started = time.monotonic()
                    result = _run_once(run, clock(), sources, http, pool, store, detector, settings, redis_client)
                    result.elapsed_s = time.monotonic() - started
                    if on_result is not None:
                        on_result(result)
                    if not options.watch or stop.is_set() or (options.max_runs and run >= options.max_runs):
                        return result
                    if stop.wait(max(0.0, options.interval_s - result.elapsed_s)):
                        return result
    finally:
        if redis_client is not None:
            redis_client.close()


def _redis_for(settings):
    from sigmax_cli.research.signals import connect

    if settings.redis_url is None:
        raise ConfigError("--publish needs Redis", "set SIGMAX_REDIS_URL=redis://HOST:6379/0 or drop --publish")
    return connect(settings.redis_url.get_secret_value())


def _fetch(source: Source, http) -> tuple[Fetched | None, str, float]:
    started = time.monotonic()
    try:
        return source.fetch(http), "", time.monotonic() - started
    except SourceError as exc:
        log.info("research source %s degraded: %s", source.name, exc.cause)
        return None, exc.cause, time.monotonic() - started
    except Exception as exc:  # one broken source never fails the run
        log.debug("research source %s raised", source.name, exc_info=True)
        return None, f"{source.name}: unexpected {type(exc).__name__}: {str(exc)[:200]}", time.monotonic() - started


def _run_once(run: int, now: int, sources: list[Source], http, pool: ThreadPoolExecutor, store, detector,
              settings, redis_client) -> ResearchResult:
    from sigmax_cli.research.aggregate import aggregate
    from sigmax_cli.research.sentiment import score

    cfg = settings.research
    skipped = {src.name: src.skip_reason() for src in sources}
    runnable = [src for src in sources if not skipped[src.name]]
    # the pool lives as long as the research() call, so its threads (and their HTTP sessions) are reused
    outcomes = dict(zip([s.name for s in runnable], pool.map(lambda s: _fetch(s, http), runnable), strict=True))
    wanted = set(detector.symbols)
    scored: list[ScoredItem] = []
    context: dict[str, Any] = {}
    validators: list[tuple[str, str | None, str | None]] = []
    for src in runnable:
        fetched = outcomes[src.name][0]
        if fetched is None:
            continue
        context.update(fetched.context)
        validators.extend(fetched.validators)
        for it in fetched.items:
            coins = detector.detect(it.title, it.summary)
            extra = [t for t in it.tags if t in wanted and t not in coins]
            ordered = tuple(sym for sym in detector.symbols if sym in coins or sym in extra)
            scored.append(ScoredItem(it, ordered, score(it.title)))
    new_keys = store.add_items(scored, seen_ms=now)
    http.remember(validators)
    scored = [ScoredItem(si.item, si.coins, si.sentiment, (si.item.source, si.item.guid) in new_keys)
              for si in scored]
    scored.sort(key=lambda si: (si.item.published_ms or 0), reverse=True)
    statuses: list[SourceStatus] = []
    for src in sources:
        if skipped[src.name]:
            statuses.append(SourceStatus(src.name, src.kind, "skipped", detail=skipped[src.name] or ""))
            continue
        fetched, error, elapsed = outcomes[src.name]
        if fetched is None:
            statuses.append(SourceStatus(src.name, src.kind, "degraded", detail=error, elapsed_s=elapsed))
            continue
        mine = [si for si in scored if si.item.source == src.name]
        state = "degraded" if fetched.errors else ("not_modified" if fetched.not_modified else "ok")
        detail = "; ".join([*fetched.errors, *fetched.notes])
        statuses.append(SourceStatus(src.name, src.kind, state, items=len(mine), new=sum(si.new for si in mine),
                                     detail=detail, elapsed_s=elapsed))
    window = store.items_since(now - int(cfg.lookback_hours * 3_600_000))
    aggregates = aggregate(window, list(detector.symbols), now, cfg.half_life_hours, cfg.lookback_hours)
    aggregates["fear_greed"] = context.get("fear_greed")
    result = ResearchResult(run=run, run_at_ms=now, items=scored, sources=statuses, aggregates=aggregates,
                            market=context.get("market", {}))
    if redis_client is not None:
        _publish(result, redis_client, cfg)
    return result


def _publish(result: ResearchResult, client, cfg) -> None:
    from sigmax_cli.research.signals import StreamUnavailable, publish, signal_fields

    entries = signal_fields(result.aggregates, result.fear_greed, result.run_at_ms)
    try:
        ids = publish(client, cfg.stream, entries, cfg.stream_max_len)
    except StreamUnavailable as exc:  # a watch keeps going; this run reports it
        result.sources.append(SourceStatus("redis", "publish", "degraded", detail=exc.cause))
        return
    result.published = {"stream": cfg.stream, "ids": ids}
