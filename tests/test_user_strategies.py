"""Users' own strategies: files, modules and installed plugins, their parameters, their
errors (one sentence at load time; their own traceback and a failed run at run time), the
template of `sigmax strategy new`, and `sigmax strategy check` (look-ahead, warm-up)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FREQTRADE_1H, REPO

SMA_CROSS = '''
from dataclasses import dataclass

import numpy as np

from sigmax_cli.strategies import BaseStrategy, Signal


class SmaCross(BaseStrategy):
    name = "sma_cross"

    @dataclass(frozen=True)
    class Params:
        fast: int = 10
        slow: int = 40

        def __post_init__(self):
            if not 1 <= self.fast < self.slow:
                raise ValueError("fast must be shorter than slow")

    def __init__(self, params=None):
        super().__init__(params)
        self.warmup = self.p.slow

    @staticmethod
    def sma(x, n):
        out = np.full(x.shape, np.nan)
        c = np.cumsum(np.concatenate(([0.0], x)))
        out[n - 1:] = (c[n:] - c[:-n]) / n
        return out

    def features(self, candles):
        return {"fast": self.sma(candles.close, self.p.fast), "slow": self.sma(candles.close, self.p.slow)}

    def on_bar(self, bar, position):
        f, i = bar.features, bar.i
        above = f["fast"][i] > f["slow"][i]
        if position.qty == 0.0 and above and not f["fast"][i - 1] > f["slow"][i - 1]:
            return Signal(1.0, "cross up")
        if position.qty > 0.0 and not above:
            return Signal(0.0, "below")
        return None
'''

PROFILE = """
symbols = ["BTC/USDT"]
timeframe = "1h"
[strategy]
position_fraction = 0.5
[strategy.sma_cross]
fast = 12
slow = 48
"""


def rows(home: Path, sql: str, *args):
    with sqlite3.connect(home / "ledger.db") as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, args)]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def sma(x: np.ndarray, n: int) -> np.ndarray:
    import pandas as pd

    return pd.Series(x).rolling(n).mean().to_numpy()


def test_sma_cross_file_trades_the_real_1h_set_with_profile_params_recorded(cli, tmp_path):
    strat = write(tmp_path / "sma_cross.py", SMA_CROSS)
    profile = write(tmp_path / "p.toml", PROFILE)
    spec = f"{strat}:SmaCross"
    result = cli("--profile", profile, "paper", "--data", FREQTRADE_1H, "--symbols", "BTC/USDT", "--timeframe",
                 "1h", "--strategy", spec, "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["fills"] > 10
    home = tmp_path / "home"
    (run,) = rows(home, "select * from runs")
    assert run["strategy"] == spec
    recorded = json.loads(run["params_json"])["strategy"]
    assert recorded["params"] == {"fast": 12, "slow": 48}
    assert recorded["name"] == "sma_cross" and recorded["warmup"] == 48 and recorded["kind"] == "file"
    import hashlib

    assert recorded["sha256"] == hashlib.sha256(strat.read_bytes()).hexdigest()
    # every buy was decided on a bar where SMA(12) crossed above SMA(48) (pandas, independently)
    from sigmax_cli.data.candles import load_candles

    c = load_candles(FREQTRADE_1H / "BTC_USDT-1h.json")
    fast, slow = sma(c.close, 12), sma(c.close, 48)
    up = fast > slow
    crossed = {int(c.ts[i]) + 3_600_000 for i in range(1, len(c)) if up[i] and not up[i - 1]}
    buys = rows(home, "select created_ms from orders where side = 'buy'")
    assert buys and all(b["created_ms"] in crossed for b in buys)
    sells = rows(home, "select created_ms from orders where side = 'sell'")
    below = {int(c.ts[i]) + 3_600_000 for i in range(len(c)) if not up[i]}
    assert sells and all(s["created_ms"] in below for s in sells)


def test_parameters_from_the_environment_are_converted_and_recorded(cli, tmp_path, monkeypatch):
    strat = write(tmp_path / "sma_cross.py", SMA_CROSS)
    monkeypatch.setenv("SIGMAX_STRATEGY__SMA_CROSS__FAST", "5")
    result = cli("paper", "--data", FREQTRADE_1H / "ETH_USDT-1h.json", "--strategy", f"{strat}:SmaCross",
                 "--max-bars", "200", "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    (run,) = rows(tmp_path / "home", "select params_json from runs")
    assert json.loads(run["params_json"])["strategy"]["params"] == {"fast": 5, "slow": 40}


@pytest.mark.parametrize(("table", "expected"), [
    ("fsat = 3", "strategy sma_cross has no parameter 'fsat' (it declares fast, slow); fix [strategy.sma_cross]"),
    ('fast = "abc"', "strategy sma_cross parameter fast: Input should be a valid integer"),
    ("fast = 1.5", "strategy sma_cross parameter fast:"),
    ("fast = 50", "strategy sma_cross parameter"),  # __post_init__: fast must be shorter than slow
])
def test_unknown_or_ill_typed_parameters_are_one_sentence_exit_2(cli, tmp_path, table, expected):
    strat = write(tmp_path / "sma_cross.py", SMA_CROSS)
    profile = write(tmp_path / "p.toml", f"[strategy.sma_cross]\n{table}\n")
    result = cli("--profile", profile, "paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy",
                 f"{strat}:SmaCross", "--no-tui")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    if "post_init" in table or table == "fast = 50":
        assert "fast must be shorter than slow" in lines[0]
    assert not (tmp_path / "home" / "ledger.db").exists()


BROKEN = {
    "missing": (None, "{d}/nope.py:X", "strategy file {d}/nope.py does not exist"),
    "syntax": ("def broken(:\n", "{f}:X", "has a syntax error at line 1"),
    "import": ("import numpy\nimport sigmax_no_such_module\n", "{f}:X",
               "cannot be imported: line 2: ModuleNotFoundError: No module named 'sigmax_no_such_module'; "
               "install sigmax_no_such_module"),
    "raises": ("x = 1 / 0\n", "{f}:X", "cannot be imported: line 1: ZeroDivisionError"),
    "no_class": (SMA_CROSS, "{f}:SmaCros", "has no class SmaCros (it defines SmaCross)"),
    "not_strategy": ("class X:\n    warmup = 3\n    def features(self, candles):\n        return {}\n", "{f}:X",
                     "X in strategy file {f} is not a sigmax Strategy: it has no on_bar method"),
    "not_class": ("X = 3\n", "{f}:X", "X in strategy file {f} is a int, not a strategy class"),
    "bad_init": ("class X:\n    def __init__(self):\n        raise RuntimeError('no key')\n"
                 "    def features(self, c):\n        return {}\n    def on_bar(self, b, p):\n        return None\n",
                 "{f}:X", "strategy x could not be created: strat.py line 3: RuntimeError: no key"),
    "module": (None, "sigmax_no_such_pkg.strat:X", "module sigmax_no_such_pkg.strat named by --strategy"),
    "plugin": (None, "no_such_plugin", "unknown strategy 'no_such_plugin'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_strategy_gets_its_sentence_exit_2_nothing_written(cli, tmp_path, case):
    text, spec, expected = BROKEN[case]
    f = tmp_path / "strat.py"
    if text is not None:
        f.write_text(text)
    spec = spec.format(d=tmp_path, f=f)
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy", spec, "--no-tui")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert expected.format(d=tmp_path, f=f) in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "ledger.db").exists()


RAISES_IN_ON_BAR = SMA_CROSS + '''

class Fragile(SmaCross):
    name = "fragile"

    def on_bar(self, bar, position):
        if bar.i >= 1500:
            return self.ratio(bar)
        return super().on_bar(bar, position)

    def ratio(self, bar):
        return 1.0 / (bar.close - bar.close)
'''


def test_an_exception_in_on_bar_shows_the_users_traceback_and_ends_the_run_failed(cli, tmp_path):
    strat = write(tmp_path / "fragile.py", RAISES_IN_ON_BAR)
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy", f"{strat}:Fragile",
                 "--no-tui", "--json")
    assert result.exit_code == 4, result.output
    err = result.stderr
    assert result.stdout == ""
    assert err.startswith("Traceback (most recent call last):")
    assert f'File "{strat}", line' in err and "in ratio" in err and "1.0 / (bar.close - bar.close)" in err
    assert "sigmax_cli" not in err  # only the user's frames
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: strategy fragile raised ZeroDivisionError in on_bar() (BTC/USDT bar ")
    assert "sigmax strategy check" in last
    home = tmp_path / "home"
    (run,) = rows(home, "select * from runs")
    assert run["status"] == "failed" and run["ended_ms"] is not None
    summary = json.loads(run["summary_json"])
    assert "ZeroDivisionError" in summary["error"]
    (event,) = rows(home, "select * from events where kind = 'run.failed'")
    assert event["level"] == "critical"
    # the ledger is consistent: every fill is an order's, and the positions follow the fills
    fills = rows(home, "select * from fills")
    assert fills
    orphans = rows(home, "select count(*) n from fills f left join orders o on f.client_order_id = o.client_order_id"
                         " where o.client_order_id is null")
    assert orphans[0]["n"] == 0
    held = sum(f["amount"] if f["side"] == "buy" else -f["amount"] for f in fills)
    (last_pos,) = rows(home, "select qty from positions order by ts_ms desc, id desc limit 1")
    assert last_pos["qty"] == pytest.approx(held, abs=1e-8)
    assert rows(home, "select count(*) n from equity")[0]["n"] == 1500 - 40 + 1 - 1  # bars 40..1499 finished


def test_an_exception_in_features_is_exit_4_with_traceback_and_no_run(cli, tmp_path):
    strat = write(tmp_path / "bad.py", SMA_CROSS.replace('return {"fast"', 'return {"fast": candles.nope, "x"'))
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy", f"{strat}:SmaCross",
                 "--no-tui")
    assert result.exit_code == 4, result.output
    assert f'File "{strat}", line' in result.stderr and "AttributeError" in result.stderr
    assert "raised AttributeError in features() (BTC/USDT" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "home" / "ledger.db").exists()


def test_a_feature_of_the_wrong_length_is_one_sentence(cli, tmp_path):
    strat = write(tmp_path / "short.py", SMA_CROSS.replace('"slow": self.sma(candles.close, self.p.slow)',
                                                           '"slow": candles.close[1:]'))
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy", f"{strat}:SmaCross",
                 "--no-tui")
    assert result.exit_code == 4
    (line,) = result.stderr.strip().splitlines()
    assert "feature 'slow' of strategy sma_cross has shape (5481,) for 5482 bars" in line


# -- the template ------------------------------------------------------------------------------
def test_strategy_new_writes_a_template_that_runs_as_is_and_never_overwrites(cli, tmp_path):
    result = cli("strategy", "new", "my_cross", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    path = tmp_path / "my_cross.py"
    assert Path(doc["path"]).resolve() == path and doc["spec"].endswith("my_cross.py:MyCross")
    text = path.read_text()
    run = cli("paper", "--data", FREQTRADE_1H, "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h",
              "--strategy", doc["spec"], "--no-tui", "--json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout)["fills"] > 0
    again = cli("strategy", "new", "my_cross")
    assert again.exit_code == 2 and "exists already" in again.stderr
    assert path.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".my_cross")) == []
    bad = cli("strategy", "new", "My-Cross")
    assert bad.exit_code == 2 and "is not a lower-case identifier" in bad.stderr


def test_the_template_passes_its_own_check(cli, tmp_path):
    assert cli("strategy", "new", "tpl").exit_code == 0
    result = cli("strategy", "check", tmp_path / "tpl.py:Tpl", "--data", FREQTRADE_1H, "--symbol", "ETH/USDT",
                 "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["lookahead"] == [] and doc["needed_warmup"] == 39


# -- strategy check ----------------------------------------------------------------------------
CHECKED = '''
import numpy as np

from sigmax_cli.strategies import BaseStrategy, indicators


class Peek(BaseStrategy):
    """Reads the next bar's close: look-ahead."""

    warmup = 5

    def features(self, candles):
        nxt = np.full(len(candles), np.nan)
        nxt[:-1] = candles.close[1:]
        return {"close": candles.close, "next_close": nxt}

    def on_bar(self, bar, position):
        return None


