"""Pushing a batch job's metrics to a Prometheus Pushgateway (``--pushgateway URL`` of
``backup``, ``research`` and ``signals tail``; ``health`` pushes its own report, see
:func:`sigmax_cli.health.formats.push_prometheus`).

A job's metrics (:class:`JobMetrics`) come from the catalogue
(:mod:`sigmax_cli.observability.metrics`): ``sigmax_job_last_success_timestamp_seconds``,
``sigmax_job_last_failure_timestamp_seconds``, ``sigmax_job_duration_seconds``,
``sigmax_job_exit_code`` and whatever the job adds (archive bytes, research items, the
signal stream's state). They are pushed with prometheus-client under the Pushgateway job
``sigmax_<command>`` and the grouping key ``instance`` (this host's name unless given):

* a run that succeeded replaces its group's metrics (``push_to_gateway``, HTTP PUT);
* a run that failed adds its exit code, failure time, duration and the figures it has
  (``pushadd_to_gateway``, HTTP POST), so the last success's timestamp stays visible next to
  the failure, as the Pushgateway's documentation recommends for batch jobs.

A push that fails is a warning for the caller to print; it never changes the job's own exit
code (a monitoring outage must not fail a backup). ``prometheus_client`` is imported only here,
when a push is asked for.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from sigmax_cli.errors import ConfigError

PUSH_TIMEOUT_S = 5.0
"""Seconds a push may take before it counts as failed."""


def job_name(command: str) -> str:
    """The Pushgateway job of a sigmax command: ``backup`` -> ``sigmax_backup``."""
    return f"sigmax_{command.replace('-', '_').replace(' ', '_')}"


def check_url(url: str) -> None:
    """Refuse a ``--pushgateway`` URL that is not ``http(s)://host[:port][/path]``, before the
    job runs.

    Raises:
        ConfigError: another scheme, no host, or a port that is not a number.
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--pushgateway {url} is not an http(s) URL",
                          "pass the Pushgateway's address, e.g. http://127.0.0.1:9091")


def push_registry(url: str, job: str, registry: Any, grouping: dict[str, str], replace: bool = True,
                  timeout_s: float = PUSH_TIMEOUT_S) -> str | None:
    """Push ``registry`` to the Pushgateway at ``url`` under ``job`` and ``grouping``.

    Args:
        replace: PUT (replace the group's metrics) when true, POST (replace only the metric
            names pushed) when false.

    Returns:
        ``None`` when pushed, else one sentence saying why not (for a warning).
    """
    from prometheus_client import push_to_gateway, pushadd_to_gateway

    send = push_to_gateway if replace else pushadd_to_gateway
    try:
        send(url, job=job, registry=registry, grouping_key=grouping, timeout=timeout_s)
    except OSError as exc:  # urllib's URLError/HTTPError and prometheus_client's IOError on a non-2xx reply
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc) or type(exc).__name__
        return f"cannot push to the Pushgateway {url} ({reason})"
    return None


class JobMetrics:
    """One run of a batch job, as pushed to a Pushgateway.

    Args:
        command: the sigmax command (``backup``); the Pushgateway job is :func:`job_name`.
        instance: the grouping key's ``instance`` (default: this host's name).
        grouping: more grouping labels (``signals tail`` adds its ``group``).

    Attributes:
        registry: the ``CollectorRegistry`` of the run's own figures; add gauges to it with
            :meth:`metric` (catalogue names only).
    """

    def __init__(self, command: str, instance: str | None = None, grouping: dict[str, str] | None = None) -> None:
        from prometheus_client import CollectorRegistry

        self.job = job_name(command)
        self.grouping = {"instance": instance or socket.gethostname(), **(grouping or {})}
        self.registry = CollectorRegistry()
        self._started = time.monotonic()
        self._metrics: dict[str, Any] = {}

    def metric(self, name: str) -> Any:
        """The collector of catalogue metric ``name`` in :attr:`registry` (built once).

        Raises:
            KeyError: ``name`` is not in the catalogue.
        """
        from sigmax_cli.observability.metrics import build

        if name not in self._metrics:
            self._metrics[name] = build(name, self.registry)
        return self._metrics[name]

    def push(self, url: str, exit_code: int) -> str | None:
        """Push the run so far as finished with ``exit_code``: 0 sets
        ``sigmax_job_last_success_timestamp_seconds`` and replaces the group's metrics (PUT);
        another code sets ``..._last_failure_...`` and adds to them (POST), so the last success's
        timestamp stays. Both set ``sigmax_job_duration_seconds`` and ``sigmax_job_exit_code``.

        Returns:
            ``None`` when pushed, else the sentence for a warning.
        """
        ok = exit_code == 0
        which = "success" if ok else "failure"
        self.metric(f"sigmax_job_last_{which}_timestamp_seconds").set(time.time())
        self.metric("sigmax_job_duration_seconds").set(time.monotonic() - self._started)
        self.metric("sigmax_job_exit_code").set(exit_code)
        return push_registry(url, self.job, self.registry, self.grouping, replace=ok)


def exit_code_of(exc: BaseException) -> int:
    """The exit code an exception leaving a command becomes: a :class:`SigmaxError`'s or a
    Typer/Click ``Exit``'s own code, 130 for Ctrl-C, 70 (EX_SOFTWARE) for anything else."""
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    return 130 if isinstance(exc, KeyboardInterrupt) else 70


def push_warning(command: str, message: str) -> str:
    """The stderr line of a failed push: it never changes the job's exit code."""
    return f"warning: {message}; the {command} itself is not affected (its exit code is unchanged).\n"
