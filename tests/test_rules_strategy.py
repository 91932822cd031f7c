"""RuleStrategy on hand-built bars (each rule, NaN, boundaries) and on real BTC candles;
the strategy factory."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sigmax_cli.data.candles import load_candles
from sigmax_cli.errors import ConfigError
from sigmax_cli.model import Bar
from sigmax_cli.settings import StrategySettings, load_settings
from sigmax_cli.strategies.base import PositionView, Strategy
from sigmax_cli.strategies.rules import FEATURES, RuleStrategy
from sigmax_cli.strategy_spec import load_strategy

NAN = math.nan
FLAT = PositionView(qty=0.0, avg_price=0.0, opened_ms=None)


def holding(avg: float) -> PositionView:
    return PositionView(qty=0.5, avg_price=avg, opened_ms=0)


def bar(close: float, *, rsi=(50.0, 50.0), hist=(1.0, 1.0), ema=90.0) -> Bar:
    """Bar i=1 of a two-bar feature series: (previous, current) RSI and MACD histogram."""
    features = {
        "ema_trend": [ema, ema],
        "rsi": list(rsi),
        "macd": [0.0, 0.0],
        "macd_signal": [0.0, 0.0],
        "macd_hist": list(hist),
    }
    return Bar("BTC/USDT", 3_600_000, close, close, close, close, 1.0, 1, features)


@pytest.fixture
def strategy() -> RuleStrategy:
    # default thresholds: rsi_entry 35, rsi_exit 70, stop 3 %, take profit 6 %
    return RuleStrategy(StrategySettings())


# --- entries ------------------------------------------------------------------------------


def test_entry_when_rsi_crosses_below_entry_in_uptrend(strategy):
    sig = strategy.on_bar(bar(100.0, rsi=(36.0, 31.2), hist=(-1.0, -2.0)), FLAT)
    assert sig is not None and sig.target == 1.0
    assert sig.reason == "rsi 31.2<35 uptrend"


def test_no_entry_while_rsi_stays_below_entry(strategy):
    # the dip started earlier (an exit may have happened inside it): wait for the next cross
    assert strategy.on_bar(bar(100.0, rsi=(30.0, 28.0), hist=(-1.0, -2.0)), FLAT) is None


def test_no_entry_below_trend_ema(strategy):
    assert strategy.on_bar(bar(100.0, rsi=(36.0, 31.0), ema=101.0), FLAT) is None
    assert strategy.on_bar(bar(100.0, rsi=(36.0, 31.0), ema=100.0), FLAT) is None  # strict >


def test_entry_when_macd_histogram_turns_up_below_rsi_50(strategy):
    sig = strategy.on_bar(bar(100.0, rsi=(44.0, 46.5), hist=(-0.4, 0.3)), FLAT)
    assert sig is not None and sig.target == 1.0
    assert sig.reason == "macd turned up, rsi 46.5 uptrend"
    # from exactly zero counts as a cross too
    assert strategy.on_bar(bar(100.0, rsi=(44.0, 46.5), hist=(0.0, 0.3)), FLAT) is not None


def test_no_macd_entry_when_rsi_at_or_above_50_or_no_cross(strategy):
    assert strategy.on_bar(bar(100.0, rsi=(48.0, 50.0), hist=(-0.4, 0.3)), FLAT) is None
    assert strategy.on_bar(bar(100.0, rsi=(44.0, 46.0), hist=(0.1, 0.3)), FLAT) is None


def test_no_entry_while_holding(strategy):
    assert strategy.on_bar(bar(100.0, rsi=(36.0, 31.0)), holding(100.0)) is None


# --- exits --------------------------------------------------------------------------------


def test_exit_when_rsi_above_exit(strategy):
    sig = strategy.on_bar(bar(101.0, rsi=(65.0, 72.34)), holding(100.0))
    assert sig is not None and sig.target == 0.0
    assert sig.reason == "rsi 72.3>70"
    assert strategy.on_bar(bar(101.0, rsi=(65.0, 70.0)), holding(100.0)) is None  # strict >


def test_exit_when_macd_turns_down_in_profit_only(strategy):
    sig = strategy.on_bar(bar(102.0, hist=(0.5, -0.1)), holding(100.0))
    assert sig is not None and sig.target == 0.0
    assert sig.reason == "macd turned down +2.0%"
    # at a loss the stop-loss decides, not the histogram
    assert strategy.on_bar(bar(99.0, hist=(0.5, -0.1)), holding(100.0)) is None
    # no cross: already negative before
    assert strategy.on_bar(bar(102.0, hist=(-0.2, -0.1)), holding(100.0)) is None


def test_stop_loss_at_and_below_threshold(strategy):
    at = 100.0 * (1.0 - 3.0 / 100.0)
    for close in (at, 90.0):
        sig = strategy.on_bar(bar(close), holding(100.0))
        assert sig is not None and sig.target == 0.0 and sig.reason.startswith("stop-loss ")
    assert strategy.on_bar(bar(90.0), holding(100.0)).reason == "stop-loss -10.0%"
    assert strategy.on_bar(bar(97.01), holding(100.0)) is None


def test_take_profit_at_and_above_threshold(strategy):
    at = 100.0 * (1.0 + 6.0 / 100.0)
    sig = strategy.on_bar(bar(at), holding(100.0))
    assert sig is not None and sig.target == 0.0 and sig.reason == "take-profit +6.0%"
    assert strategy.on_bar(bar(110.0), holding(100.0)).reason == "take-profit +10.0%"
    assert strategy.on_bar(bar(105.99), holding(100.0)) is None


def test_thresholds_follow_settings():
    s = RuleStrategy(
        StrategySettings(rsi_entry=25, rsi_exit=80, stop_loss_pct=1, take_profit_pct=2)
    )
    assert s.on_bar(bar(100.0, rsi=(36.0, 31.0)), FLAT) is None
    assert s.on_bar(bar(100.0, rsi=(26.0, 24.0)), FLAT).reason == "rsi 24.0<25 uptrend"
    assert s.on_bar(bar(101.0, rsi=(60.0, 75.0)), holding(100.0)) is None
    assert s.on_bar(bar(98.9), holding(100.0)).reason == "stop-loss -1.1%"
    assert s.on_bar(bar(102.0), holding(100.0)).reason == "take-profit +2.0%"


# --- NaN ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rsi": (36.0, NAN)},
        {"rsi": (NAN, 31.0)},
        {"rsi": (36.0, 31.0), "ema": NAN},
        {"rsi": (44.0, 46.0), "hist": (NAN, 0.3)},
        {"rsi": (44.0, NAN), "hist": (-0.4, 0.3)},
    ],
)
def test_nan_features_give_no_entry(strategy, kwargs):
    assert strategy.on_bar(bar(100.0, **kwargs), FLAT) is None


def test_nan_features_give_no_indicator_exit(strategy):
    all_nan = bar(102.0, rsi=(NAN, NAN), hist=(NAN, NAN), ema=NAN)
    assert strategy.on_bar(all_nan, holding(100.0)) is None
    assert strategy.on_bar(bar(102.0, rsi=(80.0, NAN), hist=(0.5, NAN)), holding(100.0)) is None


def test_price_exits_do_not_need_features(strategy):
    nan_bar = {"rsi": (NAN, NAN), "hist": (NAN, NAN), "ema": NAN}
    assert strategy.on_bar(bar(96.0, **nan_bar), holding(100.0)).reason == "stop-loss -4.0%"
    assert strategy.on_bar(bar(107.0, **nan_bar), holding(100.0)).reason == "take-profit +7.0%"


# --- interface, warm-up, real data --------------------------------------------------------


def test_interface_warmup_and_params():
    s = RuleStrategy(StrategySettings())
    assert isinstance(s, Strategy)
    assert s.name == "rules"
    assert s.warmup == 200  # max(200, 26 + 9, 14 + 1)
    short = RuleStrategy(
        StrategySettings(trend_ema=20, macd_slow=30, macd_signal=12, rsi_period=40)
    )
    assert short.warmup == 42
    assert RuleStrategy(StrategySettings(trend_ema=10, rsi_period=50)).warmup == 51
    params = s.params()
    assert params["name"] == "rules" and params["warmup"] == 200
    assert params["rsi_entry"] == 35.0 and params["stop_loss_pct"] == 3.0


def test_macd_fast_must_be_shorter_than_slow():
    with pytest.raises(ConfigError, match="macd_fast"):
        RuleStrategy(StrategySettings(macd_fast=26, macd_slow=26))


@pytest.fixture(scope="module")
def btc(data_dir):
    return load_candles(data_dir / "ohlcv/binance_spot_freqtrade_2020-12_2021-07/BTC_USDT-1h.json")


@pytest.mark.parametrize(
    "settings",
    [
        StrategySettings(),
        StrategySettings(trend_ema=50, macd_slow=40, macd_signal=15, rsi_period=30),
        StrategySettings(trend_ema=20, macd_slow=20, macd_signal=5, rsi_period=30),
    ],
)
def test_features_are_valid_exactly_from_warmup(btc, settings):
    s = RuleStrategy(settings)
    feats = s.features(btc)
    assert set(feats) == set(FEATURES)
    for name, values in feats.items():
        assert isinstance(values, list) and len(values) == len(btc)
        assert all(isinstance(v, float) for v in values[:5])
        # the first decision bar (index warmup) and the bar before it, read by crossings
        assert np.isfinite(values[s.warmup - 1 :]).all(), name
    # and the warm-up is not grossly long: at most one bar spare for the slowest feature
    assert any(math.isnan(values[s.warmup - 3]) for values in feats.values())


def _replay(strategy, candles):
    """Minimal long-only book: fill every signal at the bar's close."""
    feats = strategy.features(candles)
    pos = FLAT
    signals = []
    for i in range(strategy.warmup, len(candles)):
        c = float(candles.close[i])
        b = Bar(candles.symbol, int(candles.ts[i]), c, c, c, c, 1.0, i, feats)
        sig = strategy.on_bar(b, pos)
        if sig is None:
            continue
        signals.append((i, sig))
        pos = holding(c) if sig.target > 0 else FLAT
    return signals


