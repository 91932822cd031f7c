"""Typed, frozen settings: one object per invocation.

Precedence, highest first (see ../shared/DESIGN.md, "Settings"):

1. command-line options (passed to :func:`load_settings` as ``overrides``)
2. environment variables ``SIGMAX_*`` (nested with ``__``: ``SIGMAX_RISK__MAX_ORDER_NOTIONAL``)
3. an env file (``--env-file``, or ``.env.testnet`` / ``.env.live`` for ``sigmax run``)
4. the profile TOML (``profiles/<name>.toml``; ``conservative`` by default)
5. the defaults below

Units: money in the quote currency (USDT for the bundled profiles); fields ending in
``_pct`` are percent (3.0 means 3 %), fields ending in ``_fraction`` are fractions (0.03);
durations carry their unit in the name (``_minutes``, ``_seconds``); timestamps are UTC ms.

Secrets (API keys, passwords, webhook URLs, the password inside a database or Redis URL)
are ``SecretStr`` or redacted by :func:`redacted_dict`; :func:`secret_values` lists them
so that logging can mask them (see ``sigmax_cli.logs``).

The layers are merged here (:func:`load_settings`) and validated once by pydantic. This
module used pydantic-settings for the merge until it was measured: importing it costs about
30 ms and building its sources another 6 ms per invocation (``python -X importtime`` and
``benchmarks/health_latency.py``), half the whole ``import typer, rich`` that ``sigmax health``
is held to 4 times of; the merge it did for us is the fifty lines of :func:`env_layer` and
:func:`deep_merge`. The rules are the ones it applied: ``SIGMAX_`` prefix, case-insensitive
names, ``__`` nesting, blank values mean unset, env-file keys without the prefix are left
alone, an unknown ``SIGMAX_*`` name is an error inside a section or in an env file (a typo
there would otherwise be silently ignored) and ignored at the top level of the environment
(other tools set ``SIGMAX_*`` variables of their own).
"""

from __future__ import annotations

import io
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sigmax_cli.errors import ConfigError

