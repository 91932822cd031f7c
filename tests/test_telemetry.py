"""What ``sigmax run --metrics-port`` publishes about rejections, blocked exits and the
buy-and-hold benchmark, read from the real engine bar by bar (:class:`LiveMetrics.update`, as
the live loop calls it after each tick) on 400 real ETH/USDT bars. The exchange's refusals come
from the refusing paper broker of tests/test_exact_runs.py (no real exchange refuses on cue)."""

from __future__ import annotations

import json
import threading

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sigmax_cli.data.candles import load_candles
from sigmax_cli.engine import Engine, EngineConfig
from sigmax_cli.feeds import ReplayFeed
from sigmax_cli.ledger import Ledger
from sigmax_cli.markets import from_ccxt
from sigmax_cli.observability.metrics import series_names
from sigmax_cli.risk.guard import build_guard
from sigmax_cli.settings import RiskSettings
from sigmax_cli.telemetry import LiveMetrics
from tests.test_exact_runs import FREQTRADE, STATIC_MARKETS, BuyThenSellForever, RefusingExchange


def _samples(metrics: LiveMetrics) -> dict[tuple, float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_rejections_by_cause_blocked_exits_and_buy_and_hold_follow_the_engine(data_dir, tmp_path):
    part = tmp_path / "ETH_USDT-1h.json"
    part.write_text(json.dumps(json.loads((data_dir / FREQTRADE / "ETH_USDT-1h.json").read_text())[:400]))
    candles = load_candles(part)
    rules = {"ETH/USDT": from_ccxt(json.loads((data_dir / STATIC_MARKETS).read_text())["ETH/USDT"])}
    broker = RefusingExchange({"USDT": 10_000.0}, rules, refuse=12)
    strategy = BuyThenSellForever()
    risk = RiskSettings(max_order_notional=1e6, max_position_notional=1e6, max_total_notional=1e6,
                        max_orders_per_minute=1_000, cooldown_minutes=0, max_consecutive_losses=1000,
                        daily_loss_limit_pct=99, weekly_loss_limit_pct=99, max_drawdown_pct=99,
                        max_consecutive_rejections=3)
    metrics = LiveMetrics("tel", "paper", "binance")
    seen: list[dict[tuple, float]] = []
    with Ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        ledger.start_run(run_id="tel", mode="paper", profile="t", exchange="binance", strategy="t", params={},
                         symbols=["ETH/USDT"], timeframe="1h", data_files=[], initial_equity=10_000.0)
        config = EngineConfig(run_id="tel", mode="paper", profile="t", quote="USDT", initial_equity=10_000.0,
                              position_fraction=0.2, max_order_notional=1e6, max_position_notional=1e6,
                              taker_fee=0.001, slippage_bps=5.0, daily_loss_limit_pct=99.0, heartbeat_s=0.0,
                              max_consecutive_rejections=3)
        engine = Engine(config=config, feed=ReplayFeed({"ETH/USDT": candles}, strategy.features), strategy=strategy,
                        broker=broker, guard=build_guard(risk), ledger=ledger)
        step = engine._step

        def step_then_publish(ts, bars):  # what the live loop does after each tick (_after_tick)
            step(ts, bars)
            metrics.update(engine)
            seen.append(_samples(metrics))

        engine._step = step_then_publish
        summary = engine.run(threading.Event())

    blocked = ("sigmax_exit_blocked", (("symbol", "ETH/USDT"),))
    rejected = ("sigmax_order_rejections_total", (("cause", "exchange"),))
    assert seen[0][blocked] == 0  # every symbol is published from the first tick
    assert any(s[blocked] == 1 for s in seen) and seen[-1][blocked] == 0  # blocked, then unblocked
    counts = [s.get(rejected, 0) for s in seen]
    assert counts == sorted(counts) and counts[-1] == summary.rejections["exchange"] == 12
    first_blocked = next(i for i, s in enumerate(seen) if s[blocked] == 1)
    assert seen[first_blocked][rejected] == 3  # the threshold: three in a row block the exit
    final = seen[-1]
    bench = final[("sigmax_buy_and_hold_equity", ())]
    assert bench == engine.benchmark_equity
    assert round((bench / 10_000.0 - 1.0) * 100.0, 6) == summary.benchmark_return_pct  # the report's figure
    assert final[("sigmax_risk_denials_total", ())] == summary.risk_denials
    assert {name for name, _ in final if not name.endswith("_created")} <= series_names()