def test_real_data_produces_entries_and_exits(btc):
    signals = _replay(RuleStrategy(StrategySettings()), btc)
    entries = [s for _, s in signals if s.target == 1.0]
    exits = [s for _, s in signals if s.target == 0.0]
    assert len(entries) >= 1 and len(exits) >= 1
    # a flat book never sees an exit and a full one never an entry: targets alternate
    assert all(a.target != b.target for (_, a), (_, b) in zip(signals, signals[1:], strict=False))
    assert all(s.reason for _, s in signals)
    # every entry happened above the trend EMA (the filter works on real data)
    ema = RuleStrategy(StrategySettings()).features(btc)["ema_trend"]
    assert all(btc.close[i] > ema[i] for i, s in signals if s.target == 1.0)


# --- factory ------------------------------------------------------------------------------


def test_load_strategy_rules_from_section_and_from_settings():
    s = load_strategy("rules", StrategySettings(rsi_entry=30))
    assert isinstance(s, RuleStrategy) and s.params()["rsi_entry"] == 30
    full = load_settings(profile="balanced")
    s2 = load_strategy(" Rules ", full)
    assert s2.params()["stop_loss_pct"] == full.strategy.stop_loss_pct == 4.0
    assert load_strategy("rules").params()["rsi_exit"] == 70.0


def test_load_strategy_rl_missing_model(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_strategy(f"rl:{tmp_path / 'nope.zip'}")
    sentence = err.value.sentence()
    assert sentence.startswith("the rl strategy needs a model trained with `sigmax train-rl`")
    assert "nope.zip does not exist" in sentence


def test_load_strategy_rl_refuses_a_file_that_is_not_a_model(tmp_path):
    pytest.importorskip("stable_baselines3")
    model = tmp_path / "model.zip"
    model.write_bytes(b"PK")
    with pytest.raises(ConfigError) as err:
        load_strategy(f"rl:{model}")
    assert "is not a zip archive" in err.value.sentence()
    with pytest.raises(ConfigError, match="model path"):
        load_strategy("rl:")


def test_load_strategy_unknown():
    with pytest.raises(ConfigError) as err:
        load_strategy("macd-cross")
    assert err.value.sentence() == ("unknown strategy 'macd-cross'; use rules, rl:MODEL.zip, PATH.py:ClassName, "
                                    "package.module:ClassName (`sigmax strategy list`).")