BUILTIN_PROFILES = ("conservative", "balanced", "aggressive")
DEFAULT_PROFILE = "conservative"
REDACTED = "***"
ENV_PREFIX = "SIGMAX_"
"""Prefix of every setting's environment variable (``SIGMAX_TIMEFRAME``)."""
ENV_NESTED = "__"
"""Separator of nested names (``SIGMAX_RISK__MAX_ORDER_NOTIONAL``, ``SIGMAX_HEALTH__DISK_FREE_PCT__WARNING``)."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StrategySettings(_Section):
    """Parameters of the rule strategy (trend filter + RSI/MACD entries, SL/TP exits).

    Sources: RSI after Wilder (1978), MACD after Appel (1979), both on bar closes.
    """

    trend_ema: int = Field(200, ge=2, description="bars; trend filter EMA length")
    rsi_period: int = Field(14, ge=2, description="bars; Wilder RSI length")
    rsi_entry: float = Field(35.0, gt=0, lt=100, description="RSI points; buy below")
    rsi_exit: float = Field(70.0, gt=0, lt=100, description="RSI points; sell above")
    macd_fast: int = Field(12, ge=1, description="bars")
    macd_slow: int = Field(26, ge=2, description="bars")
    macd_signal: int = Field(9, ge=1, description="bars")
    stop_loss_pct: float = Field(3.0, gt=0, lt=100, description="percent below entry")
    take_profit_pct: float = Field(6.0, gt=0, description="percent above entry")
    position_fraction: float = Field(
        0.1, gt=0, le=1, description="fraction of equity allocated per symbol"
    )
    tables: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="parameters of user strategies: one sub-table per strategy name, "
        "[strategy.sma_cross] / SIGMAX_STRATEGY__SMA_CROSS__FAST; validated by the strategy's Params",
    )

    @model_validator(mode="before")
    @classmethod
    def _sub_tables(cls, data: Any) -> Any:
        """Move the sub-tables of ``[strategy]`` (``[strategy.NAME]``) into ``tables``, keyed by
        the lower-cased strategy name; scalar keys stay the rule strategy's (unknown ones are
        still refused)."""
        if not isinstance(data, Mapping):
            return data
        out = {k: v for k, v in data.items() if not (isinstance(v, Mapping) and k not in cls.model_fields)}
        tables = {str(k).lower(): dict(v) for k, v in data.items()
                  if isinstance(v, Mapping) and k not in cls.model_fields}
        if tables:
            out["tables"] = {**dict(out.get("tables") or {}), **tables}
        return out


class RiskSettings(_Section):
    """Pre-trade limits the RiskGuard enforces. Money in quote currency."""

    max_order_notional: float = Field(1000.0, gt=0, description="quote per order")
    max_position_notional: float = Field(2000.0, gt=0, description="quote per symbol")
    max_total_notional: float = Field(5000.0, gt=0, description="quote across symbols")
    max_open_orders: int = Field(4, ge=1, description="orders resting at once")
    daily_loss_limit_pct: float = Field(
        2.0, gt=0, lt=100, description="percent of start-of-UTC-day equity"
    )
    max_drawdown_pct: float = Field(10.0, gt=0, lt=100, description="percent from peak equity")
    max_consecutive_losses: int = Field(4, ge=1, description="losing round trips in a row")
    cooldown_minutes: int = Field(240, ge=0, description="minutes paused after a stop-out")
    weekly_loss_limit_pct: float = Field(
        5.0, gt=0, lt=100, description="percent of start-of-ISO-week equity"
    )
    max_orders_per_minute: int = Field(10, ge=1, description="exposure-adding orders per 60 s")
    max_slippage_bps: float = Field(50.0, gt=0, description="basis points of adverse fill slippage")
    max_api_errors_per_minute: int = Field(5, ge=1, description="exchange errors per 60 s before a pause")
    stale_data_bars: int = Field(3, ge=1, description="bars of missing data before trading halts")
    min_sentiment: float = Field(-0.6, ge=-1, le=1, description="research sentiment at or below: no entries")
    max_consecutive_rejections: int = Field(
        3, ge=1, description="rejections in a row (symbol, side, cause) before an alert, back-off and exit_blocked"
    )
    max_capital: float | None = Field(
        None, gt=0, description="quote; live trading refuses to start without it"
    )


class PaperSettings(_Section):
    """The paper broker's account and fill model."""

    balance: float = Field(10_000.0, gt=0, allow_inf_nan=False, description="starting quote balance")
    maker_fee: float = Field(0.001, ge=0, lt=0.1, description="fraction of notional")
    taker_fee: float = Field(0.001, ge=0, lt=0.1, description="fraction of notional")
    slippage_bps: float = Field(5.0, ge=0, lt=10_000, description="basis points vs bar open")
    participation: float = Field(
        0.1, gt=0, le=1, description="max fraction of a bar's volume one order may fill"
    )


DEFAULT_FEEDS = (
    "coindesk=https://www.coindesk.com/arc/outboundfeeds/rss/",
    "cointelegraph=https://cointelegraph.com/rss",
    "decrypt=https://decrypt.co/feed",
    "theblock=https://www.theblock.co/rss.xml",
)


