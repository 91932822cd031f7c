"""Wall time of user strategies against the built-in rules strategy, measured in the same run.

Replays the five 5m pairs of ../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07
(prepare + run: load, features, engine, paper broker, SQLite ledger in a temp dir) with

1. ``rules``: the built-in strategy (the baseline);
2. ``sigmax_cli.strategies.rules:RuleStrategy``: the same class loaded as a user module, so
   every bar goes through the user-strategy wrapper (feature conversion, checked ``on_bar``):
   same decisions, same orders, only the wrapper's cost differs;
3. a user file with numpy features (an SMA(48)/SMA(288) crossover with a rolling z-score
   filter, written to a temp dir), through ``--strategy PATH.py:ClassName``.

Prints the median wall time of each (runs interleaved) and its ratio to the baseline; the
issue's target is a ratio of at most 1.2. Orders are printed too: a strategy that trades
more spends more time in the broker and the ledger, which is not the wrapper's cost.

    python benchmarks/user_strategy.py [--data DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_DATA = Path(os.environ.get("SIGMAX_TEST_DATA", REPO.parent / "shared" / "data")) / "ohlcv" / \
    "binance_spot_freqtrade_2020-12_2021-07"

USER_FILE = '''
from dataclasses import dataclass

import numpy as np

from sigmax_cli.strategies import BaseStrategy, Signal


def sma(x, n):
    out = np.full(x.shape[0], np.nan)
    c = np.cumsum(np.concatenate(([0.0], x)))
    out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


class NumpyCross(BaseStrategy):
    name = "numpy_cross"

    @dataclass(frozen=True)
    class Params:
        fast: int = 48
        slow: int = 288
        z_window: int = 96
        z_max: float = 2.0

    def __init__(self, params=None):
        super().__init__(params)
        self.warmup = self.p.slow

    def features(self, candles):
        close = candles.close
        w = self.p.z_window
        mean = sma(close, w)
        sq = sma(close * close, w)
        std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 0, (close - mean) / std, 0.0)
        return {"fast": sma(close, self.p.fast), "slow": sma(close, self.p.slow), "z": z}

    def on_bar(self, bar, position):
        f, i = bar.features, bar.i
        above = f["fast"][i] > f["slow"][i]
        if position.qty == 0.0:
            if above and not f["fast"][i - 1] > f["slow"][i - 1] and f["z"][i] < self.p.z_max:
                return Signal(1.0, "cross up")
            return None
        if not above:
            return Signal(0.0, "cross down")
        return None
'''


def run(data: Path, spec: str) -> tuple[float, int, int]:
    from sigmax_cli.paper import PaperOptions, prepare_paper, run_paper
    from sigmax_cli.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), overrides={"timeframe": "5m"})
        t0 = time.perf_counter()
        plan = prepare_paper(settings, PaperOptions(data=data, strategy=spec))
        summary = run_paper(plan, threading.Event())
        return time.perf_counter() - t0, summary.bars, summary.orders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data directory {args.data} not found; pass --data")
    with tempfile.TemporaryDirectory() as tmp:
        user_file = Path(tmp) / "numpy_cross.py"
        user_file.write_text(USER_FILE)
        specs = {"rules (built-in)": "rules",
                 "rules as a user module": "sigmax_cli.strategies.rules:RuleStrategy",
                 "numpy user file": f"{user_file}:NumpyCross"}
        run(args.data, "rules")  # warm the file cache and the imports
        times: dict[str, list[float]] = {k: [] for k in specs}
        info: dict[str, tuple[int, int]] = {}
        for _ in range(args.repeat):
            for label, spec in specs.items():
                wall, bars, orders = run(args.data, spec)
                times[label].append(wall)
                info[label] = (bars, orders)
    base = statistics.median(times["rules (built-in)"])
    print(f"5m set, 5 pairs; median wall time of {args.repeat} interleaved runs (prepare + run)")
    for label in specs:
        t = statistics.median(times[label])
        bars, orders = info[label]
        print(f"{label:24s} {t:7.3f} s   {bars:9,} bars  {orders:6,} orders   ratio to rules {t / base:5.2f}")


if __name__ == "__main__":
    main()
