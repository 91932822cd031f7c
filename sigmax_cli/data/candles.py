"""OHLCV candles: loading freqtrade's on-disk layout and CSV, validation, gap reports.

Accepted files (one symbol and timeframe per file):

* freqtrade JSON: ``BTC_USDT-1h.json`` / ``.json.gz``, an array of
  ``[timestamp_ms, open, high, low, close, volume]`` rows (volume in base units);
* freqtrade feather: ``BTC_USDT-1h.feather``, columns ``date`` (UTC) or ``timestamp``,
  ``open, high, low, close, volume``;
* CSV with a header naming a time column (``timestamp``, ``timestamp_ms``, ``date``,
  ``unix``, ``time``; ms, s or ISO dates) and open/high/low/close/volume columns
  (any case; ``volume_base`` / ``volume_btc`` accepted), with an optional banner line
  above the header (CryptoDataDownload files). Newest-first files are sorted.

Validation (:func:`validate`) refuses NaN, non-positive prices, negative volume,
``high < max(open, close)``, ``low > min(open, close)`` and conflicting duplicate
timestamps; it reports gaps (missing bars) without ever filling them in.

Repeated and out-of-order rows are reported, not refused: an exact repeat of a row carries no
conflicting information (files assembled by appending overlapping downloads have them) and is
dropped; rows out of time order are sorted. Both are counted with their first example in
:attr:`Candles.duplicates` / :attr:`Candles.out_of_order`, and :meth:`Candles.warnings` says
so in one sentence each (``data check`` and ``paper`` print them, ``--json`` carries them, and
the run's data files in the ledger keep the counts). A file wholly newest-first (the
CryptoDataDownload layout) is a known layout, not out of order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sigmax_cli.errors import ConfigError, DataError
from sigmax_cli.timeframes import timeframe_to_ms

SUFFIXES = (".json", ".json.gz", ".feather", ".csv")
_NAME_RE = re.compile(r"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+?)-(?P<tf>\d+[smhdwM])(?P<rest>-[a-z_-]+)?$")


@dataclass(frozen=True)
class Gap:
    """Missing bars between two consecutive candles.

    Attributes:
        after_ms: open time of the last bar before the gap (UTC ms).
        before_ms: open time of the first bar after the gap (UTC ms).
        missing: number of bars absent in between.
    """

    after_ms: int
    before_ms: int
    missing: int


@dataclass(frozen=True)
class Anomaly:
    """Rows of a file that were repeated or out of time order (reported, then repaired).

    Attributes:
        count: how many rows: repeats dropped, or rows that came after a later candle.
        first_ms: open time (UTC ms) of the first such row in file order.
        row: its 1-based row number in the file (data rows, header not counted).
        after_ms: for an out-of-order row, the open time of the row before it; else ``None``.
    """

    count: int
    first_ms: int
    row: int
    after_ms: int | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"count": self.count, "first": _iso(self.first_ms), "row": self.row}
        if self.after_ms is not None:
            out["after"] = _iso(self.after_ms)
        return out


@dataclass
class Candles:
    """Validated OHLCV bars of one symbol and timeframe, oldest first.

    Arrays all have shape ``(n,)``: ``ts`` int64 open times in UTC ms; ``open``, ``high``,
    ``low``, ``close`` float64 in quote currency; ``volume`` float64 in base units.
    """

    symbol: str
    timeframe: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: Path | None = None
    sha256: str | None = None
    gaps: list[Gap] = field(default_factory=list)
    duplicates: Anomaly | None = None
    out_of_order: Anomaly | None = None

    def warnings(self) -> list[str]:
        """One sentence per anomaly of the file (repeated rows, rows out of time order)."""
        where = self.source.name if self.source is not None else self.symbol
        out = []
        if self.duplicates is not None:
            d = self.duplicates
            out.append(f"{where}: {d.count} candle row(s) repeat an earlier one (first: row {d.row}, "
                       f"{_iso(d.first_ms)}); the repeats were identical and were dropped")
        if self.out_of_order is not None:
            o = self.out_of_order
            out.append(f"{where}: {o.count} candle row(s) out of time order (first: row {o.row}, "
                       f"{_iso(o.first_ms)} after {_iso(o.after_ms or 0)}); they were sorted")
        return out

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @property
    def tf_ms(self) -> int:
        return timeframe_to_ms(self.timeframe)

    @property
    def dropped_duplicates(self) -> int:
        """Exact repeat rows dropped while reading (:attr:`duplicates`'s count)."""
        return self.duplicates.count if self.duplicates is not None else 0

    @property
    def missing_bars(self) -> int:
        return sum(g.missing for g in self.gaps)

    def rows(self) -> list[tuple[int, float, float, float, float, float]]:
        """The bars as freqtrade rows ``(ts_ms, open, high, low, close, volume)``, oldest first,
        as Python ints and floats."""
        return list(zip(self.ts.tolist(), self.open.tolist(), self.high.tolist(), self.low.tolist(),
                        self.close.tolist(), self.volume.tolist(), strict=True))

    def slice(self, start_ms: int | None = None, end_ms: int | None = None) -> Candles:
        """Bars with ``start_ms <= ts < end_ms`` (either bound optional); gaps recomputed."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.ts, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.ts, end_ms, side="left"))
        sub = Candles(
            self.symbol, self.timeframe, self.ts[lo:hi], self.open[lo:hi], self.high[lo:hi],
            self.low[lo:hi], self.close[lo:hi], self.volume[lo:hi], self.source, self.sha256,
        )
        sub.gaps = find_gaps(sub.ts, self.tf_ms)
        sub.duplicates, sub.out_of_order = self.duplicates, self.out_of_order  # the file's, as read
        return sub

    def to_pandas(self):
        """A ``pandas.DataFrame`` with a UTC ``DatetimeIndex`` named ``date``."""
        import pandas as pd

        return pd.DataFrame(
            {"open": self.open, "high": self.high, "low": self.low, "close": self.close, "volume": self.volume},
            index=pd.to_datetime(self.ts, unit="ms", utc=True).rename("date"),
        )


def parse_filename(path: Path) -> tuple[str, str] | None:
    """``BTC_USDT-1h.json`` -> ``("BTC/USDT", "1h")``; ``None`` if not freqtrade-named.

    Futures names such as ``XRP_USDT_USDT-1h-futures.feather`` give ``XRP/USDT:USDT``.
    """
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        return None
    match = _NAME_RE.match(name)
    if not match:
        return None
    parts = match.group("pair").upper().split("_")
    symbol = f"{parts[0]}/{parts[1]}" + (f":{parts[2]}" if len(parts) > 2 else "")
    return symbol, match.group("tf")


def symbol_to_filename(symbol: str, timeframe: str, suffix: str = ".json") -> str:
    """``("BTC/USDT", "1h")`` -> ``"BTC_USDT-1h.json"`` (freqtrade's layout)."""
    return symbol.replace("/", "_").replace(":", "_") + f"-{timeframe}{suffix}"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_candles(path: Path, symbol: str | None = None, timeframe: str | None = None) -> Candles:
    """Load and validate one candle file.

    Args:
        path: a ``.json``, ``.json.gz``, ``.feather`` or ``.csv`` file.
        symbol, timeframe: taken from a freqtrade-style file name when omitted.

    Raises:
        DataError: missing, unreadable, corrupt or invalid file (the sentence names it).
        ConfigError: symbol or timeframe cannot be told from the name and were not given.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"candle file {path} does not exist", "check the --data path")
    parsed = parse_filename(path)
    symbol = symbol or (parsed[0] if parsed else None)
    timeframe = timeframe or (parsed[1] if parsed else None)
    if symbol is None or timeframe is None:
        raise ConfigError(
            f"cannot tell the symbol and timeframe of {path.name}",
            "name it like BTC_USDT-1h.csv or pass --symbols and --timeframe",
        )
    tf_ms = timeframe_to_ms(timeframe)
    try:
        raw = _read(path)
    except DataError:
        raise
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read candle file {path}: {exc}", "check the file and its permissions") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(
            f"candle file {path} is corrupt or not OHLCV ({exc})",
            "re-download it with `sigmax data download`",
        ) from exc
    candles = validate(raw, symbol, timeframe, tf_ms, path)
    candles.source = path
    candles.sha256 = sha256_file(path)
    return candles


def _read(path: Path) -> np.ndarray:
    """Raw rows as a float64 array of shape (n, 6): ts_ms, o, h, l, c, v."""
    name = path.name.lower()
    if name.endswith(".json.gz"):
        with gzip.open(path, "rb") as fh:
            return _json_rows(json.loads(fh.read()), path)
    if name.endswith(".json"):
        with path.open("rb") as fh:
            return _json_rows(json.loads(fh.read()), path)
    if name.endswith(".feather"):
        return _frame_rows(_read_feather(path), path)
    if name.endswith(".csv"):
        return _frame_rows(_read_csv(path), path)
    raise DataError(f"unsupported candle file type {path.name}", f"use one of {', '.join(SUFFIXES)}")


def _json_rows(doc, path: Path) -> np.ndarray:
    if isinstance(doc, dict) and {"date", "open", "close"} <= set(doc):
        import pandas as pd  # pandas "columns" orient (DataFrame.to_json)

        return _frame_rows(pd.DataFrame(doc), path)
    if not isinstance(doc, list):
        raise DataError(f"candle file {path} is not a JSON array of OHLCV rows", "check its format")
    if not doc:
        return np.empty((0, 6))
    arr = np.asarray(doc, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 6:
        raise DataError(
            f"candle file {path} rows are not [timestamp_ms, open, high, low, close, volume]",
            "check its format",
        )
    return arr[:, :6]


def _read_feather(path: Path):
    import pyarrow.feather as feather

    try:
        return feather.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises ArrowInvalid and friends
        raise DataError(f"feather file {path} is corrupt ({exc})", "re-download it") from exc


def _read_csv(path: Path):
    import pandas as pd

    with path.open("r", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    skip = 0 if "," in first and _looks_like_header(first) else 1
    try:
        return pd.read_csv(path, skiprows=skip)
    except pd.errors.ParserError as exc:
        raise DataError(f"CSV file {path} is malformed ({exc})", "check its format") from exc
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=["timestamp", "open", "high", "low", "close", "volume"])


def _looks_like_header(line: str) -> bool:
    cols = {c.strip().strip('"').lower() for c in line.split(",")}
    return bool(cols & {"open", "close"})


_TIME_COLUMNS = ("timestamp_ms", "timestamp", "unix", "date", "time", "datetime", "open_time")
_VOLUME_COLUMNS = ("volume", "volume_base", "volume_btc", "vol")


def _frame_rows(frame, path: Path) -> np.ndarray:
    import pandas as pd

    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    if frame.index.name and str(frame.index.name).lower() in _TIME_COLUMNS:
        frame = frame.reset_index()
    if "unnamed: 0" in frame.columns and not any(c in frame.columns for c in _TIME_COLUMNS):
        frame = frame.rename(columns={"unnamed: 0": "date"})
    tcol = next((c for c in _TIME_COLUMNS if c in frame.columns), None)
    vcol = next((c for c in _VOLUME_COLUMNS if c in frame.columns), None)
    missing = [c for c in ("open", "high", "low", "close") if c not in frame.columns]
    if tcol is None or vcol is None or missing:
        raise DataError(
            f"{path} lacks OHLCV columns (found {', '.join(map(str, frame.columns))})",
            "provide a time column and open, high, low, close, volume",
        )
    times = frame[tcol]
    if pd.api.types.is_datetime64_any_dtype(times):
        ts = _datetime_to_ms(times)
    elif pd.api.types.is_numeric_dtype(times):
        ts = times.to_numpy(dtype=np.float64)
        if len(ts) and np.nanmax(ts) < 1e11:  # seconds since epoch
            ts = ts * 1000.0
    else:
        parsed = pd.to_datetime(times.astype(str).str.replace(r"-(AM|PM)$", r" \1", regex=True), utc=True,
                                format="mixed")
        ts = _datetime_to_ms(parsed)
    cols = [frame[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", vcol)]
    return np.column_stack([ts, *cols]) if len(frame) else np.empty((0, 6))


def _datetime_to_ms(series) -> np.ndarray:
    import pandas as pd

    if getattr(series.dt, "tz", None) is None:
        series = series.dt.tz_localize("UTC")
    return (series - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)


def validate(raw: np.ndarray, symbol: str, timeframe: str, tf_ms: int, path: Path | None = None) -> Candles:
    """Check raw ``(n, 6)`` rows and build :class:`Candles`.

    Sorts ascending, drops exact duplicate rows (both reported: ``duplicates``,
    ``out_of_order``; a file wholly newest-first is only sorted), and reports gaps.

    Raises:
        DataError: NaN, non-positive price, negative volume, OHLC inconsistency or two
            different rows with the same timestamp. The sentence names the first bad row.
    """
    where = path or symbol
    raw = np.asarray(raw, dtype=np.float64)
    if raw.size and np.isnan(raw).any():
        row = int(np.argwhere(np.isnan(raw))[0][0])
        raise DataError(f"{where} has an empty value in row {row + 1}", "repair or re-download the file")
    ts = raw[:, 0].astype(np.int64) if raw.size else np.empty(0, dtype=np.int64)
    disorder = None
    if raw.size and not np.all(ts[1:] > ts[:-1]):
        back = np.flatnonzero(ts[1:] < ts[:-1])
        if len(back) and not np.all(ts[1:] <= ts[:-1]):  # a wholly newest-first file is a layout
            disorder = Anomaly(len(back), int(ts[back[0] + 1]), int(back[0]) + 2, int(ts[back[0]]))
        order = np.argsort(ts, kind="stable")
        rows_in_file = order + 1
        raw, ts = raw[order], ts[order]
    else:
        rows_in_file = np.arange(1, len(ts) + 1)
    repeats = None
    if len(ts) > 1:
        same = ts[1:] == ts[:-1]
        if same.any():
            identical = np.all(raw[1:][same] == raw[:-1][same], axis=1)
            if not identical.all():
                bad = int(ts[1:][same][~identical][0])
                raise DataError(
                    f"{where} has two different candles at {_iso(bad)}",
                    "remove the duplicate or re-download the file",
                )
            keep = np.concatenate([[True], ~same])
            repeat_rows = rows_in_file[1:][same]  # the later row of each pair in sorted order
            first = int(np.argmin(repeat_rows))
            repeats = Anomaly(int(same.sum()), int(ts[1:][same][first]), int(repeat_rows[first]))
            raw, ts = raw[keep], ts[keep]
    o, h, low, c, v = (raw[:, i] if raw.size else np.empty(0) for i in range(1, 6))
    problems = (
        (np.minimum.reduce([o, h, low, c]) <= 0, "a non-positive price"),
        (v < 0, "a negative volume"),
        (h < np.maximum(o, c) - 1e-12 * np.abs(h), "high below open/close"),
        (low > np.minimum(o, c) + 1e-12 * np.abs(low), "low above open/close"),
    ) if raw.size else ()
    for mask, what in problems:
        if mask.any():
            i = int(np.argmax(mask))
            raise DataError(f"{where} has {what} at {_iso(int(ts[i]))}", "repair or re-download the file")
    if raw.size and np.any(ts % tf_ms):
        i = int(np.argmax(ts % tf_ms != 0))
        raise DataError(
            f"{where} has a candle at {_iso(int(ts[i]))} off the {timeframe} grid",
            f"check that the file really holds {timeframe} candles",
        )
    return Candles(
        symbol=symbol, timeframe=timeframe, ts=ts, open=np.ascontiguousarray(o), high=np.ascontiguousarray(h),
        low=np.ascontiguousarray(low), close=np.ascontiguousarray(c), volume=np.ascontiguousarray(v),
        gaps=find_gaps(ts, tf_ms), duplicates=repeats, out_of_order=disorder,
    )


def find_gaps(ts: np.ndarray, tf_ms: int) -> list[Gap]:
    """Every place where consecutive open times are more than one bar apart."""
    if len(ts) < 2:
        return []
    step = np.diff(ts)
    idx = np.flatnonzero(step > tf_ms)
    return [Gap(int(ts[i]), int(ts[i + 1]), int(step[i] // tf_ms) - 1) for i in idx]


def _iso(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_discovered(path: Path, file: Path, symbol: str | None, timeframe: str | None) -> Candles:
    """Load one ``file`` that :func:`discover` found for the ``--data`` ``path``: symbol and
    timeframe from its freqtrade name; when ``path`` is that single file and its name says
    neither (``prices.csv``), ``symbol`` and ``timeframe`` name it.

    Raises:
        DataError, ConfigError: as :func:`load_candles`.
    """
    if Path(path).is_file() and parse_filename(file) is None:
        return load_candles(file, symbol=symbol, timeframe=timeframe)
    return load_candles(file)


def discover(path: Path, symbols: list[str] | None, timeframe: str | None) -> list[Path]:
    """The candle files to load from ``--data``.

    A file is used as is. In a directory, ``symbols`` x ``timeframe`` are looked up by
    freqtrade name (``.json``, ``.json.gz``, ``.feather``, ``.csv`` in that order); with no
    ``symbols``, every file of ``timeframe`` is taken.

    Raises:
        DataError: the path does not exist, or a requested symbol has no file, or the
            directory holds no candle file of the timeframe.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"data path {path} does not exist", "pass a candle file or a directory of them")
    if timeframe is None:
        raise ConfigError("--timeframe is needed with a data directory", "pass e.g. --timeframe 1h")
    if symbols:
        found: list[Path] = []
        missing: list[str] = []
        for sym in symbols:
            for suffix in SUFFIXES:
                candidate = path / symbol_to_filename(sym, timeframe, suffix)
                if candidate.is_file():
                    found.append(candidate)
                    break
            else:
                missing.append(sym)
        if missing:
            raise DataError(
                f"no {timeframe} candles for {', '.join(missing)} in {path}",
                "download them with `sigmax data download` or drop them from --symbols",
            )
        return found
    found = sorted(p for p in path.iterdir() if (parsed := parse_filename(p)) and parsed[1] == timeframe)
    if not found:
        raise DataError(f"no {timeframe} candle files in {path}", "check --timeframe or the directory")
    return found
