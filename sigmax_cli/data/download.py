"""Download OHLCV candles from an exchange into freqtrade's JSON layout, resumably.

:func:`download_ohlcv` pages through ``fetch_ohlcv(symbol, timeframe, since, limit=1000)``
(every call through :class:`~sigmax_cli.exchange.errors.RetryPolicy`: temporary errors are
retried with back-off, everything else is raised as a sigmax error) and writes
``<out_dir>/BTC_USDT-1h.json``, an array of ``[open_time_ms, open, high, low, close,
volume]`` rows (UTC ms; prices in quote currency; volume in base units).

* Only closed bars are kept: a bar whose ``open + timeframe`` is after the exchange's clock
  (``now_ms``) is still forming and is left for the next run.
* Resumable: an existing file is loaded, and only what lies before its first bar (when
  ``since_ms`` is earlier) and after its last bar is fetched, then merged.
* Validated: the merged rows go through :func:`sigmax_cli.data.candles.validate`; gaps
  (exchange maintenance) are reported in the result, never filled in.
* Atomic: the file is written once, at the end, to a temporary file in the same directory
  and moved over the old one with ``os.replace``. An interrupted or failed download leaves
  the previous file exactly as it was and no temporary file behind.

:func:`download_many` also saves the market rules of what it downloaded: ``<out_dir>/
markets.json``, a JSON object ``{"BTC/USDT": <ccxt unified market>, ...}`` (the dicts of
``exchange.markets``: precision, limits, fees, the exchange's raw ``info``), merged into the
file already there (downloaded symbols replaced, others kept) and written atomically after
the candle files. ``sigmax paper --data <out_dir>`` reads it for amount steps, price ticks
and minimums. An existing ``markets.json`` that cannot be read as such an object stops the
download before anything is fetched (:class:`DataError`); it is never replaced silently.

The engine has no UI: progress goes to a :class:`DownloadObserver`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sigmax_cli.data.candles import Candles, Gap, _iso, load_candles, symbol_to_filename, validate
from sigmax_cli.errors import ConfigError, DataError, TemporaryError
from sigmax_cli.exchange.client import (
    load_markets,
    require_market,
    require_timeframe,
    server_time_ms,
)
from sigmax_cli.exchange.errors import RetryPolicy, invoke
from sigmax_cli.files import write_atomic
from sigmax_cli.logs import get_logger
from sigmax_cli.markets import MARKETS_FILENAME, PRECISION_MODE_KEY
from sigmax_cli.timeframes import timeframe_to_ms

PAGE_LIMIT = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = get_logger(__name__)


class DownloadObserver(Protocol):
    """Receives progress of a download (a rich progress bar, plain lines, a test)."""

    def on_start(self, symbol: str, start_ms: int, end_ms: int) -> None:
        """``symbol`` begins; it covers open times ``start_ms`` to ``end_ms`` (UTC ms)."""
        ...

    def on_page(self, symbol: str, fetched_bars: int, last_ms: int) -> None:
        """One page brought ``fetched_bars`` new closed bars, the newest opening at ``last_ms``."""
        ...

    def on_done(self, result: DownloadResult) -> None:
        """``symbol`` is finished and its file written (when there was anything to write)."""
        ...


@dataclass(frozen=True)
class DownloadResult:
    """What one symbol's download left on disk.

    Attributes:
        path: the freqtrade JSON file, or ``None`` when there was no bar to write at all.
        bars_added: closed bars new in the file; ``bars_total`` bars it holds now.
        first_ms, last_ms: open times of its first and last bar (UTC ms), ``None`` if empty.
        gaps: missing bars inside the file (reported, never filled in).
    """

    path: Path | None
    symbol: str
    timeframe: str
    bars_added: int
    bars_total: int
    first_ms: int | None
    last_ms: int | None
    gaps: tuple[Gap, ...] = field(default_factory=tuple)

    @property
    def missing_bars(self) -> int:
        return sum(g.missing for g in self.gaps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``sigmax data download --json``)."""
        return {
            "path": str(self.path) if self.path else None,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "bars_added": self.bars_added,
            "bars_total": self.bars_total,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "first": _iso(self.first_ms) if self.first_ms is not None else None,
            "last": _iso(self.last_ms) if self.last_ms is not None else None,
            "gaps": [
                {
                    "after_ms": g.after_ms,
                    "before_ms": g.before_ms,
                    "after": _iso(g.after_ms),
                    "before": _iso(g.before_ms),
                    "missing_bars": g.missing,
                }
                for g in self.gaps
            ],
            "missing_bars": self.missing_bars,
        }


