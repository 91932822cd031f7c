"""Throughput of the whole `paper` path against merely loading the same candles.

Replays the ten 1h pairs and the five 5m pairs of
../shared/data/ohlcv/binance_spot_freqtrade_2020-12_2021-07 through load -> features ->
strategy -> RiskGuard -> paper broker -> SQLite ledger (a fresh ledger in a temp dir),
and, in the same run, times loading and validating the same files alone. Prints bars/s,
peak RSS and the ratio of paper time to load time.

    python benchmarks/paper_throughput.py [--data DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
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


def load_only(data: Path) -> tuple[float, int]:
    from sigmax_cli.data.candles import discover, load_candles

    t0 = time.perf_counter()
    bars = 0
    for tf in ("1h", "5m"):
        for file in discover(data, None, tf):
            bars += len(load_candles(file))
    return time.perf_counter() - t0, bars


def paper_run(data: Path, home: Path) -> tuple[float, int, float, int, int]:
    from sigmax_cli.paper import PaperOptions, prepare_paper, run_paper
    from sigmax_cli.settings import load_settings

    t0 = time.perf_counter()
    bars = orders = fills = 0
    engine_s = 0.0
    for tf in ("1h", "5m"):
        settings = load_settings(home=home, overrides={"timeframe": tf})
        plan = prepare_paper(settings, PaperOptions(data=data))
        summary = run_paper(plan, threading.Event())
        bars += summary.bars
        orders += summary.orders
        fills += summary.fills
        engine_s += summary.elapsed_s
    return time.perf_counter() - t0, bars, engine_s, orders, fills


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data directory {args.data} not found; pass --data")
    load_only(args.data)  # warm the OS file cache for both measurements
    loads, papers, engines = [], [], []
    for _ in range(args.repeat):
        t_load, loaded = load_only(args.data)
        with tempfile.TemporaryDirectory() as tmp:
            t_paper, bars, engine_s, orders, fills = paper_run(args.data, Path(tmp))
        loads.append(t_load)
        papers.append(t_paper)
        engines.append(engine_s)
    t_load, t_paper, t_engine = statistics.median(loads), statistics.median(papers), statistics.median(engines)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"candles loaded          {loaded:,} bars in 15 files (10 x 1h, 5 x 5m)")
    print(f"bars replayed           {bars:,} (after each strategy warm-up); {orders:,} orders, {fills:,} fills")
    print(f"load only               {t_load:8.3f} s   {loaded / t_load:12,.0f} bars/s")
    print(f"paper path (all)        {t_paper:8.3f} s   {bars / t_paper:12,.0f} bars/s   (median of {args.repeat})")
    print(f"  of which engine loop  {t_engine:8.3f} s   {bars / t_engine:12,.0f} bars/s")
    print(f"peak RSS                {peak_mb:8.1f} MiB")
    print(f"ratio paper / load      {t_paper / t_load:8.2f}")
    print(f"ratio engine / load     {t_engine / t_load:8.2f}")


if __name__ == "__main__":
    main()