class Cold(BaseStrategy):
    """EMA(300) with a 10-bar warm-up: under-warmed."""

    warmup = 10

    def features(self, candles):
        return {"ema300": indicators.ema(candles.close, 300), "ret": indicators.log_returns(candles.close)}

    def on_bar(self, bar, position):
        return None


class Total(BaseStrategy):
    """A cumulative volume: never settles."""

    warmup = 10

    def features(self, candles):
        return {"cum_volume": np.cumsum(candles.volume)}

    def on_bar(self, bar, position):
        return None
'''


def check(cli, tmp_path, cls: str):
    f = tmp_path / "checked.py"
    if not f.exists():
        f.write_text(CHECKED)
    result = cli("strategy", "check", f"{f}:{cls}", "--data", FREQTRADE_1H, "--symbol", "BTC/USDT", "--bars",
                 "3000", "--json")
    return result, json.loads(result.stdout)


def test_check_flags_a_strategy_that_reads_the_next_close(cli, tmp_path):
    result, doc = check(cli, tmp_path, "Peek")
    assert result.exit_code == 1
    assert doc["lookahead"] == ["next_close"]
    feats = {f["name"]: f for f in doc["features"]}
    assert feats["close"]["lookahead"] is False and feats["close"]["history_bars"] == 0
    assert feats["next_close"]["first_changed_bar"] is not None


def test_check_measures_history_and_flags_an_under_warmed_ema(cli, tmp_path):
    result, doc = check(cli, tmp_path, "Cold")
    assert result.exit_code == 3
    assert doc["lookahead"] == [] and doc["underwarmed"] == ["ema300"]
    feats = {f["name"]: f for f in doc["features"]}
    assert feats["ret"]["history_bars"] == 1  # ln(c[i] / c[i-1])
    # EMA(300) seeded with an SMA: its seed's error decays as (1 - 2/301)**k; it must take far more than
    # the 300-bar seed window to fall under 1e-6 of the price
    assert 300 < feats["ema300"]["history_bars"] < 2999
    assert doc["needed_warmup"] == feats["ema300"]["history_bars"]


def test_check_reports_a_feature_that_never_settles(cli, tmp_path):
    result, doc = check(cli, tmp_path, "Total")
    assert result.exit_code == 3
    assert doc["features"][0]["history_bars"] is None and doc["needed_warmup"] is None


def test_check_gives_the_exact_history_of_an_sma(cli, tmp_path):
    strat = write(tmp_path / "sma_cross.py", SMA_CROSS)
    profile = write(tmp_path / "p.toml", PROFILE)
    result = cli("--profile", profile, "strategy", "check", f"{strat}:SmaCross", "--data",
                 FREQTRADE_1H / "LTC_USDT-1h.json", "--json")
    assert result.exit_code == 0, result.output
    feats = {f["name"]: f["history_bars"] for f in json.loads(result.stdout)["features"]}
    assert feats == {"fast": 11, "slow": 47}


# -- plugins -----------------------------------------------------------------------------------
PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "sigmax-test-plugin"
version = "0.3.1"

[project.entry-points."sigmax.strategies"]
test_cross = "sigmax_test_plugin.cross:PluginCross"

[tool.setuptools]
packages = ["sigmax_test_plugin"]
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A real distribution, built by setuptools and installed by pip into a private --target.

    pip and the build backend write the ``entry_points.txt`` of its ``.dist-info`` exactly as
    for a user's ``pip install``; ``--target`` (added to the subprocesses' PYTHONPATH) keeps the
    shared environment untouched, and ``--no-index --no-build-isolation`` needs no network.
    """
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    pkg = src / "sigmax_test_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cross.py").write_text(SMA_CROSS.replace("class SmaCross", "class PluginCross")
                                  .replace('name = "sma_cross"', 'name = "test_cross"'))
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)],
                   check=True, capture_output=True, timeout=300)
    assert list(target.glob("sigmax_test_plugin-0.3.1.dist-info/entry_points.txt"))
    return target


def sigmax(plugin_path: Path, home: Path, *args: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(REPO)]), "SIGMAX_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "commands.app", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=home.parent)


def test_an_installed_plugin_is_listed_and_runs(plugin_path, tmp_path):
    home = tmp_path / "home"
    listed = sigmax(plugin_path, home, "strategy", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    by_spec = {r["spec"]: r for r in json.loads(listed.stdout)["strategies"]}
    assert by_spec["rules"]["kind"] == "built-in"
    row = by_spec["test_cross"]
    assert row["kind"] == "plugin" and row["error"] is None
    assert row["source"] == "sigmax-test-plugin 0.3.1: sigmax_test_plugin.cross:PluginCross"
    assert row["params"] == {"fast": 10, "slow": 40}
    ran = sigmax(plugin_path, home, "paper", "--data", str(FREQTRADE_1H / "BTC_USDT-1h.json"), "--strategy",
                 "test_cross", "--no-tui", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["fills"] > 0
    (run,) = rows(home, "select strategy, params_json from runs")
    recorded = json.loads(run["params_json"])["strategy"]
    assert run["strategy"] == "test_cross" and recorded["kind"] == "plugin"
    assert recorded["source"] == "sigmax-test-plugin 0.3.1 (sigmax_test_plugin.cross:PluginCross)"


def test_a_module_spec_runs_from_the_python_path(plugin_path, tmp_path):
    ran = sigmax(plugin_path, tmp_path / "home", "paper", "--data", str(FREQTRADE_1H / "ETH_USDT-1h.json"),
                 "--strategy", "sigmax_test_plugin.cross:PluginCross", "--max-bars", "300", "--no-tui", "--json")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["status"] == "completed"


# -- history before --start --------------------------------------------------------------------
def test_a_replay_from_start_loads_the_history_the_features_need(tmp_path):
    """With --start, a replay loads ``strategy.history`` bars before it (not only the warm-up), so
    the features on the first traded bar equal those of a replay over the whole file."""
    import dataclasses
    import threading

    from sigmax_cli.data.candles import load_candles
    from sigmax_cli.paper import PaperOptions, prepare_paper
    from sigmax_cli.settings import load_settings
    from sigmax_cli.strategy_spec import load_strategy
    from sigmax_cli.timeframes import parse_time

    btc = FREQTRADE_1H / "BTC_USDT-1h.json"
    plan = prepare_paper(load_settings(home=tmp_path / "home"), PaperOptions(data=btc, start="2021-04-01"))
    strategy = plan.strategy
    assert strategy.history > strategy.warmup
    first = next(plan.feed.steps(threading.Event()))
    assert first.ts_ms == parse_time("2021-04-01", "--start")  # trading starts at --start, not before
    (bar,) = first.bars
    assert bar.i == strategy.history
    candles = load_candles(btc)
    at = int(np.searchsorted(candles.ts, first.ts_ms))
    whole = strategy.features(candles)
    cut = {k: getattr(candles, k)[at - strategy.warmup:] for k in ("ts", "open", "high", "low", "close", "volume")}
    only_warmup = load_strategy("rules").features(dataclasses.replace(candles, **cut))
    for name, series in whole.items():
        assert bar.features[name][bar.i] == pytest.approx(series[at], rel=1e-6, abs=1e-9), name
    # what the warm-up alone used to give: the trend EMA had not settled
    assert abs(only_warmup["ema_trend"][strategy.warmup] / whole["ema_trend"][at] - 1) > 1e-4


PANDAS_TA = '''
import pandas as pd
import ta

