"""freqtrade's ``--timerange`` (``20210101-20210301``) as a pair of UTC times.

sigmax slices replays and downloads with ``--start/--end`` (``paper``) and ``--since/--until``
(``data download``); ``--timerange`` is the same slice in freqtrade's spelling, so a command
line copied from freqtrade works. The grammar is freqtrade's: ``START-END`` where each end is a
date ``YYYYMMDD``, a Unix time in seconds (10 digits) or in milliseconds (13 digits), and either
end may be left open (``20210101-``, ``-20210301``), not both. Both ends are UTC. The end is
excluded, as ``--end`` and ``--until`` are: ``20210101-20210301`` is January and February
(freqtrade's backtesting also replays the bar that opens at the end date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sigmax_cli.errors import ConfigError

_END = r"(\d{8}|\d{10}|\d{13})"
_RANGE_RE = re.compile(rf"^{_END}?-{_END}?$")
_FIX = "use freqtrade's form YYYYMMDD-YYYYMMDD, e.g. 20210101-20210301, with either end left open (20210101-)"


@dataclass(frozen=True)
class TimeRange:
    """A parsed ``--timerange``.

    Attributes:
        start_ms: first bar's open time, UTC ms (included); ``None`` = from the first bar.
        end_ms: bars open before this time, UTC ms (excluded); ``None`` = to the last bar.
        text: the option's value as given, for messages.
    """

    start_ms: int | None
    end_ms: int | None
    text: str

    @property
    def start_iso(self) -> str | None:
        """``start_ms`` as an ISO date-time with its UTC offset (what ``--start`` takes)."""
        return _iso(self.start_ms)

    @property
    def end_iso(self) -> str | None:
        """``end_ms`` as an ISO date-time with its UTC offset (what ``--end`` takes)."""
        return _iso(self.end_ms)


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _end_ms(part: str, text: str, option: str) -> int:
    if len(part) == 8:
        try:
            return int(datetime.strptime(part, "%Y%m%d").replace(tzinfo=UTC).timestamp() * 1000)
        except ValueError:
            raise ConfigError(f"{option} {text!r}: {part} is not a calendar date (YYYYMMDD)", _FIX) from None
    return int(part) * 1000 if len(part) == 10 else int(part)


def parse_timerange(text: str, option: str = "--timerange") -> TimeRange:
    """Parse freqtrade's ``START-END`` (see the module docstring).

    Args:
        text: e.g. ``"20210101-20210301"``, ``"20210101-"``, ``"-1614556800"``.
        option: the option's name, for the error sentence.

    Returns:
        The :class:`TimeRange`, UTC ms, end excluded.

    Raises:
        ConfigError: not that grammar, no end given at all, a date that does not exist
            (``20211301``), or a start that is not before the end.
    """
    value = text.strip()
    match = _RANGE_RE.match(value)
    if match is None:
        raise ConfigError(f"{option} {text!r} is not a time range", _FIX)
    first, last = match.groups()
    if first is None and last is None:
        raise ConfigError(f"{option} {text!r} leaves both ends open", "give a start, an end or both, "
                          "e.g. 20210101-20210301 or 20210101-")
    start_ms = _end_ms(first, text, option) if first is not None else None
    end_ms = _end_ms(last, text, option) if last is not None else None
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"{option} {text!r} does not start before it ends", "swap or correct the dates")
    return TimeRange(start_ms, end_ms, text)


def range_or_bounds(timerange: str | None, start: str | None, end: str | None,
                    start_option: str = "--start", end_option: str = "--end") -> tuple[str | None, str | None]:
    """The slice's two bounds as ISO strings, from ``--timerange`` or from the two options.

    Args:
        timerange: the ``--timerange`` value or ``None``.
        start, end: the values of ``start_option`` / ``end_option`` (ISO dates) or ``None``.

    Returns:
        ``(start, end)``: from the time range when it is given, else ``(start, end)`` as given.

    Raises:
        ConfigError: ``--timerange`` given together with either option (one sentence naming
            both), or a bad time range (:func:`parse_timerange`).
    """
    if timerange is None:
        return start, end
    for option, value in ((start_option, start), (end_option, end)):
        if value is not None:
            raise ConfigError(f"--timerange {timerange} and {option} {value} both bound the same range",
                              f"give either --timerange or {start_option}/{end_option}, not both")
    parsed = parse_timerange(timerange)
    return parsed.start_iso, parsed.end_iso
