"""train-rl's second test table: the test period replayed through the paper engine.

The environment's table (:mod:`sigmax_cli.rl.evaluate`) assumes the whole balance in every
position and no risk guard. What ``sigmax paper --strategy rl:MODEL.zip`` shows differs: the
engine sizes each position with the profile's ``strategy.position_fraction``, caps it with
``risk.max_order_notional`` / ``max_position_notional`` and sends it through the RiskGuard.
:func:`replay_test` runs the chosen policy over the test part exactly as ``sigmax paper
--data FILE --start <test start> --end <train-rl's --end>`` would under the invocation's
profile: the same :class:`~sigmax_cli.rl.strategy.RLStrategy`, the history it loads before
``--start`` (:attr:`~sigmax_cli.rl.strategy.RLStrategy.history`, as far as train-rl's data
reaches back), the :class:`~sigmax_cli.engine.Engine`, the paper broker with
``settings.paper``'s costs, the market rules ``paper`` would use (``--markets`` /
``SIGMAX_MARKETS_FILE``, else the ``markets.json`` beside the data, else defaults) and the
risk guard from ``settings.risk``.

It differs from ``paper`` only in what is not a trading decision: the run is recorded in a
throw-away SQLite ledger (never in the user's), and neither the kill switch, nor alerts,
nor the research sentiment stream take part (a replay of the past must not depend on the
state of Redis today). Under ``profiles/rl-env.toml`` (the environment's account: position
fraction 1, limits out of the way) both tables agree to the cent; ``tests/test_rl_replay.py``
checks it.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sigmax_cli.markets import MarketRules, load_markets_file, markets_file_beside


@dataclass(frozen=True)
class PaperReplay:
    """The paper engine's result over the test part. Money in quote currency.

    Attributes:
        profile: the profile the replay ran with.
        position_fraction: the profile's fraction of equity per position.
        start_ms, end_ms: first decision bar and last bar (open times, UTC ms).
        history_bars: bars loaded before ``start_ms`` for the features to settle.
        return_pct, max_drawdown_pct: percent over the test part.
        final_equity: quote currency at the last bar's close.
        orders, fills, risk_denials: counts; ``fees`` quote currency.
        trading_state: the risk guard's state at the end (``ACTIVE``, ``REDUCING``, ``HALTED``).
    """

    profile: str
    position_fraction: float
    start_ms: int
    end_ms: int
    history_bars: int
    return_pct: float
    max_drawdown_pct: float
    final_equity: float
    orders: int
    fills: int
    risk_denials: int
    fees: float
    trading_state: str

    @property
    def basis(self) -> str:
        """What this table assumes, in words (shown with it, and in ``--json``)."""
        return (f"paper engine: profile {self.profile}, {self.position_fraction * 100:g} % of equity per position, "
                "the profile's risk guard")

    def to_dict(self) -> dict[str, Any]:
        return {"basis": self.basis, **asdict(self)}


def paper_markets(settings: Any, data: Path) -> dict[str, MarketRules]:
    """The market rules ``sigmax paper --data data`` would use (see the module docstring).

    Raises:
        ConfigError: a markets file that cannot be read.
    """
    if settings.markets_file is not None:
        return load_markets_file(settings.markets_file)
    beside = markets_file_beside(Path(data))
    return load_markets_file(beside) if beside is not None else {}


def replay_test(settings: Any, dataset: Any, model: Any, markets: dict[str, MarketRules]) -> PaperReplay:
    """Replay the test part of ``dataset`` with ``model`` through the paper engine.

    Args:
        settings: the invocation's :class:`~sigmax_cli.settings.Settings` (profile, paper
            costs and balance, risk limits, position fraction).
        dataset: the run's :class:`~sigmax_cli.rl.dataset.Dataset`.
        model: a :class:`~sigmax_cli.rl.model.LoadedModel` (the chosen policy).
        markets: market rules by symbol (:func:`paper_markets`, read before training so that a
            bad file stops train-rl before hours of work); a missing symbol trades with
            :func:`~sigmax_cli.markets.default_rules`, as in ``paper``.
    """
    from sigmax_cli.brokers.paper import PaperBroker
    from sigmax_cli.engine import Engine, EngineConfig
    from sigmax_cli.feeds import ReplayFeed
    from sigmax_cli.ledger import Ledger
    from sigmax_cli.risk.guard import build_guard
    from sigmax_cli.rl.strategy import RLStrategy
    from sigmax_cli.strategies.base import history_bars
    from sigmax_cli.timeframes import timeframe_to_ms

    candles = dataset.candles
    lo, hi = dataset.segments["test"]
    strategy = RLStrategy(model.path, settings, model=model)
    cut = max(0, lo - history_bars(strategy))
    replay = candles.slice(int(candles.ts[cut]), None)
    feed = ReplayFeed({candles.symbol: replay}, strategy.features, skip=lo - cut)
    quote = candles.symbol.split("/")[1].split(":")[0]
    paper, risk = settings.paper, settings.risk
    broker = PaperBroker({quote: paper.balance}, markets, maker_fee=paper.maker_fee,
                         taker_fee=paper.taker_fee, slippage_bps=paper.slippage_bps,
                         participation=paper.participation)
    guard = build_guard(risk, timeframe_to_ms(candles.timeframe))
    config = EngineConfig(
        run_id="train-rl-test", mode="paper", profile=settings.profile, quote=quote, initial_equity=paper.balance,
        position_fraction=settings.strategy.position_fraction, max_order_notional=risk.max_order_notional,
        max_position_notional=risk.max_position_notional, taker_fee=paper.taker_fee,
        slippage_bps=paper.slippage_bps, daily_loss_limit_pct=risk.daily_loss_limit_pct,
        max_consecutive_rejections=risk.max_consecutive_rejections,
    )
    with tempfile.TemporaryDirectory(prefix="sigmax-train-rl-") as tmp, \
            Ledger(f"sqlite:///{Path(tmp) / 'replay.db'}") as ledger:
        ledger.start_run(run_id=config.run_id, mode="paper", profile=settings.profile, exchange=settings.exchange,
                         strategy=f"rl:{model.path}", params={"strategy": strategy.params()},
                         symbols=[candles.symbol], timeframe=candles.timeframe, data_files=feed.data_files(),
                         initial_equity=paper.balance)
        engine = Engine(config=config, feed=feed, strategy=strategy, broker=broker, guard=guard, ledger=ledger)
        summary = engine.run(threading.Event())
    return PaperReplay(
        profile=settings.profile, position_fraction=float(settings.strategy.position_fraction),
        start_ms=int(candles.ts[lo]), end_ms=int(candles.ts[hi - 1]), history_bars=lo - cut,
        return_pct=summary.return_pct, max_drawdown_pct=summary.max_drawdown_pct,
        final_equity=summary.final_equity, orders=summary.orders, fills=summary.fills,
        risk_denials=summary.risk_denials, fees=summary.fees, trading_state=summary.trading_state)