@dataclass(frozen=True)
class DownloadBatch:
    """What :func:`download_many` left on disk.

    Attributes:
        results: one :class:`DownloadResult` per symbol, in the order asked.
        markets_file: the ``markets.json`` written with the ccxt markets of the symbols that
            have a candle file; ``None`` when no symbol has one (then nothing is written).
    """

    results: tuple[DownloadResult, ...]
    markets_file: Path | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``sigmax data download --json``): ``files`` and ``markets_file``."""
        return {
            "files": [r.to_dict() for r in self.results],
            "markets_file": str(self.markets_file) if self.markets_file else None,
        }


def parse_date_ms(text: str, option: str = "--since") -> int:
    """An ISO date or date-time (``2021-01-01``, ``2021-01-01T12:30``, ``...Z``,
    ``...+02:00``) as UTC milliseconds; a time without an offset is UTC.

    Raises:
        ConfigError: not such a date; the sentence names ``option``.
    """
    value = (text or "").strip()
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is not a date",
            "use an ISO date such as 2021-01-01 or 2021-01-01T12:00 (UTC)",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(milliseconds=1)


def fetch_closed_bars(
    exchange: Any,
    symbol: str,
    timeframe: str,
    start_ms: int,
    end_ms: int | None,
    now_ms: int,
    *,
    retry: RetryPolicy | None = None,
    page_limit: int = PAGE_LIMIT,
    on_page: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Closed bars with ``start_ms <= open < end_ms`` and ``open + timeframe <= now_ms``.

    Pages forward with ``fetch_ohlcv(symbol, timeframe, since=cursor, limit=page_limit)``
    from ``start_ms``; stops when a page brings no new row, or reaches ``end_ms`` (``None``:
    no bound) or the forming bar.

    Returns:
        float64 array ``(n, 6)``: open time (UTC ms), open, high, low, close, volume;
        oldest first (validated by the caller).

    Raises:
        TemporaryError: still failing after the retries, or malformed rows (HTML page).
        ConfigError: the exchange does not know the symbol.
        ExchangeError: any other exchange-side failure.
    """
    policy = retry or RetryPolicy()
    tf = timeframe_to_ms(timeframe)
    out: list[list[float]] = []
    cursor = int(start_ms)
    while (end_ms is None or cursor < end_ms) and cursor + tf <= now_ms:
        since = cursor
        rows = policy.run(
            lambda since=since: _page(exchange, symbol, timeframe, since, page_limit),
            f"{exchange.id} {symbol} {timeframe} candles",
        )
        newer = [r for r in rows if r[0] >= since]
        fresh = [r for r in newer if (end_ms is None or r[0] < end_ms) and r[0] + tf <= now_ms]
        if not fresh:
            break
        fresh.sort(key=lambda r: r[0])
        out.extend(fresh)
        cursor = int(fresh[-1][0]) + tf
        if on_page is not None:
            on_page(len(fresh), int(fresh[-1][0]))
        if len(fresh) < len(newer):  # the page reached end_ms or the forming bar
            break
    return np.asarray(out, dtype=np.float64).reshape(-1, 6)


def _page(exchange: Any, symbol: str, timeframe: str, since: int, limit: int) -> list[list[float]]:
    rows = invoke(exchange, "fetch_ohlcv", symbol, timeframe, since=since, limit=limit)
    body = getattr(exchange, "last_http_response", None)  # ccxt keeps the raw text of the answer
    not_json = isinstance(body, str) and body.strip()[:1] not in ("[", "{")
    if (
        not_json
        or not isinstance(rows, list)
        or any(not isinstance(r, list | tuple) or len(r) < 6 or None in r[:6] for r in rows)
    ):
        raise TemporaryError(
            f"{exchange.id} answered {symbol} {timeframe} candles with malformed rows "
            "(not JSON OHLCV; a proxy or captive portal?)",
            "check your network or SIGMAX_EXCHANGE_API_URL, then retry",
        )
    return [[float(x) for x in r[:6]] for r in rows]