class ResearchSettings(_Section):
    """``sigmax research``: news feeds, market context APIs, coin detection, the signal stream.

    ``feeds`` entries are ``NAME=URL`` or a bare URL (named after its host). ``symbols`` are
    tickers detected in headlines (by ticker and name, see ``sigmax_cli.research.coins``);
    ``market_coins`` are the tickers whose CoinGecko market data is fetched. Lists accept a
    comma-separated string (``SIGMAX_RESEARCH__SYMBOLS=BTC,ETH``).
    """

    sources: list[str] = Field(
        default_factory=lambda: ["rss", "feargreed", "coingecko", "cryptopanic"])
    feeds: list[str] = Field(default_factory=lambda: list(DEFAULT_FEEDS))
    symbols: list[str] = Field(default_factory=lambda: ["BTC", "ETH", "SOL", "XRP"])
    market_coins: list[str] = Field(default_factory=lambda: ["BTC", "ETH"])
    half_life_hours: float = Field(6.0, gt=0, description="hours; weight of an item halves per half-life")
    lookback_hours: float = Field(48.0, gt=0, description="hours; items published earlier are not aggregated")
    stream: str = Field("sigmax:signals", min_length=1, description="Redis stream key of published signals")
    stream_max_len: int = Field(10_000, ge=1, description="entries; XADD MAXLEN ~ cap of the stream")
    http_timeout_seconds: float = Field(10.0, gt=0, le=300, description="seconds; connect and read timeout")
    http_retries: int = Field(2, ge=0, le=10, description="retries after the first try (5xx, 429, network)")
    feargreed_url: str = Field("https://api.alternative.me", description="base URL of the Fear & Greed API")
    coingecko_url: str = Field("https://api.coingecko.com/api/v3", description="base URL of CoinGecko")
    cryptopanic_url: str = Field("https://cryptopanic.com/api/developer/v2", description="base URL of CryptoPanic")
    cryptopanic_key: SecretStr | None = Field(None, description="CryptoPanic auth token (secret)")

    @field_validator("sources", "feeds", "symbols", "market_coins", mode="before")
    @classmethod
    def _lists_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("symbols", "market_coins")
    @classmethod
    def _tickers_upper(cls, value: list[str]) -> list[str]:
        return [s.strip().upper() for s in value]


class BackupSettings(_Section):
    """``sigmax backup`` / ``sigmax restore``: where archives go and when a restore is refused."""

    dir: Path | None = Field(None, description="archive directory; None means <home>/backups")
    compression_level: int = Field(
        3, ge=1, le=19, description="zstd level of archive members (3 is zstd's own default)"
    )
    heartbeat_fresh_seconds: float = Field(
        60.0, gt=0, description="seconds; a 'running' heartbeat younger than this blocks a restore"
    )
    pg_bin_dir: Path | None = Field(
        None, description="directory holding pg_dump and pg_restore; None means search PATH"
    )



class Thresholds(_Section):
    """A (warning, critical) pair of one health measurement, in the unit its field name
    carries (``_ms``, ``_s``, ``_h``, ``_pct``). A value *past* a threshold trips it; a value
    equal to it does not, as in the monitoring-plugins range syntax (``10`` alerts above 10).
    Higher is worse; warning must not be past critical.
    """

    warning: float = Field(ge=0, description="past this: WARNING")
    critical: float = Field(ge=0, description="past this: CRITICAL")

    @property
    def lower_is_worse(self) -> bool:
        return False

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        w, c = self.warning, self.critical
        if (w < c) if self.lower_is_worse else (w > c):
            side = "below" if self.lower_is_worse else "above"
            raise ValueError(f"warning {w:g} must not be {side} critical {c:g}: warning must trip first")
        return self


class FloorThresholds(Thresholds):
    """Thresholds of a measurement where lower is worse (free disk): it trips *below* them."""

    @property
    def lower_is_worse(self) -> bool:
        return True


def _pair(warning: float, critical: float, floor: bool = False) -> Any:
    kind = FloorThresholds if floor else Thresholds
    return Field(default_factory=lambda: kind(warning=warning, critical=critical))


