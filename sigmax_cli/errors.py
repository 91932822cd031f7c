"""The sigmax error tree.

Every error a user can cause or an operator must act on is a :class:`SigmaxError`.
Each carries a ``cause`` (what went wrong) and a ``fix`` (what to do about it); the CLI's
single error boundary (``commands.app``) prints them as one sentence and exits with the
error's ``exit_code``. Library exceptions (ccxt, SQLAlchemy, pydantic, OSError) are
translated into these classes where they are raised, never shown raw.

Grouping follows what the operator must do (after freqtrade's exception groups)::

    SigmaxError
    ├── ConfigError          bad option, profile, env file, setting        exit 2
    ├── DataError            unreadable, corrupt or insufficient data      exit 65
    ├── LedgerError          ledger unreachable or incompatible            exit 69
    │   └── LedgerUnavailable  the ledger stopped answering mid-run (rows kept buffered)
    ├── NotFoundError        an id / file the user named does not exist    exit 66
    ├── ExchangeError        exchange-side failure, a human must act       exit 69
    │   ├── TemporaryError   network blip, timeout, 5xx: retry with back-off
    │   │   └── RateLimited  429/418: back off at least ``retry_after`` s
    │   ├── AuthenticationError
    │   └── OrderRejected    the exchange or paper broker refused an order
    │       └── InsufficientFunds
    ├── RiskBlocked          the RiskGuard denied an order                  exit 1
    ├── Halted               a run ended HALTED by the kill switch          exit 3
    ├── StrategyCodeError    a user strategy's own code raised              exit 4
    └── Interrupted          Ctrl-C / SIGTERM; state was saved             exit 130

Backups and restores (``sigmax backup`` / ``sigmax restore``) have their own codes, so a
cron job can tell them apart (numbered after restic's 10 "no repository" and 11 "lock")::

    ArchiveNotFound      (NotFoundError) the archive named does not exist      exit 10
    LockHeld             another backup or restore holds the lock          exit 11
    ChecksumMismatch     (DataError) a checksum, size, member or manifest fails exit 12
    TargetBusy           a bot runs or the kill switch is not engaged      exit 13
    IncompatibleArchive  made by a newer sigmax (format or ledger schema)  exit 69
"""

from __future__ import annotations


class SigmaxError(Exception):
    """Base of all sigmax errors.

    Args:
        cause: what went wrong, as the user would say it (no trailing period needed).
        fix: what to do about it; optional, appended after the cause.
    """

    exit_code: int = 1

    def __init__(self, cause: str, fix: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause.rstrip(". ")
        self.fix = fix.rstrip(". ") if fix else None

    details: str | None = None
    """Text the CLI prints on stderr before the one-line error (a user strategy's traceback)."""

    def sentence(self) -> str:
        """The cause and the fix as one line: ``"<cause>; <fix>."``."""
        if self.fix:
            return f"{self.cause}; {self.fix}."
        return f"{self.cause}."


class ConfigError(SigmaxError):
    """A setting, option, profile or env file is wrong or missing."""

    exit_code = 2


class DataError(SigmaxError):
    """Market data (candles, archives, feeds) is unreadable, corrupt or too short."""

    exit_code = 65  # EX_DATAERR, sysexits.h


class NotFoundError(SigmaxError):
    """Something the user named (run id, archive, model) does not exist."""

    exit_code = 66  # EX_NOINPUT


class LedgerError(SigmaxError):
    """The ledger database cannot be reached, or its schema is incompatible."""

    exit_code = 69  # EX_UNAVAILABLE


class LedgerUnavailable(LedgerError):
    """The ledger database stopped answering while a run wrote to it (server down, session
    terminated, disk full). The rows it could not write stay buffered in the :class:`Ledger`;
    a run halts and retries (``ledger.outage_grace_seconds``) before giving up with this."""


class ExchangeError(SigmaxError):
    """An exchange call failed in a way a human must look at."""

    exit_code = 69


class TemporaryError(ExchangeError):
    """A transient failure (network, timeout, 5xx, maintenance): safe to retry."""


class RateLimited(TemporaryError):
    """The exchange asked us to slow down (HTTP 429/418).

    Attributes:
        retry_after: seconds to wait before the next call, from ``Retry-After`` when sent.
    """

    def __init__(self, cause: str, fix: str | None = None, retry_after: float | None = None):
        super().__init__(cause, fix)
        self.retry_after = retry_after


class AuthenticationError(ExchangeError):
    """API key missing, wrong, expired or lacking a permission."""

    exit_code = 77  # EX_NOPERM


class OrderRejected(ExchangeError):
    """An order was refused (precision, min notional, unknown symbol, funds).

    Args:
        cause, fix: as :class:`SigmaxError`.
        kind: the cause as a stable key for counting and alerting: ``"precision"`` (the
            amount rounds to zero), ``"min_amount"``, ``"min_notional"``, ``"price"`` (no
            valid price), ``"insufficient_funds"``, ``"duplicate"`` (client order id reused),
            ``"exchange"`` (refused by the exchange or anything else; the default).
    """

    exit_code = 1
    default_kind = "exchange"

    def __init__(self, cause: str, fix: str | None = None, kind: str | None = None) -> None:
        super().__init__(cause, fix)
        self.kind = kind or self.default_kind


class InsufficientFunds(OrderRejected):
    """The account does not hold enough of the asset the order spends."""

    default_kind = "insufficient_funds"


class RiskBlocked(SigmaxError):
    """The RiskGuard denied an order or the kill switch is engaged."""

    exit_code = 1


class Halted(SigmaxError):
    """A ``paper`` or ``run`` reached its end (data, ``--max-bars``, ``--max-ticks``) while the
    kill switch (engaged, or its state unknown) held trading HALTED; the run is ``halted``."""

    exit_code = 3


class StrategyCodeError(SigmaxError):
    """A user strategy (a file, a module or a plugin: code that is not sigmax's) raised an
    exception, or broke the Strategy contract (a feature of the wrong length, an ``on_bar``
    answer that is not a Signal). A run it happens in ends ``failed``.

    Args:
        cause, fix: as :class:`SigmaxError`.
        details: the user's own traceback (frames of sigmax's engine left out), printed by
            the CLI above the one-line error; ``None`` for a contract violation.
    """

    exit_code = 4

    def __init__(self, cause: str, fix: str | None = None, details: str | None = None) -> None:
        super().__init__(cause, fix)
        self.details = details


class Interrupted(SigmaxError):
    """The run was stopped by Ctrl-C or SIGTERM after saving its state."""

    exit_code = 130


class ArchiveNotFound(NotFoundError):
    """The backup archive named (or ``--latest``) does not exist."""

    exit_code = 10


class LockHeld(SigmaxError):
    """Another ``sigmax backup`` or ``sigmax restore`` holds the lock in ``SIGMAX_HOME``."""

    exit_code = 11


class ChecksumMismatch(DataError):
    """A backup archive failed an integrity check: a member's sha256 or size, the manifest's
    own checksum, a missing or extra member, a truncated or damaged tar."""

    exit_code = 12


class TargetBusy(SigmaxError):
    """A restore was refused: a bot's heartbeat is fresh or the kill switch is not engaged."""

    exit_code = 13


class IncompatibleArchive(SigmaxError):
    """A backup archive was made by a newer sigmax (archive format or ledger schema)."""

    exit_code = 69  # EX_UNAVAILABLE, as for a ledger newer than this sigmax
