"""``sigmax train-rl``: train an RL policy on real candles, select it on validation, test it."""


import sys
from pathlib import Path
from typing import Annotated

import typer

from commands.context import obj, print_json

app = typer.Typer()


@app.command("train-rl")
def train_rl(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", help="Candle file or freqtrade-layout directory.")],
    symbol: Annotated[str | None, typer.Option("--symbol", help="e.g. BTC/USDT (default: from the file name, "
                                               "else the profile's first symbol).")] = None,
    timeframe: Annotated[str | None, typer.Option("--timeframe", help="Bar length, e.g. 1h (default: from the "
                                                  "file name, else the profile's).")] = None,
    timesteps: Annotated[int, typer.Option("--timesteps", help="Environment steps to train.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of numpy, torch and the episode starts.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Model zip (metadata .json beside it); default "
                                             "$SIGMAX_HOME/models/<PAIR>-<tf>-<algo>.zip.")] = None,
    eval_fraction: Annotated[float, typer.Option("--eval-fraction", help="Fraction of the bars for validation "
                                                 "(model selection).")] = 0.2,
    test_fraction: Annotated[float, typer.Option("--test-fraction", help="Fraction of the bars held out for "
                                                 "the final test.")] = 0.2,
    n_envs: Annotated[int, typer.Option("--n-envs", help="Parallel environments.")] = 1,
    algo: Annotated[str, typer.Option("--algo", help="ppo, a2c or dqn.")] = "ppo",
    window: Annotated[int, typer.Option("--window", help="Bars per observation.")] = 32,
    episode_bars: Annotated[int, typer.Option("--episode-bars", help="Steps per training episode.")] = 720,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate", help="Default: ppo 3e-4, a2c 7e-4, "
                                                        "dqn 1e-4.")] = None,
    n_steps: Annotated[int | None, typer.Option("--n-steps", help="Rollout steps per env and update "
                                                "(ppo 2048, a2c 5).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Minibatch (ppo 64, dqn 32).")] = None,
    eval_every: Annotated[int | None, typer.Option("--eval-every", help="Steps between validation passes "
                                                   "(default: a tenth of --timesteps).")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", help="Steps between checkpoints "
                                                         "(default: a fifth of --timesteps).")] = None,
    start: Annotated[str | None, typer.Option("--start", help="First bar used, ISO date/time UTC.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Stop before this ISO date/time UTC.")] = None,
    sentiment: Annotated[Path | None, typer.Option("--sentiment", help="Saved alternative.me /fng/ answer: "
                                                   "adds the Fear & Greed feature.")] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted training from its "
                                         "checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing model and its old checkpoints.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON summary on stdout.")] = False,
) -> None:
    """Train a policy (PPO by default) on a chronological split, keep the best on validation,
    and compare it on the held-out test part with buy-and-hold, flat and the rule strategy."""
    import threading

    from sigmax_cli.rl import require_extra

    require_extra("train-rl and RL policies")
    from sigmax_cli.rl.options import TrainOptions
    from sigmax_cli.rl.train import train_rl as run
    from sigmax_cli.signals import stop_on_signals

    state = obj(ctx)
    settings = state.settings()
    options = TrainOptions(
        data=data, symbol=symbol, timeframe=timeframe, out=out, algo=algo, timesteps=timesteps, seed=seed,
        eval_fraction=eval_fraction, test_fraction=test_fraction, n_envs=n_envs, window=window,
        episode_bars=episode_bars, learning_rate=learning_rate, n_steps=n_steps, batch_size=batch_size,
        eval_every=eval_every, checkpoint_every=checkpoint_every, start=start, end=end, sentiment=sentiment,
        resume=resume, force=force, torch_threads=threads,
    )
    stop = threading.Event()
    with stop_on_signals(stop), _observer(state, as_json) as observer:
        result = run(settings, options, observer, stop)
    if as_json:
        print_json(result.to_dict())
    else:
        _render(state.console, result)


def _observer(state, as_json: bool):
    from contextlib import nullcontext

    from sigmax_cli.rl.progress import NullTrainObserver, PlainTrainProgress, RichTrainProgress

    stream = sys.stderr if as_json else sys.stdout
    if state.verbosity < 0 or (as_json and not stream.isatty()):
        return nullcontext(NullTrainObserver())
    if stream.isatty():
        return RichTrainProgress(state.err_console if as_json else state.console)
    return PlainTrainProgress(stream)


def _render(console, result) -> None:
    from datetime import UTC, datetime

    from rich.table import Table

    def day(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")

    m = result.meta
    metrics = m.metrics
    test = metrics["test"]
    span = f"test {day(test['start_ms'])} .. {day(test['end_ms'])} UTC ({test['bars']} bars)"
    table = Table(title=f"{span}, in the training environment", caption=test.get("basis"))
    for column in ("strategy", "return", "Sharpe", "max drawdown", "trades", "final equity"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name, r in test["strategies"].items():
        sharpe = "-" if r["sharpe"] is None else f"{r['sharpe']:.2f}"
        table.add_row(name.replace("_", " "), f"{r['return_pct']:+.2f}%", sharpe, f"{r['max_drawdown_pct']:.2f}%",
                      str(r["trades"]), f"{r['final_equity']:,.2f}")
    console.print(table)
    paper = metrics.get("paper")
    if paper is not None:
        replay = Table(title=f"{span}, replayed through the paper engine", caption=paper["basis"])
        for column in ("strategy", "return", "drawdown", "orders", "denials", "fees", "final equity", "state"):
            replay.add_column(column, justify="left" if column == "strategy" else "right")
        replay.add_row("rl", f"{paper['return_pct']:+.2f}%", f"{paper['max_drawdown_pct']:.2f}%",
                       str(paper["orders"]), str(paper["risk_denials"]), f"{paper['fees']:,.2f}",
                       f"{paper['final_equity']:,.2f}", paper["trading_state"])
        console.print(replay)
    for warning in result.warnings:
        console.print(f"warning: {warning}", markup=False)
    split = m.split
    console.print(f"{m.algo.upper()} on {m.symbol} {m.timeframe}, {m.timesteps:,} steps, seed {m.seed}; "
                  f"{metrics['selected']} policy on validation ({metrics['validation_return_pct']:+.2f}%)")
    console.print(f"train {day(split.train.start_ms)} .. {day(split.train.end_ms)}, validation "
                  f"{day(split.validation.start_ms)} .. {day(split.validation.end_ms)}")
    console.print(f"model: {result.model_path}", markup=False, soft_wrap=True)
    console.print(f"metadata: {result.metadata_path}", markup=False, soft_wrap=True)
    from sigmax_cli.timeframes import timeframe_to_ms

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M")

    end = iso(test["end_ms"] + timeframe_to_ms(m.timeframe))
    console.print(f"replay the test part: sigmax paper --data {m.data.path} --start {iso(test['start_ms'])} "
                  f"--end {end} --strategy rl:{result.model_path} (--profile rl-env: the environment's account)",
                  markup=False, soft_wrap=True)  # a command to copy: paths are not broken
