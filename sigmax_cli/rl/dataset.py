"""The data of a training run: the candles of one symbol, causal features, the chronological
train/validation/test split and the training-part normalisation (:func:`prepare_dataset`).

The bars from the first full observation window on are cut into train, validation
(``eval_fraction``) and test (``test_fraction``) parts in time order; each part trades its
own bars only (the last bar a part plays is the first decision bar of the next). The
normalisation statistics are fitted on the training part alone and saved with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sigmax_cli.data.candles import Candles, discover, load_candles, parse_filename
from sigmax_cli.errors import ConfigError, DataError
from sigmax_cli.rl.env import MarketSeries
from sigmax_cli.rl.features import (
    SENTIMENT_FEATURE,
    FeatureSpec,
    Normalizer,
    SentimentSeries,
    first_complete,
    raw_features,
)
from sigmax_cli.rl.options import TrainOptions

MIN_PART_STEPS = 48
"""Fewest steps (decision bars) a train, validation or test part may have: two days of 1h bars."""


@dataclass
class Dataset:
    """Candles, normalised features and the chronological split of one training run.

    ``segments`` maps ``train``/``validation``/``test`` to ``(lo, hi)`` bar indices as
    :class:`~sigmax_cli.rl.env.TradingEnv` takes them.
    """

    candles: Candles
    market: MarketSeries
    spec: FeatureSpec
    window: int
    raw: np.ndarray
    normalizer: Normalizer
    features: np.ndarray
    segments: dict[str, tuple[int, int]]
    sentiment: SentimentSeries | None = None

    def split_meta(self, eval_fraction: float, test_fraction: float) -> dict[str, Any]:
        ts = self.candles.ts
        parts = {name: {"start_ms": int(ts[lo]), "end_ms": int(ts[hi - 1]), "bars": hi - lo}
                 for name, (lo, hi) in self.segments.items()}
        return {**parts, "eval_fraction": eval_fraction, "test_fraction": test_fraction}


def load_training_candles(options: TrainOptions) -> Candles:
    """The validated candles of ``options.symbol`` / ``options.timeframe``, cut to start/end.

    Raises:
        DataError: missing, corrupt or empty data; a file of another symbol or timeframe.
        ConfigError: bad dates.
    """
    from sigmax_cli.timeframes import parse_time

    if options.symbol is None or options.timeframe is None:  # check_options fills them
        raise ConfigError("the symbol and timeframe are not known", "pass --symbol and --timeframe")
    path = Path(options.data).expanduser()
    start_ms = parse_time(options.start, "--start") if options.start else None
    end_ms = parse_time(options.end, "--end") if options.end else None
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConfigError(f"--start {options.start} is not before --end {options.end}", "swap or correct the dates")
    (file,) = discover(path, [options.symbol], options.timeframe)
    parsed = parse_filename(file)
    if parsed is not None:
        if parsed[1] != options.timeframe:
            raise DataError(f"{file.name} holds {parsed[1]} candles, not {options.timeframe}",
                            f"pass --timeframe {parsed[1]} or a {options.timeframe} file")
        if parsed[0] != options.symbol:
            raise DataError(f"{file.name} holds {parsed[0]}, not {options.symbol}",
                            f"pass --symbol {parsed[0]} or another file")
        candles = load_candles(file)
    else:
        candles = load_candles(file, symbol=options.symbol, timeframe=options.timeframe)
    if start_ms is not None or end_ms is not None:
        candles = candles.slice(start_ms, end_ms)
    if len(candles) == 0:
        raise DataError(f"{file} holds no {options.symbol} candles in the chosen period",
                        "widen --start/--end or download data with `sigmax data download`")
    return candles


def prepare_dataset(candles: Candles, spec: FeatureSpec, window: int, eval_fraction: float, test_fraction: float,
                    sentiment: SentimentSeries | None = None) -> Dataset:
    """Features, the chronological split and the training-part normalisation.

    The first decision bar is the first with ``window`` complete feature rows; the
    ``U`` bars from there on are split ``train = U - val - test``, ``val = floor(U *
    eval_fraction)``, ``test = floor(U * test_fraction)``, in that order.

    Raises:
        DataError: fewer than :data:`MIN_PART_STEPS` steps in a part (too little data for
            the window and split), or sentiment values missing inside the data.
    """
    raw = raw_features(candles.ts, candles.close, candles.volume, spec, sentiment)
    n = len(candles)
    if spec.uses_sentiment:
        _check_sentiment_coverage(candles, raw[:, spec.names.index(SENTIMENT_FEATURE)], sentiment)
    f0 = first_complete(raw)
    first_decision = f0 + window - 1
    usable = n - first_decision
    n_val = int(usable * eval_fraction)
    n_test = int(usable * test_fraction)
    n_train = usable - n_val - n_test
    # steps per part: train n_train, validation n_val, test n_test - 1 (its last bar ends the data)
    if usable <= 0 or min(n_train, n_val, n_test - 1) < MIN_PART_STEPS:
        need = math.ceil((MIN_PART_STEPS + 1) / min(1 - eval_fraction - test_fraction, eval_fraction, test_fraction))
        raise DataError(
            f"{candles.symbol} {candles.timeframe} has {max(usable, 0)} usable bars after the {f0}-bar feature "
            f"warm-up and the {window}-bar window, too few for a train/validation/test split of at least "
            f"{MIN_PART_STEPS} steps each (about {need} are needed)",
            "give more data (an earlier --start), a smaller --window or larger --eval-fraction/--test-fraction",
        )
    a = first_decision
    b = a + n_train
    c = b + n_val
    segments = {"train": (a, b + 1), "validation": (b, c + 1), "test": (c, n)}
    normalizer = Normalizer.fit(raw[f0: b + 1])
    features = normalizer.apply(raw)
    return Dataset(candles, MarketSeries.from_candles(candles), spec, window, raw, normalizer, features, segments,
                   sentiment)


def _check_sentiment_coverage(candles: Candles, column: np.ndarray, sentiment: SentimentSeries | None) -> None:
    """Refuse a sentiment series with holes inside the candles, or none at all.

    Bars before the first sentiment value only shorten the usable data; a missing value
    after it (a gap of more than two days, or a file that ends early) is refused.

    Raises:
        DataError: no overlap, or a hole (the sentence names the first bar without a value).
    """
    from sigmax_cli.data.candles import _iso

    finite = np.isfinite(column)
    if not finite.any():
        span = (f"{_iso(int(sentiment.ts_ms[0]))} to {_iso(int(sentiment.ts_ms[-1]))}"
                if sentiment is not None else "nothing")
        raise DataError(f"the sentiment file covers {span}, none of the candles' "
                        f"{_iso(int(candles.ts[0]))} to {_iso(int(candles.ts[-1]))}",
                        "use a sentiment file of the same period or cut the candles with --start/--end")
    first = int(np.argmax(finite))
    holes = np.flatnonzero(~finite[first:])
    if holes.size:
        at = int(candles.ts[first + int(holes[0])])
        raise DataError(f"the sentiment file has no value in the two days before {_iso(at)}",
                        "use a sentiment file that covers the whole period, or cut the candles with --end")