class HealthSettings(_Section):
    """``sigmax health``: time limits and the (warning, critical) threshold of each measurement.

    Units are in the field names: ``_ms`` milliseconds, ``_s`` seconds, ``_h`` hours,
    ``_pct`` percent (0-100), ``load_per_cpu`` the 1-minute load average divided by the CPU
    count. Higher is worse except ``disk_free_pct``. ``data_age_s`` is the lateness allowed
    *beyond one bar* of the bot's timeframe. Where the defaults come from is documented in
    ``sigmax_cli.health`` (e.g. ``clock_skew_ms``: Binance refuses requests stamped more than
    1000 ms ahead of its clock).
    """

    timeout_s: float = Field(5.0, gt=0, le=300, description="seconds each check may take")
    exchange_timeout_s: float = Field(10.0, gt=0, le=300, description="seconds the exchange checks may take")
    ledger_latency_ms: Thresholds = _pair(50, 200)
    redis_latency_ms: Thresholds = _pair(20, 100)
    exchange_latency_ms: Thresholds = _pair(1000, 3000)
    clock_skew_ms: Thresholds = _pair(500, 1000)
    disk_free_pct: FloorThresholds = _pair(20, 10, floor=True)
    memory_used_pct: Thresholds = _pair(90, 95)
    load_per_cpu: Thresholds = _pair(2, 4)
    heartbeat_age_s: Thresholds = _pair(60, 300)
    data_age_s: Thresholds = _pair(120, 600)
    research_age_s: Thresholds = _pair(7200, 86400)
    backup_age_h: Thresholds = _pair(26, 50)

    @model_validator(mode="before")
    @classmethod
    def _fill_pairs(cls, data: Any) -> Any:
        """A pair given in part (``SIGMAX_HEALTH__BACKUP_AGE_H__WARNING=30`` alone) keeps the
        default of its other half."""
        if isinstance(data, dict):
            data = dict(data)
            for name, info in cls.model_fields.items():
                given = data.get(name)
                if isinstance(given, dict) and info.default_factory is not None:
                    default = info.get_default(call_default_factory=True)
                    data[name] = {"warning": default.warning, "critical": default.critical, **given}
        return data

    @model_validator(mode="after")
    def _percent_range(self) -> HealthSettings:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_pct") and max(value.warning, value.critical) > 100:
                raise ValueError(f"{name} is a percentage: its thresholds must lie between 0 and 100")
        return self


class AlertSettings(_Section):
    """Alert channels beside ``alert_webhook_url`` (Slack-compatible), and routing."""

    telegram_bot_token: SecretStr | None = Field(None, description="Telegram bot token (secret)")
    telegram_chat_id: str | None = Field(None, description="chat to write to")
    telegram_api_url: str = Field("https://api.telegram.org", description="Bot API base URL")
    smtp_host: str | None = Field(None, description="SMTP server host")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port")
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = Field("sigmax@localhost", description="From address")
    smtp_to: list[str] = Field(default_factory=list, description="recipients")
    smtp_starttls: bool = Field(True, description="STARTTLS before login")
    min_severity: Literal["info", "warning", "error", "critical"] = "warning"
    debounce_seconds: float = Field(300.0, ge=0, description="seconds a trigger stays quiet after firing")

    @field_validator("smtp_to", mode="before")
    @classmethod
    def _to_csv(cls, value: Any) -> Any:
        return _split_csv(value)


class SecuritySettings(_Section):
    """``sigmax security-scan``: vulnerability service and failure threshold."""

    vulnerability_service: Literal["osv", "pypi"] = Field(
        "osv", description="where pip-audit looks up advisories: an OSV API or the PyPI JSON API"
    )
    osv_url: str = Field("https://api.osv.dev/v1/query", description="OSV-compatible /v1/query URL")
    timeout_seconds: float = Field(15.0, gt=0, le=300, description="seconds per vulnerability-service request")
    fail_on: Literal["low", "medium", "high", "critical"] = Field(
        "high", description="lowest severity that makes the scan exit 1"
    )
    baseline: Path | None = Field(None, description="baseline (ignore) TOML file")


