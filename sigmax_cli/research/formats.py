"""How a research run is shown: one JSON document, a rich view, or plain lines for cron.

The JSON document (:func:`to_document`), one per run; times UTC ms plus ISO-8601 strings,
sentiment in [-1, 1], market changes in percent::

    run, run_at_ms, run_at, elapsed_s, exit_code (0 ok, 1 some sources failed, 69 all failed)
    new_count     items first seen in this run
    items         [{source, title, url, published (ISO or null), published_ms, coins,
                    sentiment, label (bullish|bearish|neutral), new}], newest first
    sources       [{name, kind, status (ok|not_modified|degraded|skipped), items, new,
                    detail, elapsed_s}]
    aggregates    {overall: {count, mean, decayed, bullish, bearish, neutral, newest_ms},
                   coins: {TICKER: {same keys}},
                   fear_greed: {value, classification, timestamp_ms, previous, change} | null,
                   window: {since_ms, until_ms, half_life_hours, lookback_hours}}
    market        {TICKER: {coin_id, as_of_ms, price (USD), change_24h_pct, change_7d_pct,
                   change_30d_pct, market_cap, volume_24h}}
    published     {stream, ids} when --publish wrote signals, else null

This module imports rich only inside :func:`render`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sigmax_cli.research.sentiment import label

if TYPE_CHECKING:
    from rich.console import RenderableType

    from sigmax_cli.research.engine import ResearchResult

ITEMS_SHOWN = 15
_STATUS_STYLE = {"ok": "green", "not_modified": "cyan", "degraded": "bold red", "skipped": "yellow"}


def iso(ts_ms: int | None) -> str | None:
    """``ts_ms`` (UTC ms) as ``2025-12-12T22:20:18Z``; ``None`` stays ``None``."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _agg(a: dict[str, Any]) -> dict[str, Any]:
    return {**a, "mean": _round(a["mean"]), "decayed": _round(a["decayed"])}


def to_document(result: ResearchResult) -> dict[str, Any]:
    """The run as one JSON-safe dict (see the module docstring)."""
    aggs = result.aggregates
    return {
        "run": result.run,
        "run_at_ms": result.run_at_ms,
        "run_at": iso(result.run_at_ms),
        "elapsed_s": round(result.elapsed_s, 3),
        "exit_code": result.exit_code,
        "new_count": result.new_count,
        "items": [{"source": si.item.source, "title": si.item.title, "url": si.item.url,
                   "published": iso(si.item.published_ms), "published_ms": si.item.published_ms,
                   "coins": list(si.coins), "sentiment": _round(si.sentiment), "label": label(si.sentiment),
                   "new": si.new} for si in result.items],
        "sources": [s.to_dict() for s in result.sources],
        "aggregates": {"overall": _agg(aggs["overall"]),
                       "coins": {coin: _agg(a) for coin, a in aggs["coins"].items()},
                       "fear_greed": aggs.get("fear_greed"), "window": aggs["window"]},
        "market": {coin: {k: (_round(v, 6) if isinstance(v, float) else v) for k, v in m.items()}
                   for coin, m in result.market.items()},
        "published": result.published,
    }


def _signed(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}%"


def _short(ts_ms: int | None) -> str:
    return "-" if ts_ms is None else datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%m-%d %H:%M")


def _fear_greed_text(fg: dict[str, Any] | None) -> str:
    if not fg:
        return "fear & greed: n/a"
    change = f" ({fg['change']:+d} vs previous day)" if fg.get("change") is not None else ""
    return f"fear & greed: {fg['value']} {fg['classification']}{change}"


