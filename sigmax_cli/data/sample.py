"""The candle sample bundled with sigmax, for a first run without a network.

``sigmax_cli/sample/`` holds three months of real Binance spot 1h candles (2020-12-01 00:00 to
2021-02-28 23:00 UTC) for :data:`SAMPLE_SYMBOLS`, in freqtrade's JSON layout, with the real ccxt
markets of those symbols in ``markets.json`` (precision, minimums) and ``SOURCE.md`` naming
where every byte came from. ``--data sample`` (``sigmax paper``) replays it; ``make paper``
falls back to it when the exchange cannot be reached.
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_KEYWORD = "sample"
"""The ``--data`` value that names the bundled sample (``./sample`` is a directory of that name)."""
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample"
"""The sample's directory inside the installed package (wheel or editable checkout)."""
SAMPLE_SYMBOLS = ("BTC/USDT", "ETH/USDT", "XRP/USDT")
SAMPLE_TIMEFRAME = "1h"
SAMPLE_SPAN = "2020-12-01 .. 2021-02-28"


def resolve_data(value: str | None) -> tuple[Path | None, str | None]:
    """The path a ``--data`` value names, and a note when the choice may surprise.

    Args:
        value: the option's text as typed; ``"sample"`` names the bundled sample, anything
            else is a path (so ``./sample`` is the directory called ``sample`` here).

    Returns:
        ``(path, note)``: ``path`` is ``None`` when ``value`` is; ``note`` is a line for stderr
        when ``sample`` was given and a file or directory of that name exists here too.
    """
    if value is None:
        return None, None
    if value != SAMPLE_KEYWORD:
        return Path(value), None
    note = None
    if Path(SAMPLE_KEYWORD).exists():
        note = ("--data sample replays the sample bundled with sigmax, not ./sample here; "
                "pass --data ./sample for that one")
    return SAMPLE_DIR, note


def is_sample(path: Path | None) -> bool:
    """``path`` is the bundled sample's directory (or a file in it)."""
    if path is None:
        return False
    resolved = Path(path).resolve()
    return resolved == SAMPLE_DIR or resolved.parent == SAMPLE_DIR

