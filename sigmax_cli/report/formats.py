"""Report formatters (rich table, JSON, Markdown, HTML, CSV) and atomic file output.

A :class:`Formatter` has two methods: :meth:`~Formatter.render` turns a
:class:`~sigmax_cli.report.build.Report` into a ``str`` or a rich renderable, and
:meth:`~Formatter.render_runs` does the same for the run list of ``sigmax report --list``.
:func:`get_formatter` picks one by name; :func:`to_text` turns either result into text for
a file; :func:`write_files` writes files atomically (temporary file + ``os.replace``).

The JSON document (``JsonFormatter``), one object; money in the run's quote currency,
times UTC ms, ``*_pct`` in percent, ``null`` where a figure is undefined (never NaN)::

    report_version      1 (bumped when a key changes meaning or disappears)
    run_id, bars, orders, fills, final_equity, return_pct, max_drawdown_pct
                        the names of ``sigmax paper --json``'s summary, same meaning
    rejections          {cause: count} of rejected orders (``unclassified`` when the run
                        ended without a summary that says)
    net_pnl             final_equity - initial_equity
    excess_return_pct   return_pct - benchmark.return_pct
    run                 {run_id, mode, profile, exchange, strategy, params, symbols, quote,
                         timeframe, status, initial_equity, started_ms, ended_ms,
                         first_bar_ms, last_bar_ms, start_ms, end_ms, data_files}
                        (start_ms/end_ms: first and last equity snapshot)
    performance         {start_equity, end_equity, return_pct, cagr_pct, volatility_pct,
                         sharpe, sortino, calmar, drawdown: {max_drawdown_pct, peak_ms,
                         trough_ms, recovery_ms, duration_ms, duration_bars, recovered}}
    benchmark           the same keys, for equal-weight buy-and-hold of the run's symbols
    trading             {trades, wins, losses, win_rate_pct, gross_profit, gross_loss,
                         profit_factor, expectancy, avg_holding_ms, best_trade, worst_trade,
                         total_fees, open_positions, exposure_pct}
    symbols             [{symbol, trades, wins, win_rate_pct, net_pnl, fees}]
    round_trips         [{symbol, entry_ms, exit_ms, holding_ms, qty, entry_price, exit_price,
                          gross_pnl, fees, pnl, return_pct, fills}]
    daily, weekly       [{period, start_ms, end_ms, end_equity, pnl, return_pct}]

``render_runs`` in JSON: ``{"runs": [{run_id, mode, status, strategy, timeframe, symbols,
started_ms, bars, initial_equity, last_equity, return_pct}]}``.

The CSV (``CsvFormatter``) is the run's trades: a header row, then one row per closed round
trip in order of exit (:data:`TRADE_COLUMNS`: the JSON ``round_trips`` keys, the run id and the
quote currency, and the two times also as ISO 8601 UTC); a position still open at the end of the
run is not a trade yet and has no row. Numbers are written unrounded, an undefined one as an
empty field. ``render_runs`` in CSV: one row per run (:data:`RUN_COLUMNS`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmax_cli.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sigmax_cli.report.build import Report, RunRow

FORMATS = ("table", "json", "markdown", "html", "csv")
REPORT_VERSION = 1
DAILY_ROWS_IN_TABLE = 14
NA = "n/a"


# -- value formatting ------------------------------------------------------------------------
def _ts(ts_ms: int | None) -> str:
    if ts_ms is None:
        return NA
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _money(value: float | None, quote: str) -> str:
    return NA if value is None else f"{value:,.2f} {quote}"


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return NA
    return f"{value:+,.2f} %" if signed else f"{value:,.2f} %"


def _ratio(value: float | None) -> str:
    return NA if value is None else f"{value:,.2f}"


def _duration(ms: float | None) -> str:
    """``"3d 4h"``, ``"5h 30m"``, ``"45m"``, ``"0m"``; minutes are the smallest unit."""
    if ms is None:
        return NA
    minutes = int(round(ms / 60_000))
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def _title(report: Report) -> str:
    run = report.run
    return f"sigmax report: run {run.run_id}"


def _subtitle(report: Report) -> list[tuple[str, str]]:
    run = report.run
    return [
        ("mode", run.mode),
        ("status", run.status),
        ("strategy", run.strategy),
        ("profile", run.profile),
        ("symbols", ", ".join(run.symbols)),
        ("timeframe", run.timeframe),
        ("period", f"{_ts(report.start_ms)} to {_ts(report.end_ms)} ({report.bars} bars)"),
        ("initial equity", _money(run.initial_equity, report.quote)),
    ]


def _performance_rows(report: Report) -> list[tuple[str, str, str]]:
    """(metric, strategy, buy-and-hold) rows shared by every human format."""
    p, b, q = report.performance, report.benchmark, report.quote

    def dd_duration(d) -> str:
        if d.peak_ms is None:
            return NA
        tail = "" if d.recovered else ", not recovered"
        return f"{_duration(d.duration_ms)} ({d.duration_bars} bars{tail})"

    return [
        ("final equity", _money(p.end_equity, q), _money(b.end_equity, q)),
        (
            "net P&L",
            _money(p.end_equity - p.start_equity, q),
            _money(b.end_equity - b.start_equity, q),
        ),
        ("return", _pct(p.return_pct), _pct(b.return_pct)),
        ("CAGR", _pct(p.cagr_pct), _pct(b.cagr_pct)),
        ("volatility (annual)", _pct(p.volatility_pct, False), _pct(b.volatility_pct, False)),
        ("Sharpe", _ratio(p.sharpe), _ratio(b.sharpe)),
        ("Sortino", _ratio(p.sortino), _ratio(b.sortino)),
        ("Calmar", _ratio(p.calmar), _ratio(b.calmar)),
        (
            "max drawdown",
            _pct(p.drawdown.max_drawdown_pct, False),
            _pct(b.drawdown.max_drawdown_pct, False),
        ),
        ("drawdown duration", dd_duration(p.drawdown), dd_duration(b.drawdown)),
    ]


def _rejections(by_cause: dict[str, int]) -> str:
    """``"0"``, or the total and the count per cause, most frequent first."""
    total = sum(by_cause.values())
    if not total:
        return "0"
    causes = ", ".join(f"{k} {v}" for k, v in sorted(by_cause.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{total} ({causes})"


def _trading_rows(report: Report) -> list[tuple[str, str]]:
    t, q = report.trading, report.quote
    if t.profit_factor is None and t.trades and not t.losses:
        pf = f"{NA} (no losing trade)"
    else:
        pf = _ratio(t.profit_factor)
    return [
        ("round trips", str(t.trades)),
        ("win rate", _pct(t.win_rate_pct, False)),
        ("profit factor", pf),
        ("expectancy per trade", _money(t.expectancy, q)),
        ("average holding time", _duration(t.avg_holding_ms)),
        ("best trade", _money(t.best_trade, q)),
        ("worst trade", _money(t.worst_trade, q)),
        ("fees paid", _money(t.total_fees, q)),
        ("exposure (bars in a position)", _pct(report.exposure_pct, False)),
        ("orders / fills", f"{report.orders} / {report.fills}"),
        ("rejected orders", _rejections(report.rejections)),
        ("open positions at the end", str(t.open_positions)),
    ]


SYMBOL_HEADERS = ("symbol", "trades", "win rate", "net P&L", "fees")
PERIOD_HEADERS = ("period", "P&L", "return", "equity at end")
RUN_HEADERS = ("run id", "mode", "status", "started", "bars", "return")


def _symbol_rows(report: Report) -> list[tuple[str, ...]]:
    q = report.quote
    return [
        (
            s.symbol,
            str(s.trades),
            _pct(s.win_rate_pct, False),
            _money(s.net_pnl, q),
            _money(s.fees, q),
        )
        for s in report.symbols
    ]


def _period_rows(report: Report, rows) -> list[tuple[str, ...]]:
    q = report.quote
    return [(p.period, _money(p.pnl, q), _pct(p.return_pct), _money(p.end_equity, q)) for p in rows]


def _run_rows(runs: Sequence[RunRow]) -> list[tuple[str, ...]]:
    return [
        (r.run_id, r.mode, r.status, _ts(r.started_ms), str(r.bars), _pct(r.return_pct))
        for r in runs
    ]


# -- the interface ---------------------------------------------------------------------------
class Formatter(ABC):
    """Turns a report (or the run list) into output. ``name`` is the ``--format`` value."""

    name: str

    @abstractmethod
    def render(self, report: Report) -> str | RenderableType:
        """The whole report as text or a rich renderable."""

    @abstractmethod
    def render_runs(self, runs: Sequence[RunRow]) -> str | RenderableType:
        """The run list (``--list``), newest first."""


class TableFormatter(Formatter):
    """rich tables for a terminal (plain text when stdout is not one)."""

    name = "table"

    def render(self, report: Report) -> RenderableType:
        from rich.console import Group
        from rich.table import Table

        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        for key, value in _subtitle(report):
            head.add_row(key, value)
        perf = Table(title="performance", title_justify="left")
        perf.add_column("metric")
        perf.add_column("strategy", justify="right")
        perf.add_column("buy and hold", justify="right")
        for row in _performance_rows(report):
            perf.add_row(*row)
        trading = Table(title="trading", title_justify="left")
        trading.add_column("metric")
        trading.add_column("value", justify="right")
        for row in _trading_rows(report):
            trading.add_row(*row)
        parts: list[Any] = [
            f"[bold]{_escape_markup(_title(report))}[/bold]",
            head,
            perf,
            trading,
            _table("per symbol", SYMBOL_HEADERS, _symbol_rows(report)),
            _table(
                "weekly P&L (UTC, ISO weeks)", PERIOD_HEADERS, _period_rows(report, report.weekly)
            ),
        ]
        daily = report.daily[-DAILY_ROWS_IN_TABLE:]
        title = "daily P&L (UTC)"
        if len(daily) < len(report.daily):
            title += f", last {len(daily)} of {len(report.daily)} days (all with --format json)"
        parts.append(_table(title, PERIOD_HEADERS, _period_rows(report, daily)))
        return Group(*parts)

    def render_runs(self, runs: Sequence[RunRow]) -> RenderableType:
        if not runs:
            return "the ledger holds no runs yet"
        return _table("runs (newest first)", RUN_HEADERS, _run_rows(runs))


def _escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_escape_markup(c) for c in row))
    return table


class JsonFormatter(Formatter):
    """One JSON document (keys in the module docstring); never NaN or infinity."""

    name = "json"

    def render(self, report: Report) -> str:
        return _dumps(report_document(report))

    def render_runs(self, runs: Sequence[RunRow]) -> str:
        return _dumps({"runs": [asdict(r) for r in runs]})


def report_document(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module docstring for the keys)."""
    run, p = report.run, report.performance
    trading = asdict(report.trading)
    trading["exposure_pct"] = report.exposure_pct
    doc = {
        "report_version": REPORT_VERSION,
        "run_id": run.run_id,
        "bars": report.bars,
        "orders": report.orders,
        "fills": report.fills,
        "rejections": report.rejections,
        "final_equity": p.end_equity,
        "return_pct": p.return_pct,
        "max_drawdown_pct": p.drawdown.max_drawdown_pct,
        "net_pnl": p.end_equity - p.start_equity,
        "excess_return_pct": p.return_pct - report.benchmark.return_pct,
        "run": {
            "run_id": run.run_id,
            "mode": run.mode,
            "profile": run.profile,
            "exchange": run.exchange,
            "strategy": run.strategy,
            "params": run.params,
            "symbols": run.symbols,
            "quote": report.quote,
            "timeframe": run.timeframe,
            "status": run.status,
            "initial_equity": run.initial_equity,
            "started_ms": run.started_ms,
            "ended_ms": run.ended_ms,
            "first_bar_ms": run.first_bar_ms,
            "last_bar_ms": run.last_bar_ms,
            "start_ms": report.start_ms,
            "end_ms": report.end_ms,
            "data_files": run.data_files,
        },
        "performance": asdict(p),
        "benchmark": asdict(report.benchmark),
        "trading": trading,
        "symbols": [asdict(s) for s in report.symbols],
        "round_trips": [asdict(t) for t in report.round_trips],
        "daily": [asdict(d) for d in report.daily],
        "weekly": [asdict(w) for w in report.weekly],
    }
    return _json_safe(doc)


