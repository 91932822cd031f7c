"""``sigmax train-rl``: train a policy on real candles with stable-baselines3.

Flow of :func:`train_rl` (everything a user can get wrong is checked before anything is
written):

1. **Options and data**: the candle file of ``--symbol`` / ``--timeframe`` is loaded and
   validated, optionally cut to ``--start``/``--end``; the features
   (:mod:`sigmax_cli.rl.features`) are computed causally over the whole series.
2. **Chronological split**, no look-ahead: the bars from the first full observation
   window on are cut into train, validation (``eval_fraction``) and test
   (``test_fraction``) parts in time order; each part trades its own bars only (the last
   bar a part plays is the first decision bar of the next). The normalisation statistics
   are fitted on the training part alone and saved with the model.
3. **Training**: PPO by default with stable-baselines3's defaults, which are the
   hyperparameters of the original implementation (learning rate 3e-4, ``n_steps`` 2048,
   batch 64, 10 epochs, gamma 0.99, GAE lambda 0.95, clip 0.2: Schulman et al. 2017,
   "Proximal Policy Optimization Algorithms"); A2C (lr 7e-4, ``n_steps`` 5) and DQN
   (lr 1e-4, batch 32) are selectable with their stable-baselines3 defaults, except that
   DQN's replay buffer holds at most ``timesteps`` transitions and its target network is
   updated at least ten times per run. ``n_envs`` copies of the environment run in a
   ``DummyVecEnv`` on random windows of the training part (``episode_bars`` steps each).
4. **Model selection**: ``EvalCallback`` plays the whole validation part deterministically
   every ``eval_every`` steps and keeps the best policy; the final policy is evaluated too
   and the better of the two is kept.
5. **Checkpoints** every ``checkpoint_every`` steps in ``<out stem>.checkpoints/`` beside the
   output; ``resume=True`` continues from the last one (the options must match). The
   directory is removed once the model is written. SIGINT/SIGTERM (the ``stop`` event)
   saves a checkpoint and raises :class:`~sigmax_cli.errors.Interrupted`. A resumed run
   continues the step count, the optimiser state and the best validation score; the
   environments start new episodes, and DQN starts with an empty replay buffer.
6. **Test**: the chosen policy, buy-and-hold, staying flat and the rule strategy trade
   the test part through the same environment (:mod:`sigmax_cli.rl.evaluate`).
7. **Output**: ``out`` (the zip) and its metadata JSON (:mod:`sigmax_cli.rl.model`),
   renamed into place at the end.

Progress reaches the user through a :class:`TrainObserver` (a rich progress bar, plain
lines, or nothing). torch and stable-baselines3 are imported only inside this path.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sigmax_cli.data.candles import Candles, discover, load_candles, parse_filename
from sigmax_cli.errors import ConfigError, DataError, Interrupted
from sigmax_cli.rl.env import ACTIONS, STATE_FEATURES, CostModel, MarketSeries, TradingEnv
from sigmax_cli.rl.features import (
    BASE_FEATURES,
    SENTIMENT_FEATURE,
    FeatureSpec,
    Normalizer,
    SentimentSeries,
    first_complete,
    load_fear_greed,
    raw_features,
)
from sigmax_cli.rl.model import ALGOS, FORMAT, ModelMetadata, library_versions, metadata_path, write_model

DEFAULT_HYPER: dict[str, dict[str, Any]] = {
    "ppo": {"learning_rate": 3e-4, "n_steps": 2048, "batch_size": 64},
    "a2c": {"learning_rate": 7e-4, "n_steps": 5},
    "dqn": {"learning_rate": 1e-4, "batch_size": 32},
}
NET_ARCH: dict[str, Any] = {"ppo": {"pi": [64, 64], "vf": [64, 64]}, "a2c": {"pi": [64, 64], "vf": [64, 64]},
                            "dqn": [64, 64]}
MIN_PART_STEPS = 48
"""Fewest steps (decision bars) a train, validation or test part may have: two days of 1h bars."""
MAX_WINDOW = 512
STATE_FILE = "state.json"


class TrainObserver(Protocol):
    """Receives training progress; every method is optional in spirit (implement all)."""

    def on_start(self, total: int, done: int) -> None:
        """Training starts at ``done`` of ``total`` timesteps (``done > 0`` when resumed)."""

    def on_progress(self, done: int, total: int) -> None:
        """``done`` timesteps so far."""

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        """A validation pass ended (returns of the whole validation part, percent)."""

    def on_stage(self, text: str) -> None:
        """A step after training began (``"testing"``, ``"saving"``)."""

    def on_finish(self) -> None:
        """Done (also after an error)."""


class NullTrainObserver:
    """Ignores everything (tests, ``--quiet``, ``--json`` under cron)."""

    def on_start(self, total: int, done: int) -> None:
        return None

    def on_progress(self, done: int, total: int) -> None:
        return None

    def on_eval(self, done: int, validation_return_pct: float, best_return_pct: float) -> None:
        return None

    def on_stage(self, text: str) -> None:
        return None

    def on_finish(self) -> None:
        return None


@dataclass(frozen=True)
class TrainOptions:
    """Options of one training run.

    Attributes:
        data: a candle file or a freqtrade-layout directory.
        symbol: e.g. ``BTC/USDT``; ``None`` = from a freqtrade file name, else the profile's first.
        timeframe: e.g. ``1h``; ``None`` = from a freqtrade file name, else the profile's.
        out: the model zip; ``None`` = ``$SIGMAX_HOME/models/<BASE>_<QUOTE>-<tf>-<algo>.zip``.
        algo: ``ppo`` (default), ``a2c`` or ``dqn``.
        timesteps: environment steps to train (PPO/A2C round up to whole rollouts).
        seed: seeds numpy, torch, the environments' episode starts.
        eval_fraction, test_fraction: fractions of the usable bars for validation and test.
        n_envs: parallel environments (``DummyVecEnv``).
        window: bars per observation.
        episode_bars: steps per training episode (random start in the training part).
        learning_rate, n_steps, batch_size: ``None`` = the algorithm's default (module docstring).
        eval_every, checkpoint_every: timesteps between validation passes / checkpoints;
            ``None`` = a tenth / a fifth of ``timesteps``.
        start, end: ISO dates (UTC) cutting the data, ``start <= t < end``.
        sentiment: a saved alternative.me Fear & Greed answer; adds the ``fear_greed`` feature.
        resume: continue from the checkpoint of an interrupted run with the same options.
        force: replace an existing model and discard old checkpoints.
        torch_threads: CPU threads for torch.
    """

    data: Path
    symbol: str | None = None
    timeframe: str | None = None
    out: Path | None = None
    algo: str = "ppo"
    timesteps: int = 100_000
    seed: int = 0
    eval_fraction: float = 0.2
    test_fraction: float = 0.2
    n_envs: int = 1
    window: int = 32
    episode_bars: int = 720
    learning_rate: float | None = None
    n_steps: int | None = None
    batch_size: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None
    start: str | None = None
    end: str | None = None
    sentiment: Path | None = None
    resume: bool = False
    force: bool = False
    torch_threads: int = 1


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


@dataclass
class TrainResult:
    """What a finished training reports (``--json``). Returns in percent."""

    model_path: Path
    metadata_path: Path
    meta: ModelMetadata
    resumed_from: int
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        m = self.meta
        return {
            "model": str(self.model_path), "metadata": str(self.metadata_path), "algo": m.algo,
            "symbol": m.symbol, "timeframe": m.timeframe, "window": m.window, "features": m.features.names,
            "timesteps": m.timesteps, "resumed_from": self.resumed_from, "seed": m.seed,
            "split": m.split.model_dump(), "hyperparameters": m.hyperparameters, "metrics": m.metrics,
            "data_sha256": m.data.sha256, "elapsed_s": round(self.elapsed_s, 3), "warnings": self.warnings,
        }


# -- validation and data ------------------------------------------------------------------
def resolve_names(options: TrainOptions, settings: Any) -> TrainOptions:
    """Fill a missing symbol / timeframe from a freqtrade-named ``--data`` file, else from
    the settings (first profile symbol, profile timeframe)."""
    if options.symbol and options.timeframe:
        return options
    parsed = parse_filename(Path(options.data)) if Path(options.data).is_file() else None
    symbol = options.symbol or (parsed[0] if parsed else settings.symbols[0])
    timeframe = options.timeframe or (parsed[1] if parsed else settings.timeframe)
    return replace(options, symbol=symbol, timeframe=timeframe)


def check_options(options: TrainOptions) -> TrainOptions:
    """Refuse impossible options; fill the algorithm's defaults.

    Raises:
        ConfigError: the option and the fix, one sentence.
    """
    o = options
    algo = o.algo.lower().strip()
    if algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {o.algo!r}", f"use one of {', '.join(ALGOS)}")
    if o.timesteps < 1:
        raise ConfigError(f"--timesteps must be at least 1, not {o.timesteps}", "pass e.g. --timesteps 100000")
    if not 1 <= o.n_envs <= 64:
        raise ConfigError(f"--n-envs must be between 1 and 64, not {o.n_envs}", "pass e.g. --n-envs 4")
    for name, value in (("--eval-fraction", o.eval_fraction), ("--test-fraction", o.test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{name} {value} is not a fraction between 0 and 1", f"pass e.g. {name} 0.2")
    if o.eval_fraction + o.test_fraction > 0.8:
        raise ConfigError(f"--eval-fraction and --test-fraction leave {1 - o.eval_fraction - o.test_fraction:.0%} "
                          "of the data for training", "keep their sum at 0.8 or less")
    if not 2 <= o.window <= MAX_WINDOW:
        raise ConfigError(f"--window must be between 2 and {MAX_WINDOW} bars, not {o.window}", "pass e.g. --window 32")
    if o.episode_bars < 2:
        raise ConfigError(f"--episode-bars must be at least 2, not {o.episode_bars}", "pass e.g. --episode-bars 720")
    if not 1 <= o.torch_threads <= 256:
        raise ConfigError(f"torch threads must be between 1 and 256, not {o.torch_threads}", "pass 1")
    hyper = dict(DEFAULT_HYPER[algo])
    if o.learning_rate is not None:
        if not (o.learning_rate > 0 and math.isfinite(o.learning_rate)):
            raise ConfigError(f"--learning-rate must be positive, not {o.learning_rate}", "pass e.g. 3e-4")
        hyper["learning_rate"] = o.learning_rate
    if o.n_steps is not None:
        if algo == "dqn":
            raise ConfigError("--n-steps applies to PPO and A2C, not DQN", "drop --n-steps or pick --algo ppo")
        if o.n_steps < 2:
            raise ConfigError(f"--n-steps must be at least 2, not {o.n_steps}", "pass e.g. --n-steps 2048")
        hyper["n_steps"] = o.n_steps
    if o.batch_size is not None:
        if algo == "a2c":
            raise ConfigError("--batch-size applies to PPO and DQN, not A2C (it learns from each rollout whole)",
                              "drop --batch-size or pick --algo ppo")
        if o.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2, not {o.batch_size}", "pass e.g. --batch-size 64")
        hyper["batch_size"] = o.batch_size
    if algo == "ppo" and hyper["batch_size"] > hyper["n_steps"] * o.n_envs:
        raise ConfigError(f"--batch-size {hyper['batch_size']} is larger than a rollout of {hyper['n_steps']} steps "
                          f"x {o.n_envs} environments", "lower --batch-size or raise --n-steps / --n-envs")
    for name, value in (("--eval-every", o.eval_every), ("--checkpoint-every", o.checkpoint_every)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be at least 1 step, not {value}", f"pass e.g. {name} 10000")
    symbol = o.symbol.strip().upper()
    if "/" not in symbol:
        raise ConfigError(f"symbol {o.symbol!r} must look like BASE/QUOTE", "pass e.g. --symbol BTC/USDT")
    from sigmax_cli.timeframes import timeframe_to_ms

    timeframe_to_ms(o.timeframe)
    return replace(o, algo=algo, symbol=symbol, learning_rate=hyper["learning_rate"], n_steps=hyper.get("n_steps"),
                   batch_size=hyper.get("batch_size"))


def load_training_candles(options: TrainOptions) -> Candles:
    """The validated candles of ``options.symbol`` / ``options.timeframe``, cut to start/end.

    Raises:
        DataError: missing, corrupt or empty data; a file of another symbol or timeframe.
        ConfigError: bad dates.
    """
    from sigmax_cli.timeframes import parse_time

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


def default_out(home: Path, symbol: str, timeframe: str, algo: str) -> Path:
    """``$SIGMAX_HOME/models/BTC_USDT-1h-ppo.zip``."""
    return Path(home) / "models" / f"{symbol.replace('/', '_').replace(':', '_')}-{timeframe}-{algo}.zip"


def checkpoint_dir(out: Path) -> Path:
    """``models/btc.zip`` -> ``models/btc.checkpoints``."""
    return out.with_name(out.stem + ".checkpoints")


# -- training -----------------------------------------------------------------------------------
def train_rl(settings: Any, options: TrainOptions, observer: TrainObserver | None = None,
             stop: threading.Event | None = None) -> TrainResult:
    """Train, select on validation, test and save a model (see the module docstring).

    Args:
        settings: the invocation's :class:`~sigmax_cli.settings.Settings` (paper costs,
            starting balance, rule-strategy settings for the comparison, home).
        options: see :class:`TrainOptions`.
        observer: progress; nothing when ``None``.
        stop: set it (SIGINT/SIGTERM) to stop after the current step with a checkpoint.

    Raises:
        ConfigError: bad options, an existing model or checkpoints in the way, a resume
            that does not match, the rl extra not installed.
        DataError: missing, corrupt or too little data; a sentiment file with holes.
        Interrupted: ``stop`` was set; a checkpoint was saved for ``--resume``.
    """
    t0 = time.monotonic()
    o = check_options(resolve_names(options, settings))
    out = Path(o.out).expanduser() if o.out is not None else default_out(settings.home, o.symbol, o.timeframe, o.algo)
    if out.suffix != ".zip":
        raise ConfigError(f"--out {out} must end in .zip", f"pass e.g. --out {out.with_suffix('.zip')}")
    ckpt = checkpoint_dir(out)
    state_file = ckpt / STATE_FILE
    if o.resume and not state_file.is_file():
        raise ConfigError(f"there is no interrupted training to resume in {ckpt}", "start without --resume")
    if not o.resume and not o.force:
        if out.exists():
            raise ConfigError(f"model {out} already exists", "pass --force to replace it or choose another --out")
        if state_file.is_file():
            raise ConfigError(f"{ckpt} holds checkpoints of an interrupted training",
                              "continue it with --resume or start over with --force")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory", "pass a file name ending in .zip")
    sentiment = load_fear_greed(o.sentiment) if o.sentiment is not None else None
    spec = FeatureSpec(names=(*BASE_FEATURES, SENTIMENT_FEATURE) if sentiment is not None else BASE_FEATURES)
    candles = load_training_candles(o)
    dataset = prepare_dataset(candles, spec, o.window, o.eval_fraction, o.test_fraction, sentiment)
    costs = CostModel.from_settings(settings.paper)
    initial_equity = float(settings.paper.balance)
    identity = _identity(o, dataset, costs, initial_equity)
    state = _read_state(state_file, identity) if o.resume else None
    sb3 = _import_sb3()
    observer = observer or NullTrainObserver()
    warnings = _data_warnings(candles)
    if not o.resume and ckpt.exists():  # --force, or what a failed run left before its first checkpoint
        shutil.rmtree(ckpt)
    try:
        meta = _train(sb3, o, dataset, costs, initial_equity, out, ckpt, identity, state, observer, stop, settings)
    except Exception:
        if not state_file.is_file():  # no checkpoint to resume from: leave nothing behind
            shutil.rmtree(ckpt, ignore_errors=True)
        raise
    finally:
        observer.on_finish()
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(out, metadata_path(out), meta, int(state["num_timesteps"]) if state else 0,
                       time.monotonic() - t0, warnings)


def _import_sb3() -> dict[str, Any]:
    from sigmax_cli.rl import require_extra

    require_extra("train-rl and RL policies")
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    return {"PPO": stable_baselines3.PPO, "A2C": stable_baselines3.A2C, "DQN": stable_baselines3.DQN,
            "torch": torch, "BaseCallback": BaseCallback, "CallbackList": CallbackList,
            "EvalCallback": EvalCallback, "Monitor": Monitor, "DummyVecEnv": DummyVecEnv}


def _data_warnings(candles: Candles) -> list[str]:
    if not candles.gaps:
        return []
    return [f"{candles.symbol} {candles.timeframe} has {len(candles.gaps)} gaps ({candles.missing_bars} missing bars); "
            "the environment trades across them as the paper engine does"]


def _hyperparameters(o: TrainOptions, timesteps: int) -> dict[str, Any]:
    """The keyword arguments of the stable-baselines3 algorithm (recorded in the metadata)."""
    h: dict[str, Any] = {"learning_rate": o.learning_rate, "gamma": 0.99,
                         "policy_kwargs": {"net_arch": NET_ARCH[o.algo]}}
    if o.algo == "ppo":
        h.update(n_steps=o.n_steps, batch_size=o.batch_size, n_epochs=10, gae_lambda=0.95, clip_range=0.2,
                 ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
    elif o.algo == "a2c":
        h.update(n_steps=o.n_steps, gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
    else:
        h.update(batch_size=o.batch_size, buffer_size=int(min(1_000_000, max(timesteps, 1_000))),
                 learning_starts=int(min(100, max(timesteps // 10, 1))), train_freq=4, gradient_steps=1,
                 target_update_interval=int(min(10_000, max(timesteps // 10, 1))), exploration_fraction=0.1,
                 exploration_initial_eps=1.0, exploration_final_eps=0.05)
    return h


def _identity(o: TrainOptions, d: Dataset, costs: CostModel, initial_equity: float) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (everything but the step budget)."""
    return json.loads(json.dumps({
        "algo": o.algo, "symbol": o.symbol, "timeframe": o.timeframe, "data_sha256": d.candles.sha256,
        "sentiment_sha256": d.sentiment.sha256 if d.sentiment else None, "window": o.window,
        "features": d.spec.to_dict(), "split": d.split_meta(o.eval_fraction, o.test_fraction), "seed": o.seed,
        "n_envs": o.n_envs, "episode_bars": o.episode_bars, "costs": costs.to_dict(),
        "initial_equity": initial_equity,
        "hyperparameters": {k: v for k, v in _hyperparameters(o, o.timesteps).items()
                            if k not in ("buffer_size", "learning_starts", "target_update_interval")},
    }))


