"""The RL trading environment and its features on real BTC candles: gymnasium's checker,
determinism under a seed, no look-ahead, and the paper broker's fills and equity for the
same orders."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from sigmax_cli.brokers.paper import PaperBroker  # noqa: E402
from sigmax_cli.data.candles import load_candles  # noqa: E402
from sigmax_cli.errors import DataError  # noqa: E402
from sigmax_cli.model import Bar, OrderRequest  # noqa: E402
from sigmax_cli.rl.dataset import prepare_dataset  # noqa: E402
from sigmax_cli.rl.env import FLAT, HOLD, LONG, CostModel, TradingEnv  # noqa: E402
from sigmax_cli.rl.features import (  # noqa: E402
    BASE_FEATURES,
    SENTIMENT_FEATURE,
    FeatureSpec,
    first_complete,
    load_fear_greed,
    raw_features,
)
from tests.conftest import FREQTRADE_1H  # noqa: E402

WINDOW = 16
FNG = "sentiment/alternative_me_fng_limit365_2025-04-22.json"


@pytest.fixture(scope="module")
def btc():
    """Real Binance BTC/USDT 1h candles, 2021-01-01 .. 2021-03-01 (1416 bars)."""
    candles = load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")
    return candles.slice(1609459200000, 1614556800000)


@pytest.fixture(scope="module")
def dataset(btc):
    return prepare_dataset(btc, FeatureSpec(), WINDOW, 0.2, 0.2)


def make_env(dataset, part="train", episode_bars=200, costs=None, balance=10_000.0):
    return TradingEnv(dataset.market, dataset.features, WINDOW, dataset.segments[part], costs or CostModel(),
                      balance, episode_bars=episode_bars)


def test_env_passes_gymnasiums_checker(dataset):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render.*")  # the env has no render modes
        check_env(make_env(dataset), skip_render_check=True)
        check_env(make_env(dataset, "test", episode_bars=None), skip_render_check=True)


def test_same_seed_same_episodes_other_seed_other_start(dataset):
    def episode(seed):
        env = make_env(dataset)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(7)
        trace = [(info["ts_ms"], obs.tobytes())]
        done = False
        while not done:
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(0, 3)))
            trace.append((info["ts_ms"], obs.tobytes(), reward, info["equity"]))
            done = terminated or truncated
        return trace

    first, again, other = episode(3), episode(3), episode(4)
    assert first == again
    assert len(first) == 201
    assert first[0][0] != other[0][0]  # another random start in the training part


def test_segments_are_chronological_and_disjoint(dataset, btc):
    (a, b), (c, d), (e, f) = (dataset.segments[k] for k in ("train", "validation", "test"))
    assert a == first_complete(dataset.raw) + WINDOW - 1
    # each part plays its own bars: the last bar a part plays is the next part's first decision bar
    assert b - 1 == c and d - 1 == e and f == len(btc)
    assert min(b - 1 - a, d - 1 - c, f - 1 - e) >= 48
    split = dataset.split_meta(0.2, 0.2)
    assert split["train"]["end_ms"] == split["validation"]["start_ms"] < split["test"]["start_ms"]
    # normalisation statistics come from the training part only
    train_rows = dataset.raw[first_complete(dataset.raw): b]
    assert np.allclose(dataset.normalizer.mean, train_rows.mean(axis=0))
    assert np.allclose(dataset.normalizer.std, train_rows.std(axis=0))


def test_features_at_bar_t_do_not_change_when_later_bars_change(btc):
    spec = FeatureSpec()
    k = 1000
    raw = raw_features(btc.ts, btc.close, btc.volume, spec)
    changed_close, changed_volume = btc.close.copy(), btc.volume.copy()
    changed_close[k + 1:] *= 1.7
    changed_volume[k + 1:] *= 5.0
    changed = raw_features(btc.ts, changed_close, changed_volume, spec)
    assert np.array_equal(raw[: k + 1], changed[: k + 1], equal_nan=True)
    assert not np.allclose(raw[k + 1:], changed[k + 1:])
    # a prefix alone gives the same rows (what a live feed computes at bar k)
    prefix = raw_features(btc.ts[: k + 1], btc.close[: k + 1], btc.volume[: k + 1], spec)
    assert np.allclose(prefix, raw[: k + 1], rtol=1e-9, atol=1e-12, equal_nan=True)


def test_observations_up_to_the_test_part_ignore_the_test_bars(btc, dataset):
    lo, hi = dataset.segments["test"]
    mutated = btc.slice()
    mutated.close = btc.close.copy()
    mutated.close[lo + 1:] *= 0.5
    mutated.open = np.minimum(btc.open, mutated.close)
    mutated.low = np.minimum(btc.low, mutated.close)
    other = prepare_dataset(mutated, FeatureSpec(), WINDOW, 0.2, 0.2)
    assert other.segments == dataset.segments
    assert np.array_equal(other.normalizer.mean, dataset.normalizer.mean)
    assert np.array_equal(other.features[: lo + 1], dataset.features[: lo + 1], equal_nan=True)
    env_a, env_b = make_env(dataset, "test", None), make_env(other, "test", None)
    assert np.array_equal(env_a.reset()[0], env_b.reset()[0])


def scripted_actions(n, seed=11):
    """Long, hold, flat and noise: every action in every state, some repeated."""
    rng = np.random.default_rng(seed)
    pattern = [LONG, HOLD, HOLD, LONG, FLAT, FLAT, HOLD, LONG, HOLD, HOLD, HOLD, FLAT]
    return [pattern[i] if i < len(pattern) else int(rng.choice([HOLD, HOLD, HOLD, LONG, FLAT])) for i in range(n)]


def replay_with_paper_broker(btc, env_orders, costs, balance, start, end):
    """Feed the environment's orders to the real PaperBroker at the same times; equity per bar."""
    broker = PaperBroker({"USDT": balance}, maker_fee=costs.taker_fee, taker_fee=costs.taker_fee,
                         slippage_bps=costs.slippage_bps, participation=costs.participation)
    by_time = {o.created_ms: o for o in env_orders}
    tf = btc.tf_ms
    equity, fills = [], []
    for u in range(start + 1, end + 1):
        decided = by_time.get(int(btc.ts[u - 1]) + tf)
        if decided is not None:
            assert not broker.has_open_orders("BTC/USDT")
            broker.submit(OrderRequest(symbol="BTC/USDT", side=decided.side, type="market", amount=decided.requested,
                                       client_order_id=f"o{u}", reference_price=decided.reference_price),
                          int(btc.ts[u - 1]) + tf)
        bar = Bar("BTC/USDT", int(btc.ts[u]), float(btc.open[u]), float(btc.high[u]), float(btc.low[u]),
                  float(btc.close[u]), float(btc.volume[u]), u, {})
        fills += broker.on_bar(bar).fills
        equity.append(broker.total("USDT") + broker.total("BTC") * float(btc.close[u]))
    return equity, fills