def _json_safe(value: Any) -> Any:
    """Plain JSON types throughout: numpy scalars unwrapped, NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _dumps(document: Any) -> str:
    return json.dumps(_json_safe(document), indent=2, allow_nan=False, default=str) + "\n"


class MarkdownFormatter(Formatter):
    """GitHub-flavoured Markdown with pipe tables (every daily row)."""

    name = "markdown"

    def render(self, report: Report) -> str:
        out = [f"# {_md(_title(report))}", ""]
        out += [f"- **{_md(k)}**: {_md(v)}" for k, v in _subtitle(report)]
        out += ["", "## Performance", ""] + _md_table(
            ("metric", "strategy", "buy and hold"), _performance_rows(report)
        )
        out += ["", "## Trading", ""] + _md_table(("metric", "value"), _trading_rows(report))
        out += ["", "## Per symbol", ""] + _md_table(SYMBOL_HEADERS, _symbol_rows(report))
        out += ["", "## Weekly P&L (UTC, ISO weeks)", ""] + _md_table(
            PERIOD_HEADERS, _period_rows(report, report.weekly)
        )
        out += ["", "## Daily P&L (UTC)", ""] + _md_table(
            PERIOD_HEADERS, _period_rows(report, report.daily)
        )
        return "\n".join(out) + "\n"

    def render_runs(self, runs: Sequence[RunRow]) -> str:
        return "\n".join(["# sigmax runs", ""] + _md_table(RUN_HEADERS, _run_rows(runs))) + "\n"


TRADE_COLUMNS = (
    "run_id", "symbol", "entry_time", "exit_time", "entry_ms", "exit_ms", "holding_ms", "qty",
    "entry_price", "exit_price", "gross_pnl", "fees", "pnl", "return_pct", "fills", "quote",
)
"""Columns of ``sigmax report --format csv``: times UTC (ISO 8601 and ms), ``qty`` in the base
asset, prices, P&L and fees in ``quote``, ``return_pct`` in percent (see :class:`RoundTrip`)."""
RUN_COLUMNS = (
    "run_id", "mode", "status", "strategy", "timeframe", "symbols", "started_time", "started_ms",
    "bars", "initial_equity", "last_equity", "return_pct",
)
"""Columns of ``sigmax report --list --format csv``; ``symbols`` space-separated."""


def _iso_utc(ts_ms: int | None) -> str:
    if ts_ms is None:
        return ""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in _json_safe(dict(row)).items()})
    return buffer.getvalue()


class CsvFormatter(Formatter):
    """The run's trades as CSV, one row per closed round trip (see the module docstring)."""

    name = "csv"

    def render(self, report: Report) -> str:
        rows = []
        for trip in report.round_trips:
            row = asdict(trip)
            row.update(run_id=report.run.run_id, quote=report.quote, entry_time=_iso_utc(trip.entry_ms),
                       exit_time=_iso_utc(trip.exit_ms))
            rows.append(row)
        return _csv(TRADE_COLUMNS, rows)

    def render_runs(self, runs: Sequence[RunRow]) -> str:
        rows = []
        for run in runs:
            row = asdict(run)
            row.update(symbols=" ".join(run.symbols), started_time=_iso_utc(run.started_ms))
            rows.append(row)
        return _csv(RUN_COLUMNS, rows)


