"""The RL strategy: a policy trained with ``sigmax train-rl`` behind the Strategy interface.

``--strategy rl:MODEL.zip`` loads the model and its metadata (:func:`sigmax_cli.rl.model.load_model`:
checks, no unpickling). Per symbol, :meth:`RLStrategy.features` computes the model's
causal features, normalises them with the training statistics saved in the metadata and
builds every observation window at once; :meth:`RLStrategy.on_bar` then only adds the
account state (from the engine's :class:`~sigmax_cli.strategies.base.PositionView`, as the
environment computes it) and runs the policy's numpy forward pass: tens of microseconds a
bar. The account state depends on the run's own trades, so actions cannot be predicted for
the whole series in advance.

Actions map onto signals as in the environment: ``long`` while flat -> ``Signal(1.0)``,
``flat`` while long -> ``Signal(0.0)``, anything else -> ``None`` (keep the position); the
engine then sizes the order with the profile's ``position_fraction`` and sends it through
the RiskGuard like any other strategy's.

Refusals (ConfigError, one sentence): the data's symbol (unless ``rl.allow_other_symbol``,
``--allow-other-symbol``) or timeframe is not the model's (checked on every ``features``
call, i.e. for each symbol of a replay and each bar live); the model
needs the ``fear_greed`` series and no sentiment file is available. The feature set and
the window cannot differ from the metadata: both are read from it, and weights that do
not fit it are refused at load time.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import ConfigError
from sigmax_cli.model import Bar, Features
from sigmax_cli.rl.env import FLAT, LONG
from sigmax_cli.rl.features import SentimentSeries, load_fear_greed, raw_features
from sigmax_cli.rl.model import LoadedModel, check_compatible, load_model
from sigmax_cli.rl.observation import account_state, observation_size, window_matrix
from sigmax_cli.strategies.base import PositionView, Signal
from sigmax_cli.timeframes import timeframe_to_ms

CACHE_ENTRIES = 64
"""Feature series whose observation windows are kept (one per symbol in a replay)."""


class RLStrategy:
    """A trained policy as a :class:`~sigmax_cli.strategies.base.Strategy`.

    Args:
        model_path: the model zip (its metadata JSON beside it).
        settings: the invocation's settings (``rl.sentiment_file``, ``rl.allow_other_symbol``); optional.
        model: the model already in memory (train-rl's replay of its test part); ``None`` =
            read ``model_path``.

    Attributes:
        warmup: bars before the first decision: the features' warm-up plus ``window - 1``.
        history: bars of history before the first decision a replay loads (and a live feed
            fetches): the features' settling length plus ``window - 1``.

    Raises:
        ConfigError: the model is missing, corrupt, foreign, or lacks usable metadata; it
            needs a sentiment file that is missing.
        DataError: the sentiment file is unreadable.
    """

    name = "rl"

    def __init__(self, model_path: Path, settings: Any = None, *, model: LoadedModel | None = None) -> None:
        self.model = model if model is not None else load_model(model_path)
        meta = self.model.meta
        self.meta = meta
        self.window = meta.window
        self.spec = self.model.spec
        self.warmup = self.spec.warmup + self.window - 1
        # bars loaded before --start and fetched live: every feature of the first decision's
        # window settled (FeatureSpec.history), so a replay from any bar decides as train-rl's
        # environment did over the whole file
        self.history = self.spec.history() + self.window - 1
        self._tf_ms = timeframe_to_ms(meta.timeframe)
        self._clip = self.model.normalizer.clip
        self._predict = self.model.predictor
        self._size = observation_size(self.window, len(self.spec.names))
        self._sentiment: SentimentSeries | None = None
        rl_settings = getattr(settings, "rl", None)
        self._allow_other_symbol = bool(getattr(rl_settings, "allow_other_symbol", False))
        if self.spec.uses_sentiment:
            configured = getattr(rl_settings, "sentiment_file", None)
            source = Path(configured) if configured else Path(meta.sentiment.path) if meta.sentiment else None
            if source is None or not source.is_file():
                raise ConfigError(
                    f"the RL model {Path(model_path).name} reads the fear_greed series and its sentiment file "
                    f"{source or '(none recorded)'} is not there",
                    "point SIGMAX_RL__SENTIMENT_FILE at a saved alternative.me /fng/ answer")
            self._sentiment = load_fear_greed(source)
        # id(features dict) -> (that dict, its windows, finite flags); holding the dict keeps
        # its id from being reused. Replays make one entry per symbol; live feeds one per bar.
        self._cache: OrderedDict[int, tuple[Features, np.ndarray, np.ndarray]] = OrderedDict()

    def features(self, candles: Candles) -> Features:
        """The model's raw features per bar (for display), after checking symbol and timeframe.

        Also prepares, for ``candles.symbol``, the normalised observation window ending at
        every bar (shape ``(n - window + 1, window * F)``), which :meth:`on_bar` reads.

        Raises:
            ConfigError: ``candles.symbol`` (unless allowed) or ``candles.timeframe`` is not the model's.
        """
        check_compatible(self.meta, timeframe=candles.timeframe, symbol=candles.symbol,
                         allow_other_symbol=self._allow_other_symbol)
        raw = raw_features(candles.ts, candles.close, candles.volume, self.spec, self._sentiment)
        windows = window_matrix(self.model.normalizer.apply(raw), self.window)
        finite = np.isfinite(windows).all(axis=1) if windows.size else np.zeros(0, dtype=bool)
        out: Features = {name: raw[:, k].tolist() for k, name in enumerate(self.spec.names)}
        self._cache[id(out)] = (out, windows, finite)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return out

    def on_bar(self, bar: Bar, position: PositionView) -> Signal | None:
        """The policy's decision on a closed bar (module docstring); ``None`` during the
        warm-up, where a window holds a missing value, or when the action keeps the position."""
        row = bar.i - self.window + 1
        if row < 0:
            return None
        cached = self._cache.get(id(bar.features))
        if cached is not None and cached[0] is bar.features and row < cached[1].shape[0]:
            if not cached[2][row]:
                return None
            window = cached[1][row]
        else:  # features computed elsewhere (or evicted): rebuild this bar's window from them
            window = self._window_from(bar)
            if window is None:
                return None
        opened = position.opened_ms
        long = position.qty > 0.0 and opened is not None
        held = (bar.ts_ms - opened) / self._tf_ms + 1.0 if long and opened is not None else 0.0
        obs = np.empty(self._size, dtype=np.float32)
        obs[:-3] = window
        obs[-3:] = account_state(long, bar.close, position.avg_price, held, self.window, self._clip)
        action = self._predict(obs)
        if action == LONG and not long:
            return Signal(1.0, "rl: long")
        if action == FLAT and long:
            return Signal(0.0, "rl: flat")
        return None

    def _window_from(self, bar: Bar) -> np.ndarray | None:
        """The normalised window ending at ``bar`` from its raw feature lists; ``None`` if
        a feature is missing or not finite there."""
        lo = bar.i - self.window + 1
        try:
            raw = np.array([bar.features[name][lo: bar.i + 1] for name in self.spec.names], dtype=np.float64).T
        except KeyError:
            return None
        if raw.shape != (self.window, len(self.spec.names)) or not np.isfinite(raw).all():
            return None
        return self.model.normalizer.apply(raw).ravel()

    def params(self) -> dict[str, object]:
        """Name, warm-up (bars) and the model's identity, recorded with a run."""
        m = self.meta
        return {"name": self.name, "warmup": self.warmup, "history": self.history, "model": str(self.model.path),
                "model_sha256": m.model_sha256, "algo": m.algo, "symbol": m.symbol, "timeframe": m.timeframe,
                "window": m.window, "features": list(self.spec.names), "timesteps": m.timesteps, "seed": m.seed}
