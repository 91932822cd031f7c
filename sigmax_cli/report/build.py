"""Build a run's performance report from the ledger.

:func:`build_report` reads one run (its ``equity`` snapshots, ``fills`` and order count)
and hands the rows to :func:`assemble_report`, which is pure and computes everything
through :mod:`sigmax_cli.report.metrics`. :func:`list_runs` gives the short run list of
``sigmax report --list``.

The equity curve of a report starts at the run's ``initial_equity`` one bar before the
first snapshot (each snapshot marks the account at a bar's close, so the initial equity
is the value before the first bar traded), then has one point per snapshot. Returns,
drawdowns, Sharpe, Sortino and CAGR use that curve, so ``return_pct`` is
``final_equity / initial_equity - 1`` as in the paper run's summary. The benchmark curve
(the ``benchmark`` column: equal-weight buy-and-hold of the run's symbols) starts at the
same initial equity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sigmax_cli.errors import ConfigError, DataError
from sigmax_cli.report import metrics as m
from sigmax_cli.timeframes import bars_per_year, timeframe_to_ms

if TYPE_CHECKING:
    from sigmax_cli.ledger import Ledger, RunInfo


@dataclass(frozen=True)
class Series:
    """Curves for plotting, all shape ``(n + 1,)`` for ``n`` equity snapshots.

    Attributes:
        ts_ms: int64 UTC ms; ``ts_ms[0]`` is one bar before the first snapshot.
        equity: the run's equity, quote; ``equity[0]`` is the initial equity.
        benchmark: buy-and-hold equity of the run's symbols, quote, same start.
        drawdown_pct: the equity's drawdown, percent, ``<= 0``.
        benchmark_drawdown_pct: the benchmark's drawdown, percent, ``<= 0``.
    """

    ts_ms: np.ndarray
    equity: np.ndarray
    benchmark: np.ndarray
    drawdown_pct: np.ndarray
    benchmark_drawdown_pct: np.ndarray


@dataclass(frozen=True)
class Report:
    """Everything ``sigmax report`` shows about one run.

    Attributes:
        run: the run as stored (ids, settings snapshot, status, UTC ms times).
        quote: quote currency of the run's symbols (``USDT`` for ``BTC/USDT``).
        bars: equity snapshots (one per bar processed).
        orders, fills: rows the run wrote to the ledger.
        start_ms, end_ms: first and last snapshot time, UTC ms.
        performance: return and risk of the equity curve.
        benchmark: the same for the buy-and-hold curve, over the same bars.
        trading: round-trip statistics.
        exposure_pct: percent of bars with an open position.
        symbols: per-symbol trades, win rate, net P&L and fees.
        rejections: rejected orders by cause (``OrderRejected.kind``: ``precision``,
            ``min_notional``, ``insufficient_funds`` ...); ``unclassified`` for a run whose
            summary does not say (it ended without one).
        round_trips: every closed trade, by exit time.
        daily, weekly: P&L per UTC day / ISO week.
        series: curves for plotting.
    """

    run: RunInfo
    quote: str
    bars: int
    orders: int
    fills: int
    start_ms: int
    end_ms: int
    performance: m.Performance
    benchmark: m.Performance
    trading: m.TradeStats
    exposure_pct: float
    symbols: list[m.SymbolRow]
    round_trips: list[m.RoundTrip]
    daily: list[m.PeriodPnl]
    weekly: list[m.PeriodPnl]
    series: Series
    rejections: dict[str, int]


def build_report(ledger: Ledger, run_id: str | None = None, latest: bool = False) -> Report:
    """Read run ``run_id`` (or the most recent run) from ``ledger`` and compute its report.

    Args:
        ledger: an open :class:`~sigmax_cli.ledger.Ledger`.
        run_id: the run to report; None means the latest run.
        latest: ask for the latest run explicitly (the default when ``run_id`` is None).

    Raises:
        ConfigError: both ``run_id`` and ``latest`` given.
        NotFoundError: no run ``run_id``, or the ledger holds no runs.
        DataError: the run has no equity snapshots, or inconsistent fills.
    """
    if run_id and latest:
        raise ConfigError(
            "--run-id and --latest ask for two different runs", "give only one of them"
        )
    ledger.mark_lost_runs()  # a run whose bot is gone is reported `lost`, not `running`
    run = ledger.get_run(run_id) if run_id else ledger.latest_run()
    equity_rows = ledger.rows("equity", run.run_id, order_by=("ts_ms",))
    fills = ledger.rows("fills", run.run_id, order_by=("ts_ms", "id"))
    orders = ledger.rows("orders", run.run_id)
    rejected = sum(1 for o in orders if o["status"] == "rejected")
    by_cause = dict((run.summary or {}).get("rejections") or {})
    if rejected and sum(by_cause.values()) != rejected:
        by_cause = {**by_cause, "unclassified": rejected - sum(by_cause.values())}
    return assemble_report(run, equity_rows, fills, len(orders), by_cause)


def assemble_report(
    run: RunInfo,
    equity_rows: Sequence[Mapping[str, Any]],
    fills: Sequence[Mapping[str, Any]],
    orders: int,
    rejections: Mapping[str, int] | None = None,
) -> Report:
    """Compute a :class:`Report` from ledger rows (pure; no database).

    Args:
        run: the run.
        equity_rows: ``equity`` rows (``ts_ms``, ``equity``, ``exposure``, ``benchmark``),
            oldest first.
        fills: ``fills`` rows (``symbol``, ``side``, ``price``, ``amount``, ``fee``, ``ts_ms``).
        orders: number of orders the run recorded.
        rejections: rejected orders by cause.

    Raises:
        DataError: no equity rows; non-positive equity; fills that sell more than held.
    """
    if not equity_rows:
        raise DataError(
            f"run {run.run_id} has no equity snapshots",
            "it may have failed before its first bar (see `sigmax report --list`)",
        )
    tf_ms = timeframe_to_ms(run.timeframe)
    per_year = bars_per_year(run.timeframe)
    snap_ts = np.array([int(r["ts_ms"]) for r in equity_rows], dtype=np.int64)
    snap_eq = np.array([float(r["equity"]) for r in equity_rows], dtype=np.float64)
    snap_bench = np.array([float(r["benchmark"]) for r in equity_rows], dtype=np.float64)
    snap_expo = np.array([float(r["exposure"]) for r in equity_rows], dtype=np.float64)
    initial = float(run.initial_equity)
    ts = np.concatenate([[snap_ts[0] - tf_ms], snap_ts])
    equity = np.concatenate([[initial], snap_eq])
    bench = np.concatenate([[initial], snap_bench])
    book = m.round_trips(fills)
    return Report(
        run=run,
        quote=_quote(run.symbols),
        bars=int(snap_ts.size),
        orders=int(orders),
        fills=len(fills),
        start_ms=int(snap_ts[0]),
        end_ms=int(snap_ts[-1]),
        performance=m.curve_performance(ts, equity, per_year),
        benchmark=m.curve_performance(ts, bench, per_year),
        trading=m.trade_stats(book),
        exposure_pct=m.exposure_pct(snap_expo),
        symbols=m.per_symbol(book, run.symbols),
        round_trips=book.closed,
        daily=m.period_pnl(snap_ts, snap_eq, initial, "day"),
        weekly=m.period_pnl(snap_ts, snap_eq, initial, "week"),
        series=Series(
            ts_ms=ts,
            equity=equity,
            benchmark=bench,
            drawdown_pct=m.drawdown_series(equity),
            benchmark_drawdown_pct=m.drawdown_series(bench),
        ),
        rejections=dict(rejections or {}),
    )


def _quote(symbols: Sequence[str]) -> str:
    quotes = {s.split("/", 1)[1].split(":", 1)[0] for s in symbols if "/" in s}
    return quotes.pop() if len(quotes) == 1 else "quote"


@dataclass(frozen=True)
class RunRow:
    """One line of ``sigmax report --list``.

    Attributes:
        run_id, mode, status, strategy, timeframe: as stored.
        symbols: the run's symbols.
        started_ms: wall-clock start, UTC ms.
        bars: equity snapshots written (0 when the run failed before its first bar).
        initial_equity, last_equity: quote; ``last_equity`` None without snapshots.
        return_pct: ``last_equity / initial_equity - 1``, percent; None without snapshots.
    """

    run_id: str
    mode: str
    status: str
    strategy: str
    timeframe: str
    symbols: list[str]
    started_ms: int
    bars: int
    initial_equity: float
    last_equity: float | None
    return_pct: float | None


def list_runs(ledger: Ledger, limit: int = 20) -> list[RunRow]:
    """The newest ``limit`` runs of ``ledger``, newest first, with bars and return so far;
    runs whose bot is gone are marked ``lost`` first (:meth:`Ledger.mark_lost_runs`)."""
    ledger.mark_lost_runs()
    runs = ledger.list_runs(limit)
    stats = ledger.equity_summaries(r.run_id for r in runs)
    rows = []
    for r in runs:
        st = stats.get(r.run_id)
        last = float(st["last_equity"]) if st else None
        ret = (
            (last / r.initial_equity - 1.0) * 100.0
            if last is not None and r.initial_equity > 0
            else None
        )
        rows.append(
            RunRow(
                run_id=r.run_id,
                mode=r.mode,
                status=r.status,
                strategy=r.strategy,
                timeframe=r.timeframe,
                symbols=list(r.symbols),
                started_ms=r.started_ms,
                bars=int(st["bars"]) if st else 0,
                initial_equity=float(r.initial_equity),
                last_equity=last,
                return_pct=ret,
            )
        )
    return rows
