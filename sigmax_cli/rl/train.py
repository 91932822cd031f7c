"""``sigmax train-rl``: train a policy on real candles with stable-baselines3.

Flow of :func:`train_rl` (everything a user can get wrong is checked before anything is
written, the data first):

1. **Options and data** (:mod:`sigmax_cli.rl.options`, :mod:`sigmax_cli.rl.dataset`): the
   candle file of ``--symbol`` / ``--timeframe`` is loaded and validated, optionally cut to
   ``--start``/``--end``; the features (:mod:`sigmax_cli.rl.features`) are computed
   causally over the whole series and split chronologically, without look-ahead, into
   train, validation and test parts; the normalisation is fitted on the training part.
   Only then are an existing model or checkpoints in the way refused.
2. **Training**: PPO by default (hyperparameters in :mod:`sigmax_cli.rl.options`).
   ``n_envs`` copies of the environment run in a ``DummyVecEnv`` on random windows of the
   training part (``episode_bars`` steps each).
3. **Model selection**: ``EvalCallback`` plays the whole validation part deterministically
   every ``eval_every`` steps and keeps the best policy; the final policy is evaluated too
   and the better of the two is kept.
4. **Checkpoints** (:mod:`sigmax_cli.rl.checkpoint`) every ``checkpoint_every`` steps;
   ``resume=True`` continues from the last one (the options must match). SIGINT/SIGTERM
   (the ``stop`` event) saves a checkpoint and raises :class:`~sigmax_cli.errors.Interrupted`.
   A resumed run continues the step count, the optimiser state and the best validation
   score; the environments start new episodes, and DQN starts with an empty replay buffer.
5. **Test**, two tables: the *environment's* (:mod:`sigmax_cli.rl.evaluate`: the policy,
   buy-and-hold, flat and the rule strategy trade the test part with the whole balance
   and no risk guard) and the *paper replay* (:mod:`sigmax_cli.rl.replay`: the policy over
   the same bars through the paper engine with the profile's sizing and risk guard, what
   ``sigmax paper --start <test start>`` shows). A warning says when the policy loses to
   staying flat (0 %) on validation or test.
6. **Output**: ``out`` (the zip) and its metadata JSON (:mod:`sigmax_cli.rl.model`),
   renamed into place at the end.

Progress reaches the user through a :class:`~sigmax_cli.rl.progress.TrainObserver`.
torch and stable-baselines3 are imported only inside this path.
"""

from __future__ import annotations

