"""``sigmax research``: news, sentiment and market context from RSS, Fear & Greed, CoinGecko
(and CryptoPanic with a key); stored de-duplicated in the ledger, optionally published."""


import sys
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("research")
def research(
    ctx: typer.Context,
    sources: Annotated[str | None, typer.Option(
        "--sources", help="Comma-separated: rss,feargreed,coingecko,cryptopanic (profile default).")] = None,
    feeds: Annotated[str | None, typer.Option(
        "--feeds", help="Comma-separated feed URLs or NAME=URL (default: the profile's feeds).")] = None,
    symbols: Annotated[str | None, typer.Option(
        "--symbols", help="Tickers to detect in headlines, e.g. BTC,ETH (profile default).")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Keep running; a live table on a terminal.")] = False,
    interval: Annotated[float | None, typer.Option(
        "--interval", help="Seconds between runs with --watch (default 300).")] = None,
    runs: Annotated[int | None, typer.Option("--runs", min=1, help="Stop --watch after N runs.")] = None,
    publish: Annotated[bool, typer.Option(
        "--publish", help="Append signals to the Redis stream (needs SIGMAX_REDIS_URL).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document per run on stdout.")] = False,
    pushgateway: Annotated[str | None, typer.Option(
        "--pushgateway", metavar="URL", help="Also push each run's metrics (last success time, duration, items, "
        "failed sources, exit code, the newest published signal's time) to this Prometheus Pushgateway (job "
        "sigmax_research, instance = host name); a failed push is a warning on stderr and never changes the "
        "exit code.")] = None,
) -> None:
    """Gather crypto news and market context, score sentiment, store new items in the ledger.

    Exit codes: 0 every source answered; 1 some sources failed (the others' results are
    shown); 69 every source failed; 2 bad input (unknown source, malformed feed URL).
    """
    import threading

    from sigmax_cli.errors import ConfigError
    from sigmax_cli.research.engine import EXIT_UNAVAILABLE, ResearchOptions, research
    from sigmax_cli.research.formats import lines, render, to_document
    from sigmax_cli.signals import stop_on_signals

    if not watch and (interval is not None or runs is not None):
        raise ConfigError("--interval and --runs only apply with --watch", "add --watch or drop them")
    state = obj(ctx)
    metrics = None
    if pushgateway is not None:
        from sigmax_cli.observability.push import JobMetrics, check_url

        check_url(pushgateway)
        metrics = JobMetrics("research")
    settings = state.settings(overrides={"research": {"sources": sources, "feeds": feeds, "symbols": symbols}})
    options = ResearchOptions(publish=publish, watch=watch, interval_s=300.0 if interval is None else interval,
                              max_runs=runs)
    console = state.console
    live = None
    if not as_json and watch and console.is_terminal:
        from rich.live import Live

        live = Live(console=console, auto_refresh=False, transient=False)

    def push(exit_code: int, result=None) -> None:
        if metrics is None or pushgateway is None:
            return
        from sigmax_cli.observability.push import push_warning

        if result is not None:
            metrics.metric("sigmax_research_items").labels("new").set(result.new_count)
            metrics.metric("sigmax_research_items").labels("fetched").set(len(result.items))
            metrics.metric("sigmax_research_sources_failed").set(sum(1 for s in result.sources if s.failed))
            if result.published and result.published["ids"]:
                newest_ms = int(str(result.published["ids"][-1]).split("-")[0])  # the entry id's time, Redis clock
                metrics.metric("sigmax_signal_newest_timestamp_seconds").labels(
                    result.published["stream"]).set(newest_ms / 1000)
        failed = metrics.push(pushgateway, exit_code)
        if failed is not None and state.verbosity >= 0:
            sys.stderr.write(push_warning("research", failed))
            sys.stderr.flush()

    def show(result) -> None:
        push(result.exit_code, result)
        if state.verbosity >= 0:
            for s in result.sources:
                if s.failed:  # one line each, unwrapped (rich would wrap at 80 columns off a terminal)
                    sys.stderr.write(f"warning: {s.detail}\n")
            sys.stderr.flush()
        if as_json:
            print_json(to_document(result))
        elif live is not None:
            footer = f"next run in {options.interval_s:g} s - Ctrl-C to stop"
            live.update(render(result, footer), refresh=True)
        elif console.is_terminal:
            console.print(render(result))
        else:
            sys.stdout.write("\n".join(lines(result)) + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            if live is not None:
                with live:
                    result = research(settings, options, stop, on_result=show)
            else:
                result = research(settings, options, stop, on_result=show)
    except (Exception, KeyboardInterrupt) as exc:  # before any run finished (Redis down, no ledger)
        from sigmax_cli.observability.push import exit_code_of

        push(exit_code_of(exc))
        raise
    if result.exit_code == EXIT_UNAVAILABLE:
        from sigmax_cli.research.engine import AllSourcesFailed

        raise AllSourcesFailed("every research source failed this run", "see the warnings above; check the network")
    if result.exit_code:
        raise typer.Exit(result.exit_code)