@pytest.mark.parametrize("balance", [10_000.0, 3e7], ids=["default-balance", "participation-cap-binds"])
def test_env_equity_equals_the_paper_brokers_for_the_same_orders(btc, dataset, balance):
    costs = CostModel(taker_fee=0.00075, slippage_bps=7.0, participation=0.1)
    env = make_env(dataset, "validation", None, costs, balance)
    env.reset()
    start = env.start_index
    env_equity = []
    for action in scripted_actions(dataset.segments["validation"][1] - 1 - start):
        _, _, _, truncated, info = env.step(action)
        env_equity.append(info["equity"])
        if truncated:
            break
    end = env.t
    assert len(env.orders) >= 6
    broker_equity, broker_fills = replay_with_paper_broker(btc, env.orders, costs, balance, start, end)
    assert env_equity == pytest.approx(broker_equity, rel=1e-12)
    assert [(f.ts_ms, f.side, f.amount) for f in env.fills] == [(f.ts_ms, f.side, f.amount) for f in broker_fills]
    for mine, theirs in zip(env.fills, broker_fills, strict=True):
        assert mine.price == pytest.approx(theirs.price, rel=1e-15) and mine.fee == pytest.approx(theirs.fee, rel=1e-12)
        assert mine.fee == pytest.approx(mine.price * mine.amount * 0.00075, rel=1e-12)  # the fee is always charged
    assert len({f.client_order_id for f in broker_fills}) == len(env.orders)  # every order filled
    if balance > 1e6:  # orders larger than 10 % of a bar's volume fill over several bars
        assert len(broker_fills) > len(env.orders) + 4


def test_reward_is_the_change_of_log_equity_net_of_costs(dataset):
    env = make_env(dataset, "test", None)
    env.reset()
    e0 = env.equity
    total = 0.0
    for action in (LONG, HOLD, HOLD, FLAT, HOLD):
        _, reward, _, _, info = env.step(action)
        total += reward
    assert total == pytest.approx(math.log(info["equity"] / e0), rel=1e-12)
    # a round trip at unchanged prices would lose fees and slippage on both legs
    assert [f.side for f in env.fills] == ["buy", "sell"]
    assert all(f.fee > 0 for f in env.fills)


def test_fear_and_greed_feature_is_known_before_the_bar_and_refused_when_missing(data_dir):
    daily = load_candles(data_dir / "ohlcv/binance_spot_daily_2017-2025/BTC_USDT-1d.csv", symbol="BTC/USDT",
                         timeframe="1d")
    fng = load_fear_greed(data_dir / FNG)
    body = json.loads((data_dir / FNG).read_text())["data"]
    stamped = {int(d["timestamp"]) * 1000: float(d["value"]) for d in body}
    values = fng.at(daily.ts)
    for ts, value in zip(daily.ts.tolist(), values.tolist(), strict=True):
        known = [t for t in stamped if t <= ts]
        if known and ts - max(known) <= 2 * 86_400_000:
            assert value == stamped[max(known)]  # the latest value stamped at or before the bar's open
        else:
            assert math.isnan(value)
    spec = FeatureSpec(names=(*BASE_FEATURES, SENTIMENT_FEATURE))
    covered = daily.slice(int(fng.ts_ms[0]) - 40 * 86_400_000, int(fng.ts_ms[-1]) + 86_400_000)
    data = prepare_dataset(covered, spec, 8, 0.2, 0.2, fng)
    assert data.features.shape[1] == 5
    make = TradingEnv(data.market, data.features, 8, data.segments["train"], episode_bars=50)
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*render.*")
        check_env(make, skip_render_check=True)
    hourly = load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")
    with pytest.raises(DataError) as err:
        prepare_dataset(hourly, spec, 8, 0.2, 0.2, fng)
    assert err.value.sentence().startswith("the sentiment file covers 2024-04-22")


def test_too_little_data_for_the_window_and_split_is_one_sentence(btc):
    short = btc.slice(None, int(btc.ts[300]))
    with pytest.raises(DataError) as err:
        prepare_dataset(short, FeatureSpec(), 64, 0.2, 0.2)
    sentence = err.value.sentence()
    assert "usable bars after the 33-bar feature warm-up and the 64-bar window" in sentence
    assert sentence.count(";") == 1 and sentence.endswith(".")
