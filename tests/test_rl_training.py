"""`sigmax train-rl` end to end on real BTC/USDT 1h candles: a short PPO run, its files and
metadata, the model trading in `paper` exactly as in the environment, resume after an
interruption, A2C/DQN, and every way a model file can be unusable."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from sigmax_cli.data.candles import load_candles  # noqa: E402
from sigmax_cli.errors import ConfigError, Interrupted  # noqa: E402
from sigmax_cli.rl.checkpoint import checkpoint_dir  # noqa: E402
from sigmax_cli.rl.dataset import prepare_dataset  # noqa: E402
from sigmax_cli.rl.env import LONG, CostModel, MarketSeries, TradingEnv  # noqa: E402
from sigmax_cli.rl.evaluate import rollout  # noqa: E402
from sigmax_cli.rl.features import FeatureSpec, raw_features  # noqa: E402
from sigmax_cli.rl.model import check_compatible, load_model, read_metadata  # noqa: E402
from sigmax_cli.rl.observation import STATE_FEATURES  # noqa: E402
from sigmax_cli.rl.options import TrainOptions  # noqa: E402
from sigmax_cli.rl.progress import NullTrainObserver  # noqa: E402
from sigmax_cli.rl.train import train_rl  # noqa: E402
from sigmax_cli.settings import load_settings  # noqa: E402
from tests.conftest import FREQTRADE_1H  # noqa: E402

BTC_1H = FREQTRADE_1H / "BTC_USDT-1h.json"
TRAIN_ARGS = ["--data", str(BTC_1H), "--symbol", "BTC/USDT", "--timeframe", "1h", "--start", "2021-01-01",
              "--end", "2021-03-01", "--timesteps", "2048", "--n-steps", "256", "--n-envs", "2", "--window", "16",
              "--episode-bars", "256", "--eval-every", "1024", "--seed", "3"]

# Every limit out of the way and the whole balance per position, so that `paper` sizes and
# fills orders exactly as the environment does (position_fraction 1.0).
WIDE_OPEN = """
[strategy]
position_fraction = 1.0      # fraction of equity per symbol
[risk]
max_order_notional = 1e12    # USDT
max_position_notional = 1e12 # USDT
max_total_notional = 1e12    # USDT
max_open_orders = 10         # orders
daily_loss_limit_pct = 99.0  # percent
weekly_loss_limit_pct = 99.0 # percent
max_drawdown_pct = 99.0      # percent
max_consecutive_losses = 1000  # round trips
cooldown_minutes = 0         # minutes
[paper]
balance = 10000.0            # USDT
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short PPO training through the real CLI (2,048 steps, 2 environments)."""
    from typer.testing import CliRunner

    from commands.app import app

    root = tmp_path_factory.mktemp("rl")
    out = root / "models" / "btc.zip"
    result = CliRunner().invoke(app, ["--home", str(root / "home"), "train-rl", *TRAIN_ARGS, "--out", str(out),
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_training_writes_the_model_and_complete_metadata(trained):
    out, summary = trained
    meta = json.loads(out.with_suffix(".json").read_text())
    assert summary["model"] == str(out) and summary["timesteps"] == meta["timesteps"] >= 2048
    assert meta["model_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert meta["data"]["sha256"] == hashlib.sha256(BTC_1H.read_bytes()).hexdigest()
    assert (meta["symbol"], meta["timeframe"], meta["window"], meta["seed"]) == ("BTC/USDT", "1h", 16, 3)
    assert meta["features"]["names"] == ["log_return", "rsi", "macd_hist", "volume_z"]
    assert meta["state_features"] == list(STATE_FEATURES)
    assert len(meta["normalization"]["mean"]) == len(meta["normalization"]["std"]) == 4
    split = meta["split"]
    assert split["train"]["start_ms"] < split["train"]["end_ms"] == split["validation"]["start_ms"]
    assert split["validation"]["end_ms"] == split["test"]["start_ms"] < split["test"]["end_ms"]
    assert split["test"]["end_ms"] == 1614553200000  # 2021-02-28 23:00, the last bar before --end
    hyper = meta["hyperparameters"]
    assert (hyper["learning_rate"], hyper["n_steps"], hyper["batch_size"], hyper["n_envs"]) == (3e-4, 256, 64, 2)
    assert meta["versions"]["torch"].startswith("2.13.0") and meta["versions"]["stable-baselines3"]
    assert meta["costs"]["taker_fee"] == 0.001 and meta["costs"]["slippage_bps"] == 5.0
    test = meta["metrics"]["test"]["strategies"]
    assert set(test) == {"rl", "buy_and_hold", "flat", "rules"}
    for figures in test.values():
        assert set(figures) == {"return_pct", "sharpe", "max_drawdown_pct", "trades", "final_equity"}
    assert test["flat"] == {"return_pct": 0.0, "sharpe": None, "max_drawdown_pct": 0.0, "trades": 0,
                            "final_equity": 10000.0}
    assert test["buy_and_hold"]["trades"] == 1
    assert meta["metrics"]["selected"] in ("best", "final")
    assert summary["metrics"] == meta["metrics"]
    # nothing else is left beside the model: no temp files, no checkpoints
    assert sorted(p.name for p in out.parent.iterdir()) == ["btc.json", "btc.zip"]


def test_buy_and_hold_reference_is_the_test_parts_price_move_less_costs(trained):
    """Recomputed by hand: all-in at the first test bar's close (the engine's 2 % buy buffer,
    5 bps slippage and 0.1 % fee reserved), filled at the next open plus slippage, fee paid,
    marked at the last close."""
    import math

    out, _ = trained
    meta = read_metadata(out)
    candles = load_candles(BTC_1H)
    ts = candles.ts.tolist()
    lo, hi = ts.index(meta.split.test.start_ms), ts.index(meta.split.test.end_ms)
    qty = math.floor(10_000.0 / ((1 + 0.0005 + 0.02) * 1.001) / candles.close[lo] * 1e8) / 1e8
    price = candles.open[lo + 1] * 1.0005
    expected = 10_000.0 - qty * price * 1.001 + qty * candles.close[hi]
    assert meta.metrics["test"]["strategies"]["buy_and_hold"]["final_equity"] == pytest.approx(expected, rel=1e-9)


def test_the_model_trades_in_paper_exactly_as_in_the_environment(trained, cli, tmp_path):
    out, _ = trained
    model = load_model(out)
    meta = model.meta
    profile = tmp_path / "wide.toml"
    profile.write_text(WIDE_OPEN)
    result = cli("--profile", profile, "paper", "--data", BTC_1H, "--strategy", f"rl:{out}", "--start", "2021-03-01",
                 "--end", "2021-04-15", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["risk_denials"] == 0
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        fills = conn.execute("select ts_ms, side, price, amount, fee from fills order by ts_ms, rowid").fetchall()
        equity = dict(conn.execute("select ts_ms, equity from equity").fetchall())
        strategy = json.loads(conn.execute("select params_json from runs").fetchone()[0])["strategy"]
    assert strategy["model_sha256"] == meta.model_sha256 and strategy["name"] == "rl"
    assert len(fills) >= 2, "the trained policy must trade on these six weeks"
    # the same bars through the environment with the same policy: the same trades and equity
    candles = load_candles(BTC_1H)
    warmup = model.spec.warmup + meta.window - 1
    first = int(np.searchsorted(candles.ts, 1614556800000)) - warmup
    replay = candles.slice(int(candles.ts[first]), 1618444800000)
    features = model.normalizer.apply(raw_features(replay.ts, replay.close, replay.volume, model.spec))
    env = TradingEnv(MarketSeries.from_candles(replay), features, meta.window, (warmup, len(replay)), CostModel(),
                     10_000.0, episode_bars=None)
    run = rollout(env, lambda e, obs: model.predictor(obs))
    assert [(f.ts_ms, f.side) for f in run.fills] == [(f[0], f[1]) for f in fills]
    for mine, theirs in zip(run.fills, fills, strict=True):
        assert (mine.price, mine.amount) == pytest.approx((theirs[2], theirs[3]), rel=1e-12)
        assert mine.fee == pytest.approx(theirs[4], rel=1e-12)
    for ts, value in zip(run.ts_ms[1:].tolist(), run.equity[1:].tolist(), strict=True):
        assert equity[ts] == pytest.approx(value, rel=1e-12)
    assert summary["final_equity"] == pytest.approx(run.equity[-1], rel=1e-9)


def test_numpy_predictor_equals_stable_baselines3_predict(trained):
    from stable_baselines3 import PPO

    out, _ = trained
    model = load_model(out)
    sb3 = PPO.load(str(out), device="cpu")
    rng = np.random.default_rng(0)
    size = model.meta.observation_size
    obs = rng.uniform(-3, 3, size=(2000, size)).astype(np.float32)
    obs[:, -3] = rng.integers(0, 2, size=2000)
    obs[:, -1] = rng.uniform(0, 1, size=2000)
    expected, _ = sb3.predict(obs, deterministic=True)
    assert np.array_equal(model.predictor.batch(obs), expected)
    assert [model.predictor(o) for o in obs[:200]] == expected[:200].tolist()
    assert len(set(expected.tolist())) > 1  # the comparison covers more than one action


def test_model_refuses_data_of_another_timeframe_in_paper(trained, cli, tmp_path):
    out, _ = trained
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-5m.json", "--strategy", f"rl:{out}", "--no-tui")
    assert result.exit_code == 2
    assert result.stderr == ("error: the RL model was trained on 1h candles and the data is 5m; replay 1h candles "
                             "(--timeframe 1h) or train a model on 5m.\n")
    assert result.stdout == "" and not (tmp_path / "home" / "ledger.db").exists()


def test_model_refuses_another_feature_set_or_too_few_bars(trained):
    from sigmax_cli.errors import DataError

    meta = read_metadata(trained[0])
    with pytest.raises(ConfigError, match="reads features"):
        check_compatible(meta, timeframe="1h", spec=FeatureSpec(names=("log_return", "rsi")))
    with pytest.raises(DataError, match="needs 49 bars"):
        check_compatible(meta, timeframe="1h", bars=30)
    check_compatible(meta, timeframe="1h", spec=FeatureSpec(), bars=49)


def _broken_models(out: Path, tmp: Path):
    """(name, model path) pairs, each unusable in a different way."""
    meta = json.loads(out.with_suffix(".json").read_text())

    def pair(name, zip_bytes=None, metadata=None):
        path = tmp / f"{name}.zip"
        path.write_bytes(out.read_bytes() if zip_bytes is None else zip_bytes)
        if metadata is not None:
            path.with_suffix(".json").write_text(json.dumps(metadata))
        return path

    foreign = tmp / "foreign-src.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("README.txt", "not a model")
    other = dict(meta, model_sha256="0" * 64)
    incomplete = {k: v for k, v in meta.items() if k != "window"}
    wider = dict(meta, window=24, observation_size=24 * 4 + 3)
    return [
        ("corrupt", pair("corrupt", out.read_bytes()[:4000], meta), "is not a zip archive"),
        ("foreign", pair("foreign", foreign.read_bytes(), meta), "is a zip archive but not a stable-baselines3 model"),
        ("no-metadata", pair("no-metadata"), "has no metadata file no-metadata.json beside it"),
        ("bad-metadata", pair("bad-metadata", metadata=incomplete),
         "is not sigmax RL metadata (window: Field required)"),
        ("other-model", pair("other-model", metadata=other), "belongs to another model"),
        ("wrong-window", pair("wrong-window", metadata=wider), "do not fit its metadata (24-bar window"),
    ]


def test_every_unusable_model_file_is_one_sentence_exit_2_and_nothing_written(trained, cli, tmp_path):
    out, _ = trained
    models = tmp_path / "broken"
    models.mkdir()
    for name, path, message in _broken_models(out, models):
        result = cli("paper", "--data", BTC_1H, "--strategy", f"rl:{path}", "--no-tui", "--json")
        assert result.exit_code == 2, (name, result.output)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (name, result.stderr)
        assert message in result.stderr, (name, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "ledger.db").exists()


class _StopAfter(NullTrainObserver):
    def __init__(self, stop: threading.Event, steps: int) -> None:
        self.stop, self.steps = stop, steps

    def on_progress(self, done: int, total: int) -> None:
        if done >= self.steps:
            self.stop.set()


class _Recorder(NullTrainObserver):
    def __init__(self) -> None:
        self.starts: list[tuple[int, int]] = []
        self.progress: list[tuple[int, int]] = []

    def on_start(self, total: int, done: int) -> None:
        self.starts.append((total, done))

    def on_progress(self, done: int, total: int) -> None:
        self.progress.append((done, total))


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    settings = load_settings(home=tmp_path / "home")
    out = tmp_path / "m" / "resume.zip"
    options = TrainOptions(data=BTC_1H, symbol="BTC/USDT", timeframe="1h", out=out, timesteps=1024, n_steps=128,
                           window=8, episode_bars=128, start="2021-01-01", end="2021-03-01", seed=1,
                           eval_every=512, checkpoint_every=10_000)
    stop = threading.Event()
    with pytest.raises(Interrupted) as err:
        train_rl(settings, options, _StopAfter(stop, 300), stop)
    assert "training stopped at step" in err.value.cause and err.value.exit_code == 130
    ckpt = checkpoint_dir(out)
    state = json.loads((ckpt / "state.json").read_text())
    assert 300 <= state["num_timesteps"] < 1024
    assert not out.exists() and not out.with_suffix(".json").exists()
    with pytest.raises(ConfigError, match="holds checkpoints of an interrupted training"):
        train_rl(settings, options)
    from dataclasses import replace

    with pytest.raises(ConfigError, match=r"used other options or data \(split, window differ\)"):
        train_rl(settings, replace(options, window=12, resume=True))
    seen = _Recorder()
    result = train_rl(settings, replace(options, resume=True), seen)
    assert result.resumed_from == state["num_timesteps"]
    assert seen.starts == [(1024, state["num_timesteps"])]
    assert seen.progress and all(done <= total == 1024 for done, total in seen.progress)
    assert seen.progress[-1] == (1024, 1024)  # the last rollout ends past 1,024 steps; shown as 100 %
    assert result.meta.timesteps >= 1024
    assert out.is_file() and not ckpt.exists()
    with pytest.raises(ConfigError, match="there is no interrupted training to resume"):
        train_rl(settings, replace(options, resume=True))


@pytest.mark.parametrize("algo", ["a2c", "dqn"])
def test_a2c_and_dqn_train_and_load(tmp_path, algo):
    from stable_baselines3 import A2C, DQN

    settings = load_settings(home=tmp_path / "home")
    out = tmp_path / f"{algo}.zip"
    result = train_rl(settings, TrainOptions(data=BTC_1H, symbol="BTC/USDT", timeframe="1h", out=out, algo=algo,
                                             timesteps=400, window=8, episode_bars=128, start="2021-01-01",
                                             end="2021-03-01", eval_every=200))
    assert result.meta.algo == algo
    model = load_model(out)
    sb3 = {"a2c": A2C, "dqn": DQN}[algo].load(str(out), device="cpu")
    obs = np.random.default_rng(1).uniform(-2, 2, size=(500, model.meta.observation_size)).astype(np.float32)
    obs[:, -3] = np.round(obs[:, -3] > 0)
    obs[:, -1] = np.abs(obs[:, -1]) / 2
    assert np.array_equal(model.predictor.batch(obs), sb3.predict(obs, deterministic=True)[0])
    assert result.meta.hyperparameters["learning_rate"] == {"a2c": 7e-4, "dqn": 1e-4}[algo]


def test_observation_ends_with_the_account_state(trained):
    """The last three observation values are the account state: position, unrealised P&L,
    time in position."""
    out, _ = trained
    model = load_model(out)
    data = prepare_dataset(load_candles(BTC_1H).slice(1609459200000, 1614556800000), model.spec, model.meta.window,
                           0.2, 0.2)
    env = TradingEnv(data.market, data.features, model.meta.window, data.segments["test"], episode_bars=None)
    obs, _ = env.reset()
    obs, *_ = env.step(LONG)
    obs, *_ = env.step(0)
    assert obs[-3] == 1.0 and obs[-1] > 0 and obs[-2] != 0.0
    obs, *_ = env.step(2)
    obs, *_ = env.step(0)
    assert obs[-3:].tolist() == [0.0, 0.0, 0.0]


def test_training_is_deterministic_under_a_seed(tmp_path):
    import torch

    settings = load_settings(home=tmp_path / "home")
    weights = []
    for name in ("a", "b", "c"):
        out = tmp_path / f"{name}.zip"
        train_rl(settings, TrainOptions(data=BTC_1H, symbol="BTC/USDT", timeframe="1h", out=out, timesteps=256,
                                        n_steps=128, window=8, episode_bars=64, start="2021-01-01", end="2021-03-01",
                                        seed=5 if name != "c" else 6, eval_every=128))
        with zipfile.ZipFile(out) as archive, archive.open("policy.pth") as fh:
            weights.append(torch.load(fh, weights_only=True))
    same = [torch.equal(weights[0][k], weights[1][k]) for k in weights[0]]
    other = [torch.equal(weights[0][k], weights[2][k]) for k in weights[0]]
    assert all(same) and not all(other)
