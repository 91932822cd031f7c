"""Options of ``sigmax train-rl`` (:class:`TrainOptions`), their checks and the algorithms'
hyperparameters.

PPO by default with stable-baselines3's defaults, which are the hyperparameters of the
original implementation (learning rate 3e-4, ``n_steps`` 2048, batch 64, 10 epochs, gamma
0.99, GAE lambda 0.95, clip 0.2: Schulman et al. 2017, "Proximal Policy Optimization
Algorithms"); A2C (lr 7e-4, ``n_steps`` 5) and DQN (lr 1e-4, batch 32) are selectable with
their stable-baselines3 defaults, except that DQN's replay buffer holds at most
``timesteps`` transitions and its target network is updated at least ten times per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sigmax_cli.data.candles import parse_filename
from sigmax_cli.errors import ConfigError
from sigmax_cli.rl.model import ALGOS

DEFAULT_HYPER: dict[str, dict[str, Any]] = {
    "ppo": {"learning_rate": 3e-4, "n_steps": 2048, "batch_size": 64},
    "a2c": {"learning_rate": 7e-4, "n_steps": 5},
    "dqn": {"learning_rate": 1e-4, "batch_size": 32},
}
NET_ARCH: dict[str, Any] = {"ppo": {"pi": [64, 64], "vf": [64, 64]}, "a2c": {"pi": [64, 64], "vf": [64, 64]},
                            "dqn": [64, 64]}
MAX_WINDOW = 512


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
    if o.symbol is None or o.timeframe is None:
        raise ConfigError("the symbol and timeframe are not known", "pass --symbol and --timeframe")
    hyper: dict[str, Any] = dict(DEFAULT_HYPER[algo])
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
    for name, steps in (("--eval-every", o.eval_every), ("--checkpoint-every", o.checkpoint_every)):
        if steps is not None and steps < 1:
            raise ConfigError(f"{name} must be at least 1 step, not {steps}", f"pass e.g. {name} 10000")
    symbol = o.symbol.strip().upper()
    if "/" not in symbol:
        raise ConfigError(f"symbol {o.symbol!r} must look like BASE/QUOTE", "pass e.g. --symbol BTC/USDT")
    from sigmax_cli.timeframes import timeframe_to_ms

    timeframe_to_ms(o.timeframe)
    return replace(o, algo=algo, symbol=symbol, learning_rate=hyper["learning_rate"], n_steps=hyper.get("n_steps"),
                   batch_size=hyper.get("batch_size"))


def hyperparameters(o: TrainOptions, timesteps: int) -> dict[str, Any]:
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


def default_out(home: Path, symbol: str, timeframe: str, algo: str) -> Path:
    """``$SIGMAX_HOME/models/BTC_USDT-1h-ppo.zip``."""
    return Path(home) / "models" / f"{symbol.replace('/', '_').replace(':', '_')}-{timeframe}-{algo}.zip"
