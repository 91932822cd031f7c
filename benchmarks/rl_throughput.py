"""RL throughput: raw environment steps/s, PPO training steps/s with our environment against
a trivial one of the same shapes, and the latency of one decision.

On real BTC/USDT 1h candles (../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07):

1. raw ``TradingEnv.step`` calls per second (random actions, episodes of 720 bars);
2. PPO (stable-baselines3, ``MlpPolicy``, n_steps 2048, batch 64, one CPU thread) training
   steps per second on ``TradingEnv`` and, in the same run, on a trivial environment with
   the same observation and action spaces that does no work (pre-drawn observations,
   reward 0). Runs alternate between the two and the medians are compared; target ratio
   ours / trivial >= 0.8 (the environment is not the bottleneck);
3. latency of one decision for one observation: the numpy forward pass the RL strategy
   uses (:class:`sigmax_cli.rl.model.Predictor`) and, for reference, stable-baselines3's
   ``model.predict``; p50 and p99 over ``--predicts`` calls; target p99 < 2 ms.

    python benchmarks/rl_throughput.py [--steps 4096] [--repeat 3] [--predicts 5000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data")) / "ohlcv" / \
    "binance_spot_freqtrade_2020-12_2021-07" / "BTC_USDT-1h.json"
WINDOW = 32


def build_env(data: Path):
    from sigmax_cli.data.candles import load_candles
    from sigmax_cli.rl.dataset import prepare_dataset
    from sigmax_cli.rl.env import TradingEnv
    from sigmax_cli.rl.features import FeatureSpec

    dataset = prepare_dataset(load_candles(data), FeatureSpec(), WINDOW, 0.2, 0.2)
    return lambda: TradingEnv(dataset.market, dataset.features, WINDOW, dataset.segments["train"],
                              episode_bars=720)


def trivial_env_class():
    import gymnasium as gym
    from gymnasium import spaces

    from sigmax_cli.rl.env import ACTIONS
    from sigmax_cli.rl.observation import observation_space

    class TrivialEnv(gym.Env):
        """Same spaces and episode length as TradingEnv; each step returns a pre-drawn observation."""

        def __init__(self) -> None:
            self.observation_space = observation_space(WINDOW, 4, 10.0)
            self.action_space = spaces.Discrete(len(ACTIONS))
            self._obs = np.random.default_rng(0).uniform(-1, 1, (1024, self.observation_space.shape[0])) \
                .astype(np.float32)
            self._obs[:, -3:] = 0.0
            self._t = 0

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self._t = 0
            return self._obs[0], {}

        def step(self, action):
            self._t += 1
            return self._obs[self._t % 1024], 0.0, False, self._t >= 720, {}

    return TrivialEnv


def raw_steps_per_s(make_env, steps: int) -> float:
    env = make_env()
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, 3, steps).tolist()
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - t0)


def ppo_steps_per_s(make_env, steps: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    model = PPO("MlpPolicy", DummyVecEnv([make_env]), n_steps=2048, batch_size=64, seed=0, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - t0)


def latencies_us(fn, obs: np.ndarray, n: int) -> tuple[float, float]:
    for o in obs[:200]:  # warm-up
        fn(o)
    times = np.empty(n)
    for i in range(n):
        o = obs[i % len(obs)]
        t0 = time.perf_counter()
        fn(o)
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e6), float(np.percentile(times, 99) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=4096, help="PPO timesteps per run (multiple of 2048)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--predicts", type=int, default=5000)
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"candle file {args.data} not found; pass --data")
    import torch

    torch.set_num_threads(1)
    make_env = build_env(args.data)
    trivial = trivial_env_class()
    raw = statistics.median(raw_steps_per_s(make_env, 50_000) for _ in range(args.repeat))
    raw_trivial = statistics.median(raw_steps_per_s(trivial, 50_000) for _ in range(args.repeat))
    ppo_step = min(args.steps, 2048)
    ppo_steps_per_s(trivial, ppo_step)  # warm-up: first optimizer build imports torch's compiler stack
    ours, theirs = [], []
    for _ in range(args.repeat):
        ours.append(ppo_steps_per_s(make_env, args.steps))
        theirs.append(ppo_steps_per_s(trivial, args.steps))
    ppo_ours, ppo_trivial = statistics.median(ours), statistics.median(theirs)

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sigmax_cli.rl.model import Predictor

    model = PPO("MlpPolicy", DummyVecEnv([make_env]), seed=0, device="cpu", verbose=0)
    env = make_env()
    obs = [env.reset(seed=0)[0]]
    for a in np.random.default_rng(1).integers(0, 3, 999).tolist():
        o, _, term, trunc, _ = env.step(a)
        obs.append(env.reset()[0] if term or trunc else o)
    obs_arr = np.stack(obs)
    predictor = Predictor(model.policy)
    assert np.array_equal(predictor.batch(obs_arr), model.predict(obs_arr, deterministic=True)[0])
    np_p50, np_p99 = latencies_us(predictor, obs_arr, args.predicts)
    sb3_p50, sb3_p99 = latencies_us(lambda o: model.predict(o, deterministic=True), obs_arr, args.predicts)

    ratio = ppo_ours / ppo_trivial
    print(f"observation             {obs_arr.shape[1]} float32 ({WINDOW} bars x 4 features + 3 account values), "
          "3 actions")
    print(f"raw env steps/s         {raw:12,.0f}   (trivial env {raw_trivial:,.0f}; median of {args.repeat})")
    print(f"PPO steps/s, our env    {ppo_ours:12,.0f}   ({args.steps} steps per run, n_steps 2048, batch 64, "
          "1 thread)")
    print(f"PPO steps/s, trivial    {ppo_trivial:12,.0f}")
    print(f"ratio ours / trivial    {ratio:12.2f}   (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")
    print(f"predict numpy  p50/p99  {np_p50:8.1f} / {np_p99:8.1f} us   (target p99 < 2000 us: "
          f"{'met' if np_p99 < 2000 else 'NOT met'})")
    print(f"predict sb3    p50/p99  {sb3_p50:8.1f} / {sb3_p99:8.1f} us   (torch forward, for reference)")
    print(f"ratio sb3 / numpy p50   {sb3_p50 / np_p50:12.1f}")


if __name__ == "__main__":
    main()
