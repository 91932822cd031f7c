"""Panels of `sigmax run`: the paper dashboard plus the exchange's connection state.

Pure functions from a snapshot (and the live broker's :class:`ExchangeStatus`) to rich
renderables, like :mod:`sigmax_cli.ui.panels`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sigmax_cli.brokers.live import ExchangeStatus


def exchange_panel(status: ExchangeStatus) -> Any:
    """The exchange's connection state, latency percentiles and errors as a rich Panel."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    style = {"connected": "bold green", "degraded": "bold yellow", "down": "bold red"}.get(status.connection, "bold")
    p50 = f"{status.latency_p50_ms:.0f} ms" if status.latency_p50_ms is not None else "-"
    p99 = f"{status.latency_p99_ms:.0f} ms" if status.latency_p99_ms is not None else "-"
    errors = sum(status.errors.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(status.errors.items()))
    line1 = Text.assemble((status.exchange, "bold"), " ", (status.env.upper(), "bold"), "  ",
                          (status.connection, style))
    line2 = Text.assemble("latency p50 ", (p50, "bold"), " p99 ", (p99, "bold"), f"  errors {errors}",
                          f" ({detail})" if detail else "")
    return Panel(Group(line1, line2), title="Exchange", title_align="left")


def live_layout(snapshot: Any, status: ExchangeStatus) -> Any:
    """``paper``'s layout with the exchange panel beside the header (region ``exchange``)."""
    from rich.layout import Layout

    from sigmax_cli.ui.panels import build_layout, header_panel

    layout = build_layout(snapshot)
    layout["header"].split_row(Layout(header_panel(snapshot), name="run", ratio=3),
                               Layout(exchange_panel(status), name="exchange", ratio=2))
    return layout


def live_dashboard(console: Any, status_fn: Callable[[], ExchangeStatus]) -> Any:
    """The rich dashboard of ``paper`` plus the exchange panel."""
    from sigmax_cli.ui.dashboard import Dashboard

    return Dashboard(console=console, layout=lambda snapshot: live_layout(snapshot, status_fn()))