from sigmax_cli.strategies import BaseStrategy, Signal


class PandasRsi(BaseStrategy):
    """Features as a pandas DataFrame, with the `ta` library's RSI."""

    warmup = 60

    def features(self, candles):
        close = pd.Series(candles.close)
        return pd.DataFrame({"rsi": ta.momentum.RSIIndicator(close, window=14).rsi(),
                             "trend": close.rolling(50).mean()})

    def on_bar(self, bar, position):
        rsi, trend = bar.features["rsi"][bar.i], bar.features["trend"][bar.i]
        if position.qty == 0.0 and rsi < 30 and bar.close > trend * 0.97:
            return Signal(1.0, "oversold")
        if position.qty > 0.0 and rsi > 60:
            return Signal(0.0, "recovered")
        return None
'''


def test_features_may_be_a_pandas_frame_built_with_ta(cli, tmp_path):
    pytest.importorskip("ta")
    strat = write(tmp_path / "pandas_rsi.py", PANDAS_TA)
    result = cli("paper", "--data", FREQTRADE_1H / "ETH_USDT-1h.json", "--strategy", strat, "--no-tui", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["fills"] > 0


def test_sys_exit_in_on_bar_is_the_strategys_failure_too(cli, tmp_path):
    strat = write(tmp_path / "quits.py", SMA_CROSS.replace("        f, i = bar.features, bar.i\n",
                                                           "        import sys\n        sys.exit(0)\n"))
    result = cli("paper", "--data", FREQTRADE_1H / "BTC_USDT-1h.json", "--strategy", f"{strat}:SmaCross",
                 "--no-tui")
    assert result.exit_code == 4, result.output
    assert "raised SystemExit in on_bar()" in result.stderr.strip().splitlines()[-1]
    (run,) = rows(tmp_path / "home", "select status from runs")
    assert run["status"] == "failed"