class LiveSettings(_Section):
    """``sigmax run``: the live broker (testnet or live), reconciliation, polling, metrics.

    Back-off after Binance's guidance (retry only what is safe, honour ``Retry-After`` on
    429/418); ``recv_window_ms`` 5000 is Binance's own default recvWindow.
    """

    unknown_orders: Literal["cancel", "adopt"] = Field(
        "cancel", description="open exchange orders no sigmax run placed: cancel them, or adopt them into the run")
    reconcile_every_ticks: int = Field(30, ge=1, description="ticks between reconciliations (also one at start)")
    poll_seconds: float | None = Field(
        None, gt=0, le=300, description="seconds between candle polls; None = timeframe/10 within 1-60 s")
    clock_sync_seconds: float = Field(60.0, ge=0, description="seconds between reads of the exchange clock")
    signal_max_age_seconds: float | None = Field(
        None, gt=0, description="seconds; no order for a bar that closed longer ago (backfill); None = one bar")
    backfill_max_bars: int = Field(1000, ge=0, description="bars; missed bars backfilled after a restart, at most")
    stale_after_bars: float = Field(1.0, gt=0, description="bars the next bar may be overdue before data is stale")
    timeout_seconds: float = Field(10.0, gt=0, le=120, description="seconds; HTTP timeout of one exchange request")
    recv_window_ms: int = Field(5000, ge=1, le=60_000, description="ms; a signed request older than this is refused")
    accept_tolerance_ms: int = Field(
        1000, ge=0, le=60_000,
        description="ms added to the deadline after which a request whose answer was lost can no longer be accepted "
        "(signed timestamp + recv_window_ms + measured clock lead) before the order may be sent again; Binance "
        "refuses requests timestamped 1000 ms or more ahead of its clock, so 1000 covers any lead it accepts even "
        "unmeasured. Raise it for an exchange more tolerant than that; lower it only knowing the exchange's rule")
    rate_limit_ms: float | None = Field(
        None, gt=0, description="ms between requests; None = ccxt's default for the exchange (binance: 50)")
    retry_attempts: int = Field(4, ge=1, le=20, description="tries of an idempotent call on temporary errors")
    retry_base_seconds: float = Field(0.5, gt=0, description="seconds; first back-off, doubled per try, jittered")
    retry_max_seconds: float = Field(10.0, gt=0, description="seconds; longest back-off (Retry-After may be longer)")
    submit_attempts: int = Field(3, ge=1, le=10, description="sends of one order, same client order id")
    heartbeat_ttl_seconds: float = Field(300.0, gt=0, description="seconds a Redis heartbeat key lives")
    metrics_host: str = Field("127.0.0.1", description="address that --metrics-port binds to")


class LedgerSettings(_Section):
    """The ledger's behaviour when its database stops answering mid-run."""

    outage_grace_seconds: float = Field(
        300.0, gt=0, le=86_400,
        description="seconds a run stays HALTED (rows kept in memory, writes retried with back-off) while the "
        "ledger database does not answer, before it gives up: exit 69, run marked failed")


class RLSettings(_Section):
    """RL policies (``sigmax train-rl``, ``--strategy rl:MODEL.zip``)."""

    sentiment_file: Path | None = Field(
        None, description="saved alternative.me /fng/ answer for models with the fear_greed feature; "
        "None = the file the model was trained with")
    allow_other_symbol: bool = Field(
        False, description="let a model trained on one symbol trade another (--allow-other-symbol); "
        "refused by default")