def download_ohlcv(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since_ms: int,
    out_dir: Path,
    until_ms: int | None = None,
    observer: DownloadObserver | None = None,
    now_ms: int | None = None,
    *,
    retry: RetryPolicy | None = None,
    page_limit: int = PAGE_LIMIT,
) -> DownloadResult:
    """Download (or resume) the closed ``timeframe`` bars of ``symbol`` into ``out_dir``.

    Args:
        exchange: a ccxt exchange from :func:`sigmax_cli.exchange.client.create_exchange`.
        symbol: unified symbol, ``BTC/USDT``; timeframe: ``1h`` etc.
        since_ms: first open time wanted (UTC ms); until_ms: open times before it only
            (exclusive; ``None``: up to the last closed bar).
        out_dir: directory of ``BTC_USDT-1h.json`` (created when missing).
        observer: progress receiver; now_ms: the exchange clock (UTC ms), asked of the
            exchange when ``None``. retry: back-off for temporary errors.

    Returns:
        :class:`DownloadResult` of the file now on disk.

    Raises:
        ConfigError: unknown symbol or timeframe, ``until_ms <= since_ms``, or an output
            directory that cannot be created.
        DataError: the existing file is corrupt, or the new rows are invalid, or the file
            cannot be written (the previous file is kept in all three cases).
        TemporaryError / ExchangeError: the exchange failed (after retries).
    """
    policy = retry or RetryPolicy()
    if until_ms is not None and until_ms <= since_ms:
        raise ConfigError(
            f"--until ({_iso(until_ms)}) is not after --since ({_iso(since_ms)})",
            "give an --until later than --since, or leave it out",
        )
    load_markets(exchange, retry=policy)
    require_timeframe(exchange, timeframe)
    require_market(exchange, symbol)
    tf = timeframe_to_ms(timeframe)
    now = int(now_ms) if now_ms is not None else server_time_ms(exchange, retry=policy)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output directory {out_dir} ({exc.strerror})",
            "check --out and its permissions",
        ) from exc
    path = out_dir / symbol_to_filename(symbol, timeframe)
    existing = _load_existing(path, symbol, timeframe)
    end = now if until_ms is None else min(until_ms, now)
    obs = observer or _NullObserver()
    obs.on_start(symbol, since_ms, end)

    segments: list[tuple[int, int | None]] = []
    if existing is not None and len(existing):
        first, last = int(existing.ts[0]), int(existing.ts[-1])
        if since_ms < first:
            segments.append((since_ms, first))
        segments.append((max(since_ms, last + tf), until_ms))
    else:
        segments.append((since_ms, until_ms))

    pages = [
        fetch_closed_bars(
            exchange,
            symbol,
            timeframe,
            start,
            stop,
            now,
            retry=policy,
            page_limit=page_limit,
            on_page=lambda n, last_ms: obs.on_page(symbol, n, last_ms),
        )
        for start, stop in segments
    ]
    new_rows = np.vstack(pages) if pages else np.empty((0, 6))
    before = len(existing) if existing is not None else 0
    if len(new_rows) == 0:
        result = _result(existing, path if existing is not None else None, symbol, timeframe, 0)
        obs.on_done(result)
        return result
    merged_raw = np.vstack([_raw(existing), new_rows]) if existing is not None else new_rows
    merged = validate(merged_raw, symbol, timeframe, tf, path)
    write_candles_json(path, merged)
    result = _result(merged, path, symbol, timeframe, len(merged) - before)
    log.info(
        "%s %s: %d new bars, %d in %s",
        symbol,
        timeframe,
        result.bars_added,
        result.bars_total,
        path,
    )
    obs.on_done(result)
    return result


def download_many(
    exchange: Any,
    symbols: Iterable[str],
    timeframe: str,
    since_ms: int,
    out_dir: Path,
    until_ms: int | None = None,
    observer: DownloadObserver | None = None,
    now_ms: int | None = None,
    *,
    retry: RetryPolicy | None = None,
) -> DownloadBatch:
    """:func:`download_ohlcv` for several symbols, one file each, checked up front, then the
    symbols' ccxt markets merged into ``<out_dir>/markets.json``.

    Every symbol and the timeframe are checked against the exchange's markets, and an
    existing ``markets.json`` is read, before the first download, so a typo or a corrupt
    file fails before anything is fetched. The exchange clock is read once, so that all
    files end at the same closed bar. ``markets.json`` is written (atomically) only after
    every candle file, with the markets of the symbols that have one; a failed run leaves
    it as it was. Arguments are those of :func:`download_ohlcv`.

    Returns:
        :class:`DownloadBatch`: the per-symbol results and the markets file written.

    Raises:
        ConfigError: no symbol, an unknown symbol or timeframe, or ``until_ms <= since_ms``.
        DataError: the existing ``markets.json`` (or a candle file) is corrupt, left as it
            is; or a file cannot be written.
        TemporaryError / ExchangeError: the exchange failed (after retries).
    """
    policy = retry or RetryPolicy()
    symbols = list(symbols)
    if not symbols:
        raise ConfigError("no symbol to download", "pass --symbols, e.g. BTC/USDT,ETH/USDT")
    load_markets(exchange, retry=policy)
    require_timeframe(exchange, timeframe)
    for symbol in symbols:
        require_market(exchange, symbol)
    markets_path = Path(out_dir) / MARKETS_FILENAME
    saved_markets = read_markets_json(markets_path)  # a corrupt file stops us here, before any download
    now = int(now_ms) if now_ms is not None else server_time_ms(exchange, retry=policy)
    results = tuple(
        download_ohlcv(
            exchange, symbol, timeframe, since_ms, out_dir, until_ms, observer, now, retry=policy
        )
        for symbol in symbols
    )
    # each market carries the exchange's precisionMode, so a replay reads its precision as ccxt does
    on_disk = {r.symbol: {**exchange.markets[r.symbol], PRECISION_MODE_KEY: exchange.precisionMode}
               for r in results if r.path is not None}
    written = merge_markets_json(markets_path, saved_markets, on_disk) if on_disk else None
    return DownloadBatch(results, written)