def _md(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(_md(h) for h in headers) + " |",
        "|" + "|".join([" --- "] + [" ---: "] * (len(headers) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return lines


class HtmlFormatter(Formatter):
    """One self-contained HTML page; every value escaped with :func:`html.escape`.

    Args:
        png: the plot (:func:`sigmax_cli.report.plot.render_png`) to embed as a base64
            ``data:`` URI, or None for no image.
    """

    name = "html"

    def __init__(self, png: bytes | None = None) -> None:
        self.png = png

    def render(self, report: Report) -> str:
        title = html.escape(_title(report))
        body = [f"<h1>{title}</h1>", "<dl>"]
        body += [
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _subtitle(report)
        ]
        body.append("</dl>")
        if self.png:
            data = base64.b64encode(self.png).decode("ascii")
            body.append(
                f'<img alt="equity, buy and hold and drawdown of run '
                f'{html.escape(report.run.run_id)}" src="data:image/png;base64,{data}">'
            )
        body += [
            "<h2>Performance</h2>",
            _html_table(("metric", "strategy", "buy and hold"), _performance_rows(report)),
        ]
        body += ["<h2>Trading</h2>", _html_table(("metric", "value"), _trading_rows(report))]
        body += ["<h2>Per symbol</h2>", _html_table(SYMBOL_HEADERS, _symbol_rows(report))]
        body += [
            "<h2>Weekly P&amp;L (UTC, ISO weeks)</h2>",
            _html_table(PERIOD_HEADERS, _period_rows(report, report.weekly)),
        ]
        body += [
            "<h2>Daily P&amp;L (UTC)</h2>",
            _html_table(PERIOD_HEADERS, _period_rows(report, report.daily)),
        ]
        return _html_page(title, body)

    def render_runs(self, runs: Sequence[RunRow]) -> str:
        return _html_page(
            "sigmax runs", ["<h1>sigmax runs</h1>", _html_table(RUN_HEADERS, _run_rows(runs))]
        )


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:0.25em 0.6em}td+td,th+th{text-align:right}"
    "dt{font-weight:bold;float:left;clear:left;width:9em}dd{margin-left:10em}"
    "img{max-width:100%}"
)


def _html_page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>\n" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def get_formatter(name: str, png: bytes | None = None) -> Formatter:
    """The formatter for ``--format name``; ``png`` is embedded by the HTML formatter.

    Raises:
        ConfigError: unknown format name.
    """
    if name == "table":
        return TableFormatter()
    if name == "json":
        return JsonFormatter()
    if name == "markdown":
        return MarkdownFormatter()
    if name == "html":
        return HtmlFormatter(png)
    if name == "csv":
        return CsvFormatter()
    raise ConfigError(f"unknown report format {name!r}", f"use one of {', '.join(FORMATS)}")


def to_text(rendered: str | RenderableType, width: int = 120) -> str:
    """Rendered output as plain text: strings unchanged, rich renderables without colour."""
    if isinstance(rendered, str):
        return rendered
    from rich.console import Console

    buffer = io.StringIO()
    Console(
        file=buffer,
        width=width,
        no_color=True,
        color_system=None,
        force_terminal=False,
        highlight=False,
        soft_wrap=False,
    ).print(rendered)
    return buffer.getvalue()


# -- atomic output ---------------------------------------------------------------------------
def write_files(files: Mapping[Path, str | bytes]) -> None:
    """Write every file atomically, all or nothing as far as the filesystem allows.

    Each content goes to a temporary file beside its target (same directory, so the rename
    cannot cross filesystems) and is flushed to disk; only when every temporary file is
    complete are they renamed over their targets with :func:`os.replace`. On failure the
    temporary files are removed and no target is touched.

    Raises:
        ConfigError: a target's directory is missing or not writable, or two targets name
            the same file.
    """
    targets = [Path(p).expanduser() for p in files]
    resolved = [t.resolve() for t in targets]
    if len(set(resolved)) < len(resolved):
        raise ConfigError(
            "two outputs name the same file", "give --output and --plot different paths"
        )
    temps: list[tuple[str, Path]] = []
    try:
        for target, content in zip(targets, files.values(), strict=True):
            data = content.encode("utf-8") if isinstance(content, str) else content
            tmp = str(target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp")
            try:  # O_EXCL: never follow or reuse an existing file; mode 0o666 minus the umask
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot write {target} ({exc.strerror or exc})",
                    "choose a path in an existing, writable directory",
                ) from None
            temps.append((tmp, target))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise ConfigError(
                    f"cannot write {target} ({exc.strerror or exc})",
                    "check the free space and permissions there",
                ) from None
        for tmp, target in temps:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise ConfigError(
                    f"cannot write {target} ({exc.strerror or exc})",
                    "choose a path that is not a directory and is writable",
                ) from None
    finally:
        for tmp, _target in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