class Settings(BaseModel):
    """Everything one sigmax invocation reads. Frozen; build with :func:`load_settings`, which
    merges the layers (command line, environment, env file, profile) before validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(default_factory=lambda: default_home())
    profile: str = DEFAULT_PROFILE
    exchange: str = "binance"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"])
    timeframe: str = "1h"
    quote: str = "USDT"
    database_url: SecretStr | None = None
    redis_url: SecretStr | None = None
    redis_prefix: str = Field("sigmax:", description="prefix of every Redis key and channel sigmax uses")
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_password: SecretStr | None = None
    alert_webhook_url: SecretStr | None = None
    exchange_api_url: str | None = Field(
        None, description="override the exchange's REST base URL (emulators, proxies)"
    )
    markets_file: Path | None = Field(
        None, description="ccxt market structures (JSON) for precision and limits"
    )
    env: Literal["paper", "testnet", "live"] = "paper"
    strategy: StrategySettings = Field(default_factory=StrategySettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    paper: PaperSettings = Field(default_factory=PaperSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    research: ResearchSettings = Field(default_factory=ResearchSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    rl: RLSettings = Field(default_factory=RLSettings)

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols_csv(cls, value: Any) -> Any:
        value = _split_csv(value)
        if isinstance(value, list):
            return [str(s).upper() for s in value]
        return value

    @field_validator("symbols")
    @classmethod
    def _symbols_shape(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one symbol is needed")
        for sym in value:
            if "/" not in sym:
                raise ValueError(f"symbol {sym!r} must look like BASE/QUOTE, e.g. BTC/USDT")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        """``redis://``, ``rediss://`` or ``unix://``, and parseable by redis-py: a typo such as
        ``redis//host`` would otherwise pass here and leave the kill switch on this host only."""
        if value is None:
            return value
        url = value.get_secret_value().strip()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("SIGMAX_REDIS_URL must start with redis://, rediss:// or unix:// "
                             "(e.g. redis://127.0.0.1:6379/0)")
        from redis.connection import parse_url

        try:
            parse_url(url)
        except ValueError as exc:  # its text never holds the password: a port, a db number, a query option
            raise ValueError(f"redis-py cannot parse SIGMAX_REDIS_URL ({str(exc).rstrip('.')}); "
                             "use redis://[:password@]host:port/db") from None
        return SecretStr(url)

    @field_validator("timeframe")
    @classmethod
    def _timeframe_known(cls, value: str) -> str:
        from sigmax_cli.timeframes import timeframe_to_ms

        timeframe_to_ms(value)  # raises ValueError via ConfigError subclass message
        return value

    @property
    def ledger_url(self) -> str:
        """SQLAlchemy URL of the ledger: PostgreSQL when configured, else SQLite in home."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.home / 'ledger.db'}"


def default_home() -> Path:
    """The state directory when neither ``--home`` nor ``SIGMAX_HOME`` is set.

    ``platformdirs.user_data_dir("sigmax")``, e.g. ``~/.local/share/sigmax`` on Linux.
    """
    import platformdirs

    return Path(platformdirs.user_data_dir("sigmax", appauthor=False))


def profile_path(name: str) -> Path:
    """Resolve a profile name or path to a TOML file.

    Looks for ``name`` as a path (``*.toml``), then ``$SIGMAX_HOME/profiles/<name>.toml``,
    then ``./profiles/<name>.toml``, then the profiles shipped with sigmax.

    Raises:
        ConfigError: no such profile.
    """
    candidate = Path(name).expanduser()
    if candidate.suffix == ".toml":
        if candidate.is_file():
            return candidate
        raise ConfigError(f"profile file {candidate} does not exist", "check the path")
    search: list[Path] = []
    home = os.environ.get("SIGMAX_HOME")
    if home:
        search.append(Path(home) / "profiles")
    search.append(Path.cwd() / "profiles")
    search.append(_shipped_profiles_dir())
    for folder in search:
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    raise ConfigError(
        f"unknown profile {name!r}",
        f"use one of {', '.join(BUILTIN_PROFILES)} or a path to a .toml file",
    )


def _shipped_profiles_dir() -> Path:
    bundled = resources.files("sigmax_cli") / "_profiles"
    if bundled.is_dir():
        return Path(str(bundled))
    return Path(__file__).resolve().parent.parent / "profiles"  # editable install / checkout


def read_profile(name: str) -> dict[str, Any]:
    """Parse a profile TOML into a settings dict.

    Raises:
        ConfigError: unknown profile, unreadable file or malformed TOML (with line/column).
    """
    path = profile_path(name)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"profile {path} is not valid TOML ({exc})", "fix the file or pick another profile"
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path} ({exc.strerror})", "check its permissions") from exc


def env_layer(variables: Mapping[str, str | None], *, strict: bool, source: str = "the environment") -> dict[str, Any]:
    """The ``SIGMAX_*`` entries of ``variables`` as a settings dict.

    ``SIGMAX_RISK__MAX_OPEN_ORDERS=9`` becomes ``{"risk": {"max_open_orders": "9"}}`` (values
    stay strings; validation converts them). Names are case-insensitive; blank and ``None``
    values are left out (``SIGMAX_API_KEY=`` means "not set"); names without the prefix are
    ignored.

    Args:
        variables: the environment, or the pairs of an env file.
        strict: whether an unknown top-level name is an error (an env file) or ignored (the
            environment, where other tools keep ``SIGMAX_*`` variables of their own).
            Unknown names *inside* a section are kept either way, so that validation rejects
            them as unknown settings.
        source: where the variables come from, for messages ("env file .env.testnet").

    Raises:
        ConfigError: an unknown top-level name when ``strict``; a name that is both a value
            and a section (``SIGMAX_RISK`` beside ``SIGMAX_RISK__MAX_OPEN_ORDERS``).
    """
    fields = Settings.model_fields
    out: dict[str, Any] = {}
    for name, value in variables.items():
        if value is None or value == "" or not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split(ENV_NESTED)
        if path[0] not in fields:
            if strict:
                raise ConfigError(f"unknown setting {'.'.join(path)!r} ({name} in {source})",
                                  "check its spelling against .env.testnet.example")
            continue
        node = out
        for depth, part in enumerate(path[:-1], 1):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                shorter = ENV_PREFIX + ENV_NESTED.join(path[:depth]).upper()
                raise ConfigError(f"{name} and {shorter} are both set in {source}", "keep one of them")
        if isinstance(node.get(path[-1]), dict):
            raise ConfigError(f"{name} and {name}{ENV_NESTED}... are both set in {source}", "keep one of them")
        node[path[-1]] = value
    return out


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge settings dicts, later layers winning; nested dicts (sections, threshold pairs)
    merge key by key, so that ``SIGMAX_RISK__MAX_OPEN_ORDERS`` overrides one value of the
    profile's ``[risk]`` table and keeps the rest."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            elif isinstance(value, Mapping):
                out[key] = deep_merge(value)
            else:
                out[key] = value
    return out


_SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|PASSPHRASE|WEBHOOK", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:\s]*:[^/@\s]+@", re.IGNORECASE)


def _file_kind(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def check_env_file(path: Path) -> os.stat_result:
    """``stat`` of an env file named by the user, refusing what cannot be one.

    Raises:
        ConfigError: it does not exist, cannot be looked at, or is not a regular file (a
            directory, ``/dev/zero``, a pipe or a socket, named as such).
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"env file {path} does not exist",
                          "create it from .env.testnet.example (chmod 600) or drop --env-file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path} ({exc.strerror})", "check the path and its permissions") \
            from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"env file {path} is {_file_kind(info.st_mode)}, not a file of SIGMAX_* settings",
                          "point --env-file at a dotenv file such as .env.testnet")
    return info


