"""``sigmax signals``: the research signal stream (Redis) from the command line."""

import sys
from typing import Annotated, Any

import typer

from commands.context import obj

app = typer.Typer(help="The research signal stream in Redis: read it from the command line.", no_args_is_help=True)


@app.callback()
def signals() -> None:
    """The research signal stream in Redis: read it from the command line."""


@app.command("tail")
def tail(
    ctx: typer.Context,
    group: Annotated[str, typer.Option("--group", metavar="NAME", show_default=False,
                                       help="Consumer group: its checkpoint is resumed and advanced.")],
    consumer: Annotated[str | None, typer.Option(
        "--consumer", metavar="NAME",
        help="Name of this consumer in the pushed metrics (Pushgateway instance; default: host name).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    follow: Annotated[bool, typer.Option("--follow/--once", help="Keep waiting for new signals, or stop once "
                                         "caught up.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, metavar="N", help="Stop after N signals.")] = None,
    create: Annotated[bool, typer.Option("--create", help="Start a group that has no checkpoint yet at the oldest "
                                         "signal.")] = False,
    stream: Annotated[str | None, typer.Option("--stream", metavar="KEY", help="Stream key (default: research.stream, "
                                               "sigmax:signals).", show_default=False)] = None,
    pushgateway: Annotated[str | None, typer.Option(
        "--pushgateway", metavar="URL", help="Also push the stream's age, the group's lag and the signals consumed "
        "to this Prometheus Pushgateway (job sigmax_signals); a failed push is a warning on stderr and never "
        "changes the exit code.")] = None,
) -> None:
    """Print the signals after GROUP's checkpoint, oldest first, one line each, and checkpoint
    each one once printed: a restart resumes after the last printed signal.

    Exit codes: 0 done (caught up, --count reached, or stopped with Ctrl-C); 2 bad input
    (unknown stream, a group without a checkpoint and no --create, no SIGMAX_REDIS_URL);
    69 Redis unreachable.
    """
    import threading

    from sigmax_cli.errors import ConfigError, SigmaxError
    from sigmax_cli.research.signals import connect
    from sigmax_cli.research.tail import PUSH_EVERY_S, TailOptions, Throttle, open_reader, record_stream_state
    from sigmax_cli.research.tail import tail as run_tail
    from sigmax_cli.signals import stop_on_signals

    state = obj(ctx)
    metrics = None
    if pushgateway is not None:
        from sigmax_cli.observability.push import JobMetrics, check_url

        check_url(pushgateway)
        metrics = JobMetrics("signals", instance=consumer, grouping={"group": group})

    def write(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def warn(message: str) -> None:
        from sigmax_cli.observability.push import push_warning

        if state.verbosity >= 0:
            sys.stderr.write(push_warning("signals tail", message))
            sys.stderr.flush()

    counted = [0]
    pushed_ok = [True]
    throttle = Throttle(PUSH_EVERY_S)

    def push(reader, done: int, exit_code: int = 0) -> None:
        if metrics is None or pushgateway is None:
            return
        if exit_code == 0:
            record_stream_state(metrics, reader, done - counted[0])
            counted[0] = done
        failed = metrics.push(pushgateway, exit_code)
        if failed is not None and pushed_ok[0]:
            warn(failed)
        pushed_ok[0] = failed is None

    client: Any = None
    reader: Any = None
    try:
        settings = state.settings()
        options = TailOptions(stream=stream or settings.research.stream, group=group, follow=follow,
                              count=count, create=create, as_json=as_json)
        if settings.redis_url is None:
            raise ConfigError("signals tail reads the stream in Redis, and no Redis is configured",
                              "set SIGMAX_REDIS_URL=redis://HOST:6379/0")
        client = connect(settings.redis_url.get_secret_value())
        reader = open_reader(client, options)
        stop = threading.Event()
        with stop_on_signals(stop):
            done = run_tail(reader, options, write, stop,
                            on_batch=lambda n: push(reader, n) if follow and throttle() else None)
        push(reader, done)
    except (SigmaxError, KeyboardInterrupt) as exc:
        from sigmax_cli.observability.push import exit_code_of

        push(reader, counted[0], exit_code_of(exc))
        raise
    except BrokenPipeError:  # `... | head`: the reader went away; what was printed is checkpointed
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise typer.Exit(0) from None
    finally:
        if client is not None:
            client.close()
