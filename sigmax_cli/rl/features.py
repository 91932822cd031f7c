"""Observation features of the RL policy: causal, then normalised with training-split statistics.

Raw features, one value per bar ``i`` computed from bars ``0..i`` only (the causal
indicators of :mod:`sigmax_cli.strategies.indicators`):

=============  ===============================================================  ==============
name           definition                                                       unit
=============  ===============================================================  ==============
``log_return``  ``ln(close[i] / close[i-1])``                                   dimensionless
``rsi``         Wilder RSI over ``rsi_period`` bars (Wilder 1978)               points 0..100
``macd_hist``   MACD histogram (Appel 1979, 12/26/9) divided by ``close[i]``    fraction of price
``volume_z``    z-score of the volume in its trailing ``volume_window`` bars    dimensionless
``fear_greed``  alternative.me Fear & Greed value known at the bar's open       points 0..100
=============  ===============================================================  ==============

The MACD histogram is divided by the close so that one model reads BTC at 50,000 USDT
and at 20,000 USDT (or another coin) on the same scale. ``fear_greed`` is optional
(``--sentiment FILE``): a daily value stamped ``T`` (UTC ms) is used for bars whose open
time is ``>= T``, i.e. one bar after it could first be known at the earliest, and is
treated as missing once it is older than :data:`FEAR_GREED_MAX_AGE_MS`.

Normalisation (:class:`Normalizer`): each feature is standardised with the mean and
population standard deviation of the *training split only*, ``(x - mean) / std``, and
clipped to ``+-clip``; the statistics are saved in the model's metadata and reused
unchanged for validation, test, ``paper`` and ``run``, so no later bar ever leaks into an
earlier observation. Clipping at 10 standard deviations follows stable-baselines3's
``VecNormalize(clip_obs=10.0)`` default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigmax_cli.errors import DataError
from sigmax_cli.strategies import indicators
from sigmax_cli.strategies.base import settling_bars

BASE_FEATURES = ("log_return", "rsi", "macd_hist", "volume_z")
SENTIMENT_FEATURE = "fear_greed"
KNOWN_FEATURES = (*BASE_FEATURES, SENTIMENT_FEATURE)
DEFAULT_PARAMS: dict[str, int] = {
    "rsi_period": 14,      # bars, Wilder's choice
    "macd_fast": 12,       # bars, Appel
    "macd_slow": 26,       # bars, Appel
    "macd_signal": 9,      # bars, Appel
    "volume_window": 24,   # bars: one day of 1h bars
}
CLIP = 10.0
"""Normalised features are clipped to ``[-CLIP, CLIP]`` (stable-baselines3 VecNormalize default)."""
HISTORY_TOLERANCE = 2.0 ** -24 / (2.0 * CLIP)
"""Fraction of a smoother's seed error left after the history a replay or live feed loads
before the first decision (:meth:`FeatureSpec.history`). A normalised feature is read as
float32 and clipped to ``+-CLIP`` standard deviations, so a seed error spans at most
``2 * CLIP`` of them; times this fraction it is below float32's unit roundoff ``2**-24``
(IEEE 754 binary32, 24-bit significand): the observations then agree with those computed
over the whole file to the last bit but for rounding, and so do the policy's decisions."""
FEAR_GREED_MAX_AGE_MS = 2 * 86_400_000
"""A Fear & Greed value older than two days at a bar's open counts as missing (NaN)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, with which lengths (bars). Saved in and compared with a model's metadata."""

    names: tuple[str, ...] = BASE_FEATURES
    params: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in KNOWN_FEATURES]
        if unknown or not self.names:
            raise ValueError(f"unknown features {unknown}")

    @property
    def uses_sentiment(self) -> bool:
        return SENTIMENT_FEATURE in self.names

    @property
    def warmup(self) -> int:
        """Index of the first bar at which every price/volume feature is defined.

        ``log_return`` from 1, ``rsi`` from ``rsi_period``, ``macd_hist`` from
        ``macd_slow + macd_signal - 2`` (see :func:`indicators.macd`), ``volume_z`` from
        ``volume_window - 1``.
        """
        p = self.params
        return max(1, p["rsi_period"], max(p["macd_fast"], p["macd_slow"]) + p["macd_signal"] - 2,
                   p["volume_window"] - 1)

    def history(self, tolerance: float = HISTORY_TOLERANCE) -> int:
        """Bars of history before a bar for every feature there to have settled: within
        ``tolerance`` of its seed error of the value computed over unlimited history.

        ``log_return`` and ``volume_z`` are exact after their :attr:`warmup` (fixed windows),
        ``fear_greed`` needs none; ``rsi`` is two Wilder averages (``alpha = 1 / rsi_period``)
        of price changes, so one bar more than :func:`settling_bars`; ``macd_hist`` is the
        signal EMA of the MACD line, whose slow EMA settles last: the line's settling index
        plus the signal EMA's. ``sigmax strategy check`` measures the same from the data
        (``tests/test_rl_replay.py`` compares both).

        Args:
            tolerance: fraction ``0 < tolerance < 1`` (default :data:`HISTORY_TOLERANCE`).
        """
        p = self.params
        need = self.warmup
        if "rsi" in self.names:
            need = max(need, settling_bars(p["rsi_period"], 1.0 / p["rsi_period"], tolerance) + 1)
        if "macd_hist" in self.names:
            slow = max(p["macd_fast"], p["macd_slow"])
            line = settling_bars(slow, 2.0 / (slow + 1), tolerance)
            need = max(need, line + settling_bars(p["macd_signal"], 2.0 / (p["macd_signal"] + 1), tolerance))
        return need

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing keys or unknown feature names.
        """
        params = {k: int(v) for k, v in dict(data["params"]).items()}
        missing = set(DEFAULT_PARAMS) - set(params)
        if missing:
            raise ValueError(f"feature parameters {sorted(missing)} are missing")
        return cls(tuple(str(n) for n in data["names"]), params)


@dataclass(frozen=True)
class SentimentSeries:
    """A daily sentiment series, oldest first: ``ts_ms`` (UTC ms) and ``value`` (points 0..100)."""

    ts_ms: np.ndarray
    value: np.ndarray
    source: Path | None = None
    sha256: str | None = None

    def at(self, bar_ts_ms: np.ndarray) -> np.ndarray:
        """The value known at each bar open time, shape ``(n,)``; NaN before the first value
        and where the latest value is older than :data:`FEAR_GREED_MAX_AGE_MS`."""
        bar_ts = np.asarray(bar_ts_ms, dtype=np.int64)
        idx = np.searchsorted(self.ts_ms, bar_ts, side="right") - 1
        out = np.full(bar_ts.shape[0], np.nan)
        ok = idx >= 0
        ok[ok] &= (bar_ts[ok] - self.ts_ms[idx[ok]]) <= FEAR_GREED_MAX_AGE_MS
        out[ok] = self.value[idx[ok]]
        return out


def load_fear_greed(path: Path) -> SentimentSeries:
    """Read a saved alternative.me ``/fng/`` answer (``{"data": [{"value": "47",
    "timestamp": "1745280000", ...}, ...]}``, strings, newest first, seconds).

    Raises:
        DataError: the file is missing, not JSON, or not a Fear & Greed answer.
    """
    from sigmax_cli.data.candles import sha256_file

    path = Path(path)
    if not path.is_file():
        raise DataError(f"sentiment file {path} does not exist", "pass a saved alternative.me /fng/ answer")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = sorted((int(d["timestamp"]) * 1000, float(d["value"])) for d in doc["data"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"sentiment file {path} is not an alternative.me Fear & Greed answer ({exc})",
                        "save the body of https://api.alternative.me/fng/?limit=0 to a file") from None
    if not rows:
        raise DataError(f"sentiment file {path} holds no values", "save a longer history (?limit=0)")
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    value = np.array([r[1] for r in rows], dtype=np.float64)
    if np.any(np.diff(ts) <= 0) or not np.all((value >= 0) & (value <= 100)):
        raise DataError(f"sentiment file {path} has duplicate days or values outside 0..100", "re-download it")
    return SentimentSeries(ts, value, path, sha256_file(path))


def raw_features(
    ts_ms: np.ndarray, close: np.ndarray, volume: np.ndarray, spec: FeatureSpec,
    sentiment: SentimentSeries | None = None,
) -> np.ndarray:
    """The raw feature matrix, shape ``(n, len(spec.names))`` float64, NaN during warm-up.

    Args:
        ts_ms: bar open times, shape ``(n,)``, UTC ms.
        close: closes, shape ``(n,)``, quote currency.
        volume: volumes, shape ``(n,)``, base units.
        spec: which features (see the module docstring for units).
        sentiment: needed when ``spec`` holds ``fear_greed``.

    Raises:
        DataError: the spec needs a sentiment series and none was given.
    """
    p = spec.params
    close = np.asarray(close, dtype=np.float64)
    columns: dict[str, np.ndarray] = {}
    for name in spec.names:
        if name == "log_return":
            columns[name] = indicators.log_returns(close)
        elif name == "rsi":
            columns[name] = indicators.rsi(close, p["rsi_period"])
        elif name == "macd_hist":
            columns[name] = indicators.macd(close, p["macd_fast"], p["macd_slow"], p["macd_signal"])[2] / close
        elif name == "volume_z":
            columns[name] = indicators.volume_zscore(np.asarray(volume, dtype=np.float64), p["volume_window"])
        else:  # fear_greed
            if sentiment is None:
                raise DataError("the model's features include fear_greed but no sentiment series was given",
                                "pass --sentiment FILE (a saved alternative.me /fng/ answer)")
            columns[name] = sentiment.at(ts_ms)
    return np.column_stack([columns[n] for n in spec.names]) if close.size else np.empty((0, len(spec.names)))


def first_complete(raw: np.ndarray) -> int:
    """Index of the first row from which every later row is finite (``n`` if none)."""
    finite = np.isfinite(raw).all(axis=1)
    if finite.size == 0:
        return 0
    bad = np.flatnonzero(~finite)
    return int(bad[-1]) + 1 if bad.size else 0


@dataclass(frozen=True)
class Normalizer:
    """Per-feature standardisation fitted on the training split.

    Attributes:
        mean, std: shape ``(F,)``, in each feature's raw unit; ``std`` is never 0 (a
            constant feature gets ``std = 1``).
        clip: normalised values are clipped to ``[-clip, clip]``.
    """

    mean: np.ndarray
    std: np.ndarray
    clip: float = CLIP

    @classmethod
    def fit(cls, raw: np.ndarray) -> Normalizer:
        """Fit on the rows of ``raw`` (shape ``(m, F)``, finite): the training split only.

        Raises:
            DataError: no rows, or non-finite values in them.
        """
        if raw.shape[0] == 0 or not np.isfinite(raw).all():
            raise DataError("the training split has no complete feature rows",
                            "give more data or a later --start")
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean, std)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Normalised features, shape of ``raw``, float32; NaN stays NaN."""
        with np.errstate(invalid="ignore"):
            out = np.clip((raw - self.mean) / self.std, -self.clip, self.clip)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std], "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_features: int) -> Normalizer:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: wrong lengths or non-finite statistics.
        """
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        clip = float(data.get("clip", CLIP))
        if mean.shape != (n_features,) or std.shape != (n_features,):
            raise ValueError(f"normalisation statistics are not {n_features} values each")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all() and clip > 0
                and math.isfinite(clip)):
            raise ValueError("normalisation statistics are not finite and positive")
        return cls(mean, std, clip)