def read_env_file(path: Path) -> tuple[dict[str, str | None], list[str]]:
    """The ``KEY=VALUE`` pairs of a dotenv file, and warnings about it.

    Checked before anything is read: the path exists and is a regular file (a directory,
    ``/dev/zero`` or a pipe is named as such; reading a device would never end). Every line
    must parse (python-dotenv's grammar); the first that does not is named by its number,
    never its text (it may hold a secret). A file that holds a secret value (a name like
    ``*KEY*``, ``*SECRET*``, ``*PASSWORD*``, ``*TOKEN*``, ``*WEBHOOK*``, or a URL with a
    password) and that group or others may read gives the warning "``PATH`` holds API keys and
    is readable by group or others (mode 0644); chmod 600 ``PATH``".

    Raises:
        ConfigError: missing, not a regular file, unreadable, not UTF-8, or a line that is not
            ``KEY=VALUE``.
    """
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    path = Path(path)
    info = check_env_file(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"env file {path} is not UTF-8 text", "save it as UTF-8 KEY=VALUE lines") from None
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path} ({exc.strerror})", "check its permissions") from None
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigError(f"env file {path} line {binding.original.line} is not a KEY=VALUE setting",
                              "fix that line (quote values with spaces or #, e.g. KEY=\"a b\") or remove it")
    values = {k.upper(): v for k, v in dotenv_values(stream=io.StringIO(text)).items()}
    warnings = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and any(v and (_SECRET_NAME.search(k) or _URL_PASSWORD.match(v)) for k, v in values.items()):
        warnings.append(f"{path} holds API keys and is readable by group or others (mode {mode:04o}); "
                        f"chmod 600 {path}")
    return values, warnings