import copy
import math
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sigmax_cli.data.candles import Candles
from sigmax_cli.errors import ConfigError, Interrupted
from sigmax_cli.markets import MarketRules
from sigmax_cli.rl.checkpoint import STATE_FILE, checkpoint_dir, identity, read_state, save_checkpoint
from sigmax_cli.rl.dataset import Dataset, load_training_candles, prepare_dataset
from sigmax_cli.rl.env import ACTIONS, CostModel, TradingEnv
from sigmax_cli.rl.features import BASE_FEATURES, SENTIMENT_FEATURE, FeatureSpec, SentimentSeries, load_fear_greed
from sigmax_cli.rl.model import FORMAT, ModelMetadata, library_versions, metadata_path, write_model
from sigmax_cli.rl.observation import STATE_FEATURES
from sigmax_cli.rl.options import NET_ARCH, TrainOptions, check_options, default_out, hyperparameters, resolve_names
from sigmax_cli.rl.progress import NullTrainObserver, TrainObserver
from sigmax_cli.rl.replay import paper_markets, replay_test


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
            that does not match, an unreadable markets file, the rl extra not installed.
        DataError: missing, corrupt or too little data; a sentiment file with holes.
        Interrupted: ``stop`` was set; a checkpoint was saved for ``--resume``.
    """
    t0 = time.monotonic()
    o = check_options(resolve_names(options, settings))
    assert o.symbol is not None and o.timeframe is not None  # check_options fills them
    out = Path(o.out).expanduser() if o.out is not None else default_out(settings.home, o.symbol, o.timeframe, o.algo)
    if out.suffix != ".zip":
        raise ConfigError(f"--out {out} must end in .zip", f"pass e.g. --out {out.with_suffix('.zip')}")
    # the data first: too little or bad data is the news, whatever is in the way of --out
    sentiment = load_fear_greed(o.sentiment) if o.sentiment is not None else None
    spec = FeatureSpec(names=(*BASE_FEATURES, SENTIMENT_FEATURE) if sentiment is not None else BASE_FEATURES)
    candles = load_training_candles(o)
    dataset = prepare_dataset(candles, spec, o.window, o.eval_fraction, o.test_fraction, sentiment)
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
    costs = CostModel.from_settings(settings.paper)
    initial_equity = float(settings.paper.balance)
    markets = paper_markets(settings, o.data)  # for the paper replay of the test part; a bad file stops us now
    run_identity = identity(o, dataset, costs, initial_equity)
    state = read_state(state_file, run_identity) if o.resume else None
    _require_sb3()
    observer = observer or NullTrainObserver()
    warnings = _data_warnings(candles)
    if not o.resume and ckpt.exists():  # --force, or what a failed run left before its first checkpoint
        shutil.rmtree(ckpt)
    try:
        meta = _train(o, dataset, costs, initial_equity, out, ckpt, run_identity, state, observer,
                      stop or threading.Event(), settings, markets)
    except Exception:
        if not state_file.is_file():  # no checkpoint to resume from: leave nothing behind
            shutil.rmtree(ckpt, ignore_errors=True)
        raise
    finally:
        observer.on_finish()
    shutil.rmtree(ckpt, ignore_errors=True)
    return TrainResult(out, metadata_path(out), meta, int(state["num_timesteps"]) if state else 0,
                       time.monotonic() - t0, [*warnings, *meta.metrics.get("warnings", [])])


def _require_sb3() -> None:
    from sigmax_cli.rl import require_extra

    require_extra("train-rl and RL policies")


def _data_warnings(candles: Candles) -> list[str]:
    if not candles.gaps:
        return []
    return [f"{candles.symbol} {candles.timeframe} has {len(candles.gaps)} gaps ({candles.missing_bars} missing bars); "
            "the environment trades across them as the paper engine does"]


def _train(o: TrainOptions, d: Dataset, costs: CostModel, initial_equity: float, out: Path, ckpt: Path,
           run_identity: dict[str, Any], state: dict[str, Any] | None, observer: TrainObserver,
           stop: threading.Event, settings: Any, markets: dict[str, MarketRules]) -> ModelMetadata:
    import stable_baselines3
    import torch
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sigmax_cli.rl.evaluate import segment_return

    torch.set_num_threads(o.torch_threads)
    hyper = hyperparameters(o, o.timesteps)
    algorithms: dict[str, type[BaseAlgorithm]] = {"ppo": stable_baselines3.PPO, "a2c": stable_baselines3.A2C,
                                                  "dqn": stable_baselines3.DQN}
    algo_cls = algorithms[o.algo]
    clip = d.normalizer.clip
    total = o.timesteps

    def train_env(rank: int) -> Any:
        def make() -> Monitor:
            env = TradingEnv(d.market, d.features, o.window, d.segments["train"], costs, initial_equity,
                             episode_bars=o.episode_bars, clip=clip)
            env.reset(seed=o.seed + rank)
            env.action_space.seed(o.seed + rank)
            return Monitor(env)
        return make

    def validation_env() -> TradingEnv:
        return TradingEnv(d.market, d.features, o.window, d.segments["validation"], costs, initial_equity,
                          episode_bars=None, clip=clip)

    vec = DummyVecEnv([train_env(i) for i in range(o.n_envs)])
    vec.seed(o.seed)
    eval_vec = DummyVecEnv([lambda: Monitor(validation_env())])
    ckpt.mkdir(parents=True, exist_ok=True)
    if state is not None:
        model = algo_cls.load(str(ckpt / state["checkpoint"]), env=vec, device="cpu")
        best_reward = float(state["best_reward"]) if state.get("best_reward") is not None else -math.inf
    else:
        # a deep copy: A2C writes its optimizer class into the policy_kwargs it is given
        model = algo_cls("MlpPolicy", vec, seed=o.seed, device="cpu", verbose=0, **copy.deepcopy(hyper))
        best_reward = -math.inf
    done0 = min(int(model.num_timesteps), total)
    remaining = max(0, total - int(model.num_timesteps))
    eval_every = o.eval_every or max(1, total // 10)
    ckpt_every = o.checkpoint_every or max(1, total // 5)
    progress_every = max(1, total // 200)

    class Progress(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last_progress = done0
            self.last_ckpt = done0

        def _on_step(self) -> bool:
            done = self.num_timesteps
            if done - self.last_progress >= progress_every:
                observer.on_progress(min(done, total), total)  # whole rollouts can end past the budget
                self.last_progress = done
            if done - self.last_ckpt >= ckpt_every:
                save_checkpoint(self.model, ckpt, run_identity, evaluator.best_mean_reward)
                self.last_ckpt = done
            return not stop.is_set()

    class AfterEval(BaseCallback):
        def _on_step(self) -> bool:
            observer.on_eval(self.num_timesteps, math.expm1(evaluator.last_mean_reward) * 100.0,
                             math.expm1(evaluator.best_mean_reward) * 100.0)
            return True

    evaluator = EvalCallback(eval_vec, n_eval_episodes=1, eval_freq=max(1, eval_every // o.n_envs),
                             deterministic=True, best_model_save_path=str(ckpt), verbose=0,
                             callback_after_eval=AfterEval(), warn=False)
    evaluator.best_mean_reward = best_reward
    observer.on_start(total, done0)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=CallbackList([Progress(), evaluator]),
                    reset_num_timesteps=state is None, progress_bar=False)
    if stop.is_set():
        save_checkpoint(model, ckpt, run_identity, evaluator.best_mean_reward)
        raise Interrupted(f"training stopped at step {model.num_timesteps} of {total}; a checkpoint is in {ckpt}",
                          "continue it with the same command and --resume")
    observer.on_progress(min(int(model.num_timesteps), total), total)
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
            # get_parameters' own value; stable-baselines3's hint names only file paths and flat dicts
            model.set_parameters(final_params, exact_match=True, device="cpu")  # type: ignore[arg-type]
    validation_reward = evaluator.best_mean_reward if chosen == "best" else final_reward
    metadata = {
        "format": FORMAT, "algo": o.algo, "symbol": o.symbol, "timeframe": o.timeframe, "window": o.window,
        "features": d.spec.to_dict(), "state_features": list(STATE_FEATURES), "actions": list(ACTIONS),
        "observation_size": int(np.prod(vec.observation_space.shape or (0,))),
        "normalization": d.normalizer.to_dict(), "policy": {"net_arch": NET_ARCH[o.algo]},
        "data": _file_meta(d.candles.source, d.candles.sha256, d.candles),
        "sentiment": _sentiment_meta(d.sentiment), "split": d.split_meta(o.eval_fraction, o.test_fraction),
        "seed": o.seed, "hyperparameters": {**hyper, "n_envs": o.n_envs, "episode_bars": o.episode_bars,
                                            "timesteps_requested": o.timesteps},
        "costs": costs.to_dict(), "initial_equity": initial_equity, "timesteps": int(model.num_timesteps),
        "versions": library_versions(), "model_sha256": "", "created_ms": int(time.time() * 1000),
    }
    metadata["metrics"] = _test(d, model.policy, metadata, costs, initial_equity, settings, markets, observer, out,
                                chosen, validation_reward, final_reward)
    observer.on_stage("saving")
    return write_model(model, metadata, out)


def _test(d: Dataset, policy: Any, metadata: dict[str, Any], costs: CostModel, initial_equity: float,
          settings: Any, markets: dict[str, MarketRules], observer: TrainObserver, out: Path, chosen: str,
          validation_reward: float, final_reward: float) -> dict[str, Any]:
    """The metrics of the chosen policy: validation, the environment's test table, the paper
    replay of the test part and the warnings when it loses to staying flat."""
    from sigmax_cli.rl.evaluate import evaluate_test
    from sigmax_cli.rl.model import LoadedModel, Predictor

    observer.on_stage("testing against buy-and-hold, flat and the rule strategy")
    test = evaluate_test(d, policy, costs, initial_equity, settings.strategy)
    observer.on_stage(f"replaying the test part through the paper engine (profile {settings.profile})")
    meta = ModelMetadata.model_validate({**metadata, "metrics": {}})
    loaded = LoadedModel(out, meta, d.spec, d.normalizer, Predictor(policy))
    paper = replay_test(settings, d, loaded, markets)
    validation_pct = math.expm1(validation_reward) * 100.0
    rl_test = test.result("rl")
    warnings = []
    if validation_pct < 0.0:
        warnings.append(f"the selected policy loses to staying flat on validation ({validation_pct:+.2f}% vs 0%)")
    if rl_test.return_pct < test.result("flat").return_pct:
        warnings.append(f"the selected policy loses to staying flat on the test part ({rl_test.return_pct:+.2f}% "
                        "vs 0% in the environment)")
    if paper.return_pct < 0.0:
        warnings.append(f"the selected policy loses to staying flat in the paper replay of the test part "
                        f"({paper.return_pct:+.2f}% vs 0% with profile {paper.profile})")
    return {"selected": chosen, "validation_return_pct": validation_pct,
            "final_validation_return_pct": math.expm1(final_reward) * 100.0, "test": test.to_dict(),
            "paper": paper.to_dict(), "warnings": warnings}


def _file_meta(path: Path | None, sha256: str | None, candles: Candles) -> dict[str, Any]:
    return {"path": str(Path(path).resolve()) if path else "", "sha256": sha256 or "", "bars": len(candles),
            "first_ms": int(candles.ts[0]), "last_ms": int(candles.ts[-1])}


def _sentiment_meta(s: SentimentSeries | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"path": str(Path(s.source).resolve()) if s.source else "", "sha256": s.sha256 or "",
            "bars": int(s.ts_ms.shape[0]), "first_ms": int(s.ts_ms[0]), "last_ms": int(s.ts_ms[-1])}
