"""Logging set-up: rich on a terminal, plain on cron, secrets always masked."""

from __future__ import annotations

import logging
import sys

_LOGGER = "sigmax"


class SecretMask(logging.Filter):
    """Replace every known secret value in a log record's message with ``***``.

    The mask works on the formatted message (``record.getMessage()``), so secrets passed
    as ``%s`` arguments are masked too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in sorted(self.secrets, key=len, reverse=True):
            masked = masked.replace(secret, "***")
        if masked != message:
            record.msg, record.args = masked, None
        return True


_MASK = SecretMask()


def setup_logging(verbosity: int, no_color: bool = False) -> None:
    """Configure the ``sigmax`` logger on stderr.

    Args:
        verbosity: -1 errors only (``-q``), 0 warnings, 1 info (``-v``), 2+ debug (``-vv``).
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger(_LOGGER)
    logger.setLevel(level)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=Console(stderr=True, no_color=no_color or None), show_path=False,
            rich_tracebacks=False,
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_MASK)
    logger.addHandler(handler)
    logger.propagate = False


MIN_MASKED_LENGTH = 4
"""Shorter secrets are not masked in free text: replacing every "b" of a message would
garble it while hiding nothing (a 1-3 character secret is no secret). Settings displays
redact secrets whole regardless of length (``settings.redacted_dict``)."""


def mask_secrets(secrets: list[str]) -> None:
    """Add ``secrets`` (at least ``MIN_MASKED_LENGTH`` long) to the values masked in every
    sigmax log line and error message."""
    _MASK.secrets.update(s for s in secrets if s and len(s) >= MIN_MASKED_LENGTH)


def get_logger(name: str) -> logging.Logger:
    """A child of the ``sigmax`` logger, e.g. ``get_logger(__name__)``."""
    return logging.getLogger(_LOGGER if name == _LOGGER else f"{_LOGGER}.{name.split('.')[-1]}")
