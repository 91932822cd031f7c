"""Turn SIGINT/SIGTERM/SIGHUP into a stop event, so a loop can finish its step and save state."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
"""The signals that end a run cleanly. SIGHUP is the closed terminal (or ssh session) of a bot
started by hand: without a handler it would kill the bot on the spot and leave its run
``running``; handled like SIGTERM, the bot finishes its bar and marks the run ``interrupted``."""


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Within the block, the first SIGINT, SIGTERM or SIGHUP sets ``stop``; a second SIGINT
    raises ``KeyboardInterrupt`` as usual. Handlers are restored on exit. Outside the main
    thread (e.g. under a test runner thread) no handler is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum, _frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
