"""Candle timeframes as ccxt spells them (``1m``, ``5m``, ``1h``, ``4h``, ``1d``, ``1w``), the UTC
calendar (day, ISO week) and ISO times as UTC ms: neutral helpers that import nothing of sigmax
but its errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sigmax_cli.errors import ConfigError

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_RE = re.compile(r"^(\d+)([smhdw])$")
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MS_PER_YEAR = 365 * DAY_MS  # crypto trades every day of the year
_MONDAY_OFFSET_MS = 4 * DAY_MS  # 1970-01-01 was a Thursday: ISO weeks start 4 days later


class UnknownTimeframe(ConfigError, ValueError):
    """A timeframe string sigmax cannot interpret."""


def timeframe_to_ms(timeframe: str) -> int:
    """Length of one bar in milliseconds, e.g. ``"1h"`` -> ``3_600_000``.

    Raises:
        UnknownTimeframe: not ``<count><s|m|h|d|w>`` (months are not supported).
    """
    match = _RE.match(timeframe.strip()) if isinstance(timeframe, str) else None
    if not match or int(match.group(1)) == 0:
        raise UnknownTimeframe(
            f"unknown timeframe {timeframe!r}", "use a count and a unit such as 1m, 5m, 1h, 4h or 1d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year, the annualisation factor for per-bar returns."""
    return MS_PER_YEAR / timeframe_to_ms(timeframe)


def utc_day(ts_ms: int) -> int:
    """Index of the UTC calendar day holding ``ts_ms`` (days since 1970-01-01)."""
    return ts_ms // DAY_MS


def iso_week(ts_ms: int) -> int:
    """Index of the ISO week (Monday 00:00 UTC to Monday) holding ``ts_ms``."""
    return (ts_ms - _MONDAY_OFFSET_MS) // WEEK_MS


def next_utc_day_ms(ts_ms: int) -> int:
    """The next UTC midnight after ``ts_ms`` (UTC ms)."""
    return (utc_day(ts_ms) + 1) * DAY_MS


def next_iso_week_ms(ts_ms: int) -> int:
    """The next Monday 00:00 UTC after ``ts_ms`` (UTC ms)."""
    return (iso_week(ts_ms) + 1) * WEEK_MS + _MONDAY_OFFSET_MS


def parse_time(value: str, option: str) -> int:
    """An ISO date or date-time (UTC unless it carries an offset) -> UTC ms.

    Raises:
        ConfigError: not an ISO date.
    """
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not a date",
                          "use ISO format, e.g. 2021-05-12 or 2021-05-12T06:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
