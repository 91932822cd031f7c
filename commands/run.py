"""``sigmax run``: trade on an exchange's testnet (default), or live with --confirm-live."""


import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("run")
def run(
    ctx: typer.Context,
    env: Annotated[str, typer.Option("--env", help="testnet (default) or live: real money, needs --confirm-live "
                                     "and risk.max_capital.")] = "testnet",
    symbols: Annotated[str | None, typer.Option("--symbols", help="e.g. BTC/USDT,ETH/USDT (profile default).")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Bar length, e.g. 1m (profile default).")] = None,
    strategy: Annotated[str, typer.Option("--strategy", help="rules or rl:MODEL.zip.")] = "rules",
    allow_other_symbol: Annotated[bool, typer.Option("--allow-other-symbol", help="Let an rl: model trained on "
                                                     "another symbol trade these (refused by default).")] = False,
    max_ticks: Annotated[int | None, typer.Option("--max-ticks", help="Stop after N closed bars.")] = None,
    confirm_live: Annotated[bool, typer.Option("--confirm-live", help="Allow --env live (real money).")] = False,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", help="Serve Prometheus metrics here.")] = None,
    env_file: Annotated[Path | None, typer.Option("--env-file", help="Keys file (default: .env.testnet / "
                                                  ".env.live here or in SIGMAX_HOME).")] = None,
    tui: Annotated[bool | None, typer.Option("--tui/--no-tui", help="Live panels (default on a terminal).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON summary on stdout.")] = False,
) -> None:
    """Run the strategy on closed bars through the risk guard and a live broker (ccxt)."""
    import os
    import threading

    from sigmax_cli.errors import Halted, Interrupted
    from sigmax_cli.live import LiveOptions, find_env_file, prepare_live, run_live
    from sigmax_cli.settings import check_env_file, default_home
    from sigmax_cli.signals import stop_on_signals

    state = obj(ctx)
    home = state.home or (Path(os.environ["SIGMAX_HOME"]) if os.environ.get("SIGMAX_HOME") else default_home())
    if env_file or state.env_file:  # a directory or /dev/zero is named as such, not "does not exist"
        check_env_file(env_file or state.env_file)
    path, warnings = find_env_file(env, env_file or state.env_file, home)
    wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    settings = state.settings(overrides={"timeframe": timeframe, "symbols": wanted, "env": env,
                                                 "rl": {"allow_other_symbol": True if allow_other_symbol else None}},
                              env_file=path,
                              home_must_be_dir=True)
    options = LiveOptions(env=env, symbols=wanted, strategy=strategy, max_ticks=max_ticks,
                          confirm_live=confirm_live, metrics_port=metrics_port)
    for warning in warnings:
        if warning not in state.warned:  # the settings may have said it already
            state.err_console.print(f"warning: {warning}", markup=False)
    plan = prepare_live(settings, options, warnings)
    state.err_console.print(f"sigmax run {plan.run_id}: {plan.account.describe()}", markup=False)
    observer = _observer(state, as_json, tui, plan.broker.exchange_status)
    stop = threading.Event()
    with stop_on_signals(stop), observer if hasattr(observer, "__enter__") else nullcontext():
        result = run_live(plan, stop, observer)
    if as_json:
        print_json(result.to_dict())
    else:
        _render(state.console, result)
    if result.status == "halted":
        raise Halted(f"run {result.run_id} ended HALTED by the kill switch after {result.ticks} ticks and is marked "
                     "halted in the ledger", "see `sigmax panic --status`; release it with "
                     "`sigmax panic --release --reason ...` once it is safe")
    if result.status == "interrupted":
        raise Interrupted(f"run {result.run_id} was interrupted after {result.ticks} ticks and is marked "
                          "interrupted in the ledger", f"see it with `sigmax report --run-id {result.run_id}`")


def _observer(state, as_json: bool, tui: bool | None, status_fn):
    from sigmax_cli.ui.dashboard import PlainProgress
    from sigmax_cli.ui.live_panels import live_dashboard
    from sigmax_cli.ui.observer import NullObserver

    if as_json:
        return NullObserver() if not sys.stderr.isatty() or state.verbosity < 0 else PlainProgress(sys.stderr)
    if tui if tui is not None else sys.stdout.isatty():
        return live_dashboard(state.console, status_fn)
    return NullObserver() if state.verbosity < 0 else PlainProgress(sys.stdout, every_seconds=60.0)


def _render(console, result) -> None:
    from rich.table import Table

    s, x = result.summary, result.exchange
    table = Table(title=f"{result.env} run {s.run_id} ({s.status})", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    start = result.reconciliation["start"]
    rows = [
        ("account", result.account.describe()), ("symbols", ", ".join(s.symbols)), ("timeframe", s.timeframe),
        ("ticks", f"{result.ticks:,}"), ("orders / fills", f"{s.orders} / {s.fills}"),
        ("rejected / risk denials", f"{s.rejected} / {s.risk_denials}"), ("fees", f"{s.fees:,.4f}"),
        ("initial equity", f"{s.initial_equity:,.2f}"), ("final equity", f"{s.final_equity:,.2f}"),
        ("return", f"{s.return_pct:+.2f}%"), ("max drawdown", f"{s.max_drawdown_pct:.2f}%"),
        ("trading state", s.trading_state),
        ("exchange", f"{x.connection}, {x.requests} calls, p50 {x.latency_p50_ms} ms, p99 {x.latency_p99_ms} ms"),
        ("exchange errors", ", ".join(f"{k} {v}" for k, v in sorted(x.errors.items())) or "none"),
        ("reconciliation at start", f"{len(start['adopted'])} adopted, {len(start['cancelled'])} cancelled, "
                                    f"{start['recovered_fills']} fills recovered"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    console.print(f"run id: {s.run_id}  (report: sigmax report --run-id {s.run_id})")