def load_settings(
    *,
    profile: str | None = None,
    home: Path | None = None,
    env_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
) -> Settings:
    """Build the one settings object of this invocation.

    Args:
        profile: profile name or TOML path; ``SIGMAX_PROFILE`` or ``conservative`` if None.
        home: state directory from ``--home``; else ``SIGMAX_HOME``; else the default.
        env_file: a dotenv file of ``SIGMAX_*`` keys; must exist when given.
        overrides: command-line values, nested as the model (``{"paper": {"balance": 5}}``);
            ``None`` values are dropped so that unset options do not mask lower layers.
        warnings: when given, warnings about the env file are appended to it (a file holding
            keys that others may read, :func:`read_env_file`).

    Raises:
        ConfigError: unknown profile, malformed TOML, invalid value; an env file that is
            missing, not a regular file, unreadable or malformed.
    """
    file_values: dict[str, str | None] = {}
    if env_file is not None:
        file_values, file_warnings = read_env_file(Path(env_file))
        if warnings is not None:
            warnings.extend(file_warnings)
    environ = env_layer(os.environ, strict=False)
    from_file = env_layer(file_values, strict=True, source=f"env file {env_file}")
    profile_name = profile or environ.get("profile") or from_file.get("profile") or DEFAULT_PROFILE
    profile_data = read_profile(profile_name)
    init = _drop_none(overrides or {})
    if home is not None:
        init["home"] = Path(home)
    init["profile"] = profile_name  # the profile actually read, whichever layer named it
    try:
        return Settings.model_validate(deep_merge(profile_data, from_file, environ, init))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        if err["type"] == "extra_forbidden":
            raise ConfigError(
                f"unknown setting {where!r}",
                f"check its spelling against .env.testnet.example or the profile ({profile_name})",
            ) from None
        raise ConfigError(
            f"setting {where!r} is invalid: {err['msg']}",
            f"fix it in the profile ({profile_name}), the env file, SIGMAX_* or the option",
        ) from None


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def redact_url(url: str) -> str:
    """Hide the password of a URL (``postgresql://u:***@host/db``); other parts stay."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{netloc[-1]}"))


_URL_SECRETS = {"database_url", "redis_url"}


def redacted_dict(settings: Settings) -> dict[str, Any]:
    """Settings as a JSON-safe dict with every secret replaced by ``***``.

    Database and Redis URLs keep their host and user but lose the password; API keys,
    secrets, passwords and webhook URLs are replaced whole.
    """
    data = settings.model_dump(mode="python")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, SecretStr):
            out[key] = redact_url(value.get_secret_value()) if key in _URL_SECRETS else REDACTED
        elif isinstance(value, Path):
            out[key] = str(value)
        elif isinstance(value, dict):  # a section: its secrets (e.g. research.cryptopanic_key) too
            out[key] = {k: REDACTED if isinstance(v, SecretStr) else v for k, v in value.items()}
        else:
            out[key] = value
    return out


def secret_values(settings: Settings) -> list[str]:
    """Every secret string in ``settings`` (and URL passwords), for log masking."""
    from urllib.parse import urlsplit

    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            raw = value.get_secret_value()
            if not raw:
                continue
            if name in _URL_SECRETS:
                try:
                    pw = urlsplit(raw).password
                except ValueError:
                    pw = None
                if pw:
                    found.append(pw)
            else:
                found.append(raw)
        elif isinstance(value, BaseModel):  # a section's secrets, e.g. research.cryptopanic_key
            found.extend(v.get_secret_value() for v in value.__dict__.values()
                         if isinstance(v, SecretStr) and v.get_secret_value())
    return found