def read_markets_json(path: Path) -> dict[str, dict[str, Any]]:
    """The ccxt markets saved in ``path``, keyed by unified symbol; ``{}`` when it does not exist.

    Accepts what :func:`sigmax_cli.markets.load_markets_file` accepts: a JSON object
    ``{symbol: market}``, or an array of markets each with a ``"symbol"``.

    Raises:
        DataError: the file cannot be read, is not JSON, or is not such an object or array
            (the sentence names the file and says to move it away or delete it).
    """
    path = Path(path)
    fix = "move it away or delete it, then download again (it is rebuilt from the exchange)"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # no file yet (or --out is no directory: reported later)
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise DataError(f"the existing markets file {path} is not readable JSON ({reason})", fix) from None
    if isinstance(doc, list) and all(isinstance(m, dict) and isinstance(m.get("symbol"), str) for m in doc):
        return {m["symbol"]: m for m in doc}
    if isinstance(doc, dict) and all(isinstance(m, dict) for m in doc.values()):
        return dict(doc)
    raise DataError(f"the existing markets file {path} does not hold ccxt markets keyed by symbol", fix)


def merge_markets_json(path: Path, saved: Mapping[str, Mapping[str, Any]],
                       markets: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``saved`` (what :func:`read_markets_json` read from ``path`` before the download)
    updated with ``markets`` (unified symbol -> ccxt market dict) back to ``path``
    atomically (:func:`write_text_atomic`): downloaded symbols replaced, the others kept.

    The file is a JSON object sorted by symbol, 2-space indented. NaN and infinite numbers
    (ccxt passes an exchange's ``"NaN"`` through) are written as ``null``, ccxt's own
    "unknown", so the file is strict JSON.

    Returns:
        ``path``.

    Raises:
        DataError: the file cannot be written (the previous one is kept).
    """
    path = Path(path)
    merged = dict(saved)
    merged.update({symbol: dict(market) for symbol, market in markets.items()})
    doc = {symbol: _json_safe(merged[symbol]) for symbol in sorted(merged)}
    write_text_atomic(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")
    log.info("markets of %s saved in %s", ", ".join(sorted(markets)), path)
    return path


def _json_safe(value: Any) -> Any:
    """``value`` as plain JSON types: NaN / infinity -> ``None``, tuples -> lists, unknown
    objects -> their ``str``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def write_candles_json(path: Path, candles: Candles) -> None:
    """Write ``candles`` as freqtrade JSON (rows of ``[open_time_ms, o, h, l, c, v]``),
    atomically (:func:`write_text_atomic`).

    Raises:
        DataError: the file cannot be written; the previous file (if any) is untouched
            and the temporary file removed.
    """
    write_text_atomic(path, json.dumps(candles.rows(), separators=(",", ":"), allow_nan=False))


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` (UTF-8) atomically (:func:`sigmax_cli.files.write_atomic`).
    The file keeps the mode of the one it replaces (a new file gets ``0o666`` less the umask).

    Raises:
        DataError: the file cannot be written (no space, no permission); the previous file
            (if any) is untouched and the temporary file removed.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    try:
        write_atomic(path, text, mode=mode)
    except OSError as exc:
        raise DataError(
            f"cannot write {path} ({exc.strerror})",
            "check free space and permissions of the output directory",
        ) from exc


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _load_existing(path: Path, symbol: str, timeframe: str) -> Candles | None:
    if not path.exists():
        return None
    try:
        return load_candles(path, symbol, timeframe)
    except DataError as exc:
        raise DataError(
            f"the existing file {path} cannot be resumed ({exc.cause})",
            "move it away or delete it, then download again",
        ) from exc


def _raw(c: Candles) -> np.ndarray:
    return np.column_stack(
        [c.ts.astype(np.float64), c.open, c.high, c.low, c.close, c.volume]
    ).reshape(-1, 6)


def _result(
    c: Candles | None, path: Path | None, symbol: str, timeframe: str, added: int
) -> DownloadResult:
    n = len(c) if c is not None else 0
    return DownloadResult(
        path=path,
        symbol=symbol,
        timeframe=timeframe,
        bars_added=added,
        bars_total=n,
        first_ms=int(c.ts[0]) if n else None,
        last_ms=int(c.ts[-1]) if n else None,
        gaps=tuple(c.gaps) if c is not None else (),
    )


class _NullObserver:
    def on_start(self, symbol: str, start_ms: int, end_ms: int) -> None:
        pass

    def on_page(self, symbol: str, fetched_bars: int, last_ms: int) -> None:
        pass

    def on_done(self, result: DownloadResult) -> None:
        pass
