"""The report chart: equity vs buy-and-hold on top, drawdown below, as a PNG.

matplotlib is imported inside the functions (it is slow to import). The figure is drawn
with matplotlib's object API on an explicit Agg canvas (``FigureCanvasAgg``): pyplot is
never imported and ``matplotlib.use`` never called, so the global backend and pyplot's
figure registry stay as other users of matplotlib in the process left them, and no
display is needed (cron, CI, SSH).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sigmax_cli.report.build import Report

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.5, 100  # 1200 x 750 pixels


def render_png(report: Report) -> bytes:
    """The chart of ``report`` as PNG bytes.

    Top panel: the run's equity and the buy-and-hold benchmark (quote currency) from the
    initial equity; bottom panel: the equity's drawdown in percent (<= 0, filled), with
    the benchmark's drawdown as a line. Title: run id, strategy, symbols, timeframe.
    x axis: UTC time.
    """
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    s = report.series
    times = np.asarray(s.ts_ms, dtype="int64").astype("datetime64[ms]")
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot(times, s.equity, color="tab:blue", linewidth=1.2, label="strategy")
    top.plot(
        times,
        s.benchmark,
        color="tab:gray",
        linewidth=1.0,
        linestyle="--",
        label="buy and hold (equal weight)",
    )
    top.set_ylabel(f"equity ({report.quote})")
    top.grid(True, alpha=0.3)
    top.legend(loc="upper left")
    bottom.fill_between(
        times, s.drawdown_pct, 0.0, color="tab:red", alpha=0.35, linewidth=0, label="strategy"
    )
    bottom.plot(
        times, s.benchmark_drawdown_pct, color="tab:gray", linewidth=0.8, label="buy and hold"
    )
    bottom.set_ylabel("drawdown (%)")
    bottom.set_xlabel("time (UTC)")
    bottom.grid(True, alpha=0.3)
    bottom.legend(loc="lower left")
    run = report.run
    symbols = ", ".join(run.symbols) if len(run.symbols) <= 4 else f"{len(run.symbols)} symbols"
    fig.suptitle(
        f"run {run.run_id}\n{run.strategy}, {symbols}, {run.timeframe}: "
        f"{report.performance.return_pct:+.2f} % vs {report.benchmark.return_pct:+.2f} % buy and hold",
        fontsize=11,
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_report(report: Report, path: Path | str) -> Path:
    """Draw the chart of ``report`` and write it to ``path`` atomically (temp + rename).

    Returns:
        the path written.

    Raises:
        ConfigError: the directory of ``path`` is missing or not writable.
    """
    from sigmax_cli.report.formats import write_files

    target = Path(path).expanduser()
    write_files({target: render_png(report)})
    return target