def lines(result: ResearchResult, all_items: bool = False) -> list[str]:
    """Plain lines for pipes and cron: summary, sources, aggregates, market, new items (or all)."""
    aggs = result.aggregates
    out = [f"research run {result.run} at {iso(result.run_at_ms)}: {len(result.items)} items, "
           f"{result.new_count} new, exit {result.exit_code}"]
    for s in result.sources:
        detail = f" - {s.detail}" if s.detail else ""
        out.append(f"source {s.name} ({s.kind}): {s.status}, {s.items} items, {s.new} new{detail}")
    out.append(_fear_greed_text(aggs.get("fear_greed")))
    for name, a in [("overall", aggs["overall"]), *aggs["coins"].items()]:
        out.append(f"sentiment {name}: n={a['count']} mean={_signed(a['mean'])} decayed={_signed(a['decayed'])} "
                   f"bullish={a['bullish']} bearish={a['bearish']} neutral={a['neutral']}")
    for coin, m in result.market.items():
        out.append(f"market {coin}: {m['price']:,.2f} USD 24h {_pct(m['change_24h_pct'])} "
                   f"7d {_pct(m['change_7d_pct'])} 30d {_pct(m['change_30d_pct'])}")
    for si in result.items:
        if si.new or all_items:
            coins = ",".join(si.coins) or "-"
            out.append(f"{'new' if si.new else 'old'} [{si.item.source}] {iso(si.item.published_ms) or '-'} "
                       f"{coins} {si.sentiment:+.2f} {si.item.title}")
    if result.published:
        out.append(f"published {len(result.published['ids'])} signals to {result.published['stream']}")
    return out


def render(result: ResearchResult, footer: str | None = None) -> RenderableType:
    """A rich view: sources, sentiment per coin with Fear & Greed, market, newest items."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    aggs = result.aggregates
    head = Text(f"research run {result.run} at {iso(result.run_at_ms)} - {len(result.items)} items, "
                f"{result.new_count} new", style="bold")
    sources = Table(title="sources", title_justify="left")
    for col in ("source", "kind", "status", "items", "new", "detail"):
        sources.add_column(col, justify="right" if col in ("items", "new") else "left",
                           overflow="fold" if col == "detail" else "ellipsis")
    for s in result.sources:
        sources.add_row(Text(s.name), s.kind, Text(s.status, style=_STATUS_STYLE[s.status]), str(s.items),
                        str(s.new), Text(s.detail))  # Text: no markup parsing of what a server sent
    window = aggs["window"]
    senti = Table(title=f"sentiment, last {window['lookback_hours']:g} h (half-life {window['half_life_hours']:g} h)"
                        f" - {_fear_greed_text(aggs.get('fear_greed'))}", title_justify="left")
    for col in ("coin", "items", "mean", "decayed", "bullish", "bearish", "neutral", "newest"):
        senti.add_column(col, justify="left" if col == "coin" else "right")
    for name, a in [("all", aggs["overall"]), *aggs["coins"].items()]:
        senti.add_row(name, str(a["count"]), _signed(a["mean"]), _signed(a["decayed"]), str(a["bullish"]),
                      str(a["bearish"]), str(a["neutral"]), _short(a["newest_ms"]))
    parts: list[Any] = [head, sources, senti]
    if result.market:
        market = Table(title="market (CoinGecko, USD)", title_justify="left")
        for col in ("coin", "price", "24h", "7d", "30d", "market cap", "volume 24h"):
            market.add_column(col, justify="left" if col == "coin" else "right")
        for coin, m in result.market.items():
            market.add_row(coin, f"{m['price']:,.2f}", _pct(m["change_24h_pct"]), _pct(m["change_7d_pct"]),
                           _pct(m["change_30d_pct"]), _big(m["market_cap"]), _big(m["volume_24h"]))
        parts.append(market)
    items = Table(title=f"newest items ({min(ITEMS_SHOWN, len(result.items))} of {len(result.items)}; * new)",
                  title_justify="left")
    for col in ("published", "source", "coins", "score", "title"):
        items.add_column(col, justify="right" if col == "score" else "left",
                         overflow="fold" if col == "title" else "ellipsis")
    for si in result.items[:ITEMS_SHOWN]:
        style = "green" if label(si.sentiment) == "bullish" else "red" if label(si.sentiment) == "bearish" else ""
        items.add_row(_short(si.item.published_ms), Text(si.item.source), ",".join(si.coins) or "-",
                      Text(f"{si.sentiment:+.2f}", style=style), Text(("* " if si.new else "") + si.item.title))
    parts.append(items)
    if result.published:
        parts.append(Text(f"published {len(result.published['ids'])} signals to {result.published['stream']}"))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def _big(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if abs(value) >= size:
            return f"{value / size:,.2f}{unit}"
    return f"{value:,.0f}"