def _read_state(state_file: Path, identity: dict[str, Any]) -> dict[str, Any]:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        saved = state["identity"]
        checkpoint = state_file.parent / state["checkpoint"]
        int(state["num_timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"the checkpoint state {state_file} is unreadable",
                          "start over with --force instead of --resume") from None
    if not checkpoint.is_file():
        raise ConfigError(f"the checkpoint {checkpoint} is missing", "start over with --force instead of --resume")
    differ = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
    if differ:
        raise ConfigError(f"the interrupted training used other options or data ({', '.join(differ)} differ)",
                          "resume with the same options, or start over with --force")
    return state


def _train(sb3: dict[str, Any], o: TrainOptions, d: Dataset, costs: CostModel, initial_equity: float, out: Path,
           ckpt: Path, identity: dict[str, Any], state: dict[str, Any] | None, observer: TrainObserver,
           stop: threading.Event | None, settings: Any) -> ModelMetadata:
    from sigmax_cli.rl.evaluate import evaluate_test, segment_return

    torch = sb3["torch"]
    torch.set_num_threads(o.torch_threads)
    stop = stop or threading.Event()
    hyper = _hyperparameters(o, o.timesteps)
    algo_cls = sb3[o.algo.upper()]
    clip = d.normalizer.clip

    def train_env(rank: int):
        def make():
            env = TradingEnv(d.market, d.features, o.window, d.segments["train"], costs, initial_equity,
                             episode_bars=o.episode_bars, clip=clip)
            env.reset(seed=o.seed + rank)
            env.action_space.seed(o.seed + rank)
            return sb3["Monitor"](env)
        return make

    def validation_env():
        return TradingEnv(d.market, d.features, o.window, d.segments["validation"], costs, initial_equity,
                          episode_bars=None, clip=clip)

    vec = sb3["DummyVecEnv"]([train_env(i) for i in range(o.n_envs)])
    vec.seed(o.seed)
    eval_vec = sb3["DummyVecEnv"]([lambda: sb3["Monitor"](validation_env())])
    ckpt.mkdir(parents=True, exist_ok=True)
    if state is not None:
        model = algo_cls.load(str(ckpt / state["checkpoint"]), env=vec, device="cpu")
        best_reward = float(state["best_reward"]) if state.get("best_reward") is not None else -math.inf
    else:
        # a deep copy: A2C writes its optimizer class into the policy_kwargs it is given
        model = algo_cls("MlpPolicy", vec, seed=o.seed, device="cpu", verbose=0, **copy.deepcopy(hyper))
        best_reward = -math.inf
    done0 = int(model.num_timesteps)
    remaining = max(0, o.timesteps - done0)
    eval_every = o.eval_every or max(1, o.timesteps // 10)
    ckpt_every = o.checkpoint_every or max(1, o.timesteps // 5)
    progress_every = max(1, o.timesteps // 200)

    class Progress(sb3["BaseCallback"]):
        def __init__(self) -> None:
            super().__init__()
            self.last_progress = done0
            self.last_ckpt = done0

        def _on_step(self) -> bool:
            done = self.num_timesteps
            if done - self.last_progress >= progress_every:
                observer.on_progress(done, o.timesteps)
                self.last_progress = done
            if done - self.last_ckpt >= ckpt_every:
                _save_checkpoint(self.model, ckpt, identity, evaluator.best_mean_reward)
                self.last_ckpt = done
            return not stop.is_set()

    class AfterEval(sb3["BaseCallback"]):
        def _on_step(self) -> bool:
            observer.on_eval(self.num_timesteps, math.expm1(evaluator.last_mean_reward) * 100.0,
                             math.expm1(evaluator.best_mean_reward) * 100.0)
            return True

    evaluator = sb3["EvalCallback"](eval_vec, n_eval_episodes=1, eval_freq=max(1, eval_every // o.n_envs),
                                    deterministic=True, best_model_save_path=str(ckpt), verbose=0,
                                    callback_after_eval=AfterEval(), warn=False)
    evaluator.best_mean_reward = best_reward
    observer.on_start(o.timesteps, done0)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=sb3["CallbackList"]([Progress(), evaluator]),
                    reset_num_timesteps=state is None, progress_bar=False)
    if stop.is_set():
        _save_checkpoint(model, ckpt, identity, evaluator.best_mean_reward)
        raise Interrupted(f"training stopped at step {model.num_timesteps} of {o.timesteps}; a checkpoint is in {ckpt}",
                          "continue it with the same command and --resume")
    observer.on_progress(model.num_timesteps, o.timesteps)
    observer.on_stage("selecting the best policy on validation")
    final_reward = segment_return(validation_env(), model.policy)
    best_file = ckpt / "best_model.zip"
    chosen = "final"
    if best_file.is_file() and evaluator.best_mean_reward > final_reward:
        final_params = model.get_parameters()
        try:
            model.set_parameters(str(best_file), exact_match=True, device="cpu")
            chosen = "best"
        except Exception:  # a damaged best model (crash while saving): keep the final one
            model.set_parameters(final_params, exact_match=True, device="cpu")
    validation_reward = evaluator.best_mean_reward if chosen == "best" else final_reward
    observer.on_stage("testing against buy-and-hold, flat and the rule strategy")
    test = evaluate_test(d, model.policy, costs, initial_equity, settings.strategy)
    observer.on_stage("saving")
    metadata = {
        "format": FORMAT, "algo": o.algo, "symbol": o.symbol, "timeframe": o.timeframe, "window": o.window,
        "features": d.spec.to_dict(), "state_features": list(STATE_FEATURES), "actions": list(ACTIONS),
        "observation_size": int(np.prod(vec.observation_space.shape)),
        "normalization": d.normalizer.to_dict(), "policy": {"net_arch": NET_ARCH[o.algo]},
        "data": _file_meta(d.candles.source, d.candles.sha256, d.candles),
        "sentiment": _sentiment_meta(d.sentiment), "split": d.split_meta(o.eval_fraction, o.test_fraction),
        "seed": o.seed, "hyperparameters": {**hyper, "n_envs": o.n_envs, "episode_bars": o.episode_bars,
                                            "timesteps_requested": o.timesteps},
        "costs": costs.to_dict(), "initial_equity": initial_equity, "timesteps": int(model.num_timesteps),
        "versions": library_versions(),
        "metrics": {"selected": chosen, "validation_return_pct": math.expm1(validation_reward) * 100.0,
                    "final_validation_return_pct": math.expm1(final_reward) * 100.0, "test": test.to_dict()},
        "model_sha256": "", "created_ms": int(time.time() * 1000),
    }
    return write_model(model, metadata, out)


def _file_meta(path: Path | None, sha256: str | None, candles: Candles) -> dict[str, Any]:
    return {"path": str(Path(path).resolve()) if path else "", "sha256": sha256 or "", "bars": len(candles),
            "first_ms": int(candles.ts[0]), "last_ms": int(candles.ts[-1])}


def _sentiment_meta(s: SentimentSeries | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"path": str(Path(s.source).resolve()) if s.source else "", "sha256": s.sha256 or "",
            "bars": int(s.ts_ms.shape[0]), "first_ms": int(s.ts_ms[0]), "last_ms": int(s.ts_ms[-1])}


def _save_checkpoint(model: Any, ckpt: Path, identity: dict[str, Any], best_reward: float) -> None:
    """Write ``checkpoint.zip`` and ``state.json`` atomically (temp file + ``os.replace``)."""
    tmp = ckpt / ".checkpoint.tmp.zip"
    model.save(str(tmp))
    os.replace(tmp, ckpt / "checkpoint.zip")
    state = {"identity": identity, "checkpoint": "checkpoint.zip", "num_timesteps": int(model.num_timesteps),
             "best_reward": best_reward if math.isfinite(best_reward) else None}
    tmp_state = ckpt / ".state.tmp.json"
    tmp_state.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp_state, ckpt / STATE_FILE)
