"""Checkpoints of an interrupted training: ``<out stem>.checkpoints/`` beside the model, holding
``checkpoint.zip`` (stable-baselines3's archive) and ``state.json`` (the run's identity, the
step count and the best validation score), both written atomically.

A resumed run must match the identity (:func:`identity`: everything but the step budget).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from sigmax_cli.errors import ConfigError
from sigmax_cli.rl.dataset import Dataset
from sigmax_cli.rl.env import CostModel
from sigmax_cli.rl.options import TrainOptions, hyperparameters

STATE_FILE = "state.json"


def checkpoint_dir(out: Path) -> Path:
    """``models/btc.zip`` -> ``models/btc.checkpoints``."""
    return out.with_name(out.stem + ".checkpoints")


def identity(o: TrainOptions, d: Dataset, costs: CostModel, initial_equity: float) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (everything but the step budget)."""
    return json.loads(json.dumps({
        "algo": o.algo, "symbol": o.symbol, "timeframe": o.timeframe, "data_sha256": d.candles.sha256,
        "sentiment_sha256": d.sentiment.sha256 if d.sentiment else None, "window": o.window,
        "features": d.spec.to_dict(), "split": d.split_meta(o.eval_fraction, o.test_fraction), "seed": o.seed,
        "n_envs": o.n_envs, "episode_bars": o.episode_bars, "costs": costs.to_dict(),
        "initial_equity": initial_equity,
        "hyperparameters": {k: v for k, v in hyperparameters(o, o.timesteps).items()
                            if k not in ("buffer_size", "learning_starts", "target_update_interval")},
    }))


def read_state(state_file: Path, identity: dict[str, Any]) -> dict[str, Any]:
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


def save_checkpoint(model: Any, ckpt: Path, identity: dict[str, Any], best_reward: float) -> None:
    """Write ``checkpoint.zip`` and ``state.json`` atomically (temp file + ``os.replace``)."""
    tmp = ckpt / ".checkpoint.tmp.zip"
    model.save(str(tmp))
    os.replace(tmp, ckpt / "checkpoint.zip")
    state = {"identity": identity, "checkpoint": "checkpoint.zip", "num_timesteps": int(model.num_timesteps),
             "best_reward": best_reward if math.isfinite(best_reward) else None}
    tmp_state = ckpt / ".state.tmp.json"
    tmp_state.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp_state, ckpt / STATE_FILE)
