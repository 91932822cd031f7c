"""The ledger schema: one SQLAlchemy Core metadata for SQLite and PostgreSQL.

Conventions: timestamps are UTC ms since epoch (BIGINT); money in quote currency and
amounts in base units are DOUBLE PRECISION (the ledger records what happened; exchange
precision is applied before an order exists); JSON documents are TEXT holding JSON, so
both backends store them identically.

Tables (``SCHEMA_VERSION`` is the newest migration in :mod:`sigmax_cli.ledger.migrations`):

==================  =======================================================================
schema_version      one row per applied migration
runs                a paper or live run: mode, profile, strategy + params, data files and
                    their sha256, status (running / completed / halted / interrupted / failed /
                    lost), host, pid and host id, heartbeat interval, when it was lost / acknowledged
orders              every order by client order id, with its state-machine status
fills               every execution: price, amount (base), fee (in fee_currency), maker/taker
positions           every position change of a symbol: qty after, average price, realised P&L
equity              one mark-to-market snapshot per bar: equity, cash, exposure, benchmark
events              risk trips, rejections, kill switch, warnings: level, kind, JSON data
heartbeats          the newest sign of life of each running bot (health checks read it)
research_items      de-duplicated news items with sentiment (research command)
http_cache          ETag / Last-Modified per URL for conditional GET (research command)
backups             archives written by ``sigmax backup`` and their verification
ledger_writes       per writer (one open :class:`~sigmax_cli.ledger.store.Ledger`), the
                    sequence number of its newest committed batch: after a connection lost
                    during COMMIT, the retry asks it whether that batch is already in
==================  =======================================================================
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_ms", BigInteger, nullable=False),
    Column("description", Text, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),            # paper | testnet | live
    Column("profile", String(128), nullable=False),
    Column("exchange", String(32), nullable=False),
    Column("strategy", String(256), nullable=False),
    Column("params_json", Text, nullable=False),            # strategy + risk + paper settings
    Column("symbols_json", Text, nullable=False),
    Column("timeframe", String(8), nullable=False),
    Column("data_files_json", Text, nullable=False),        # [{"path", "sha256", "bars"}]
    Column("initial_equity", Float, nullable=False),        # quote
    Column("started_ms", BigInteger, nullable=False),       # wall clock
    Column("ended_ms", BigInteger),
    Column("first_bar_ms", BigInteger),
    Column("last_bar_ms", BigInteger),
    Column("status", String(16), nullable=False),           # running|completed|halted|interrupted|failed
    Column("summary_json", Text),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    # schema 3 (liveness, see sigmax_cli.ledger.liveness); NULL on runs of an older sigmax
    Column("host_id", String(64)),                          # host name + boot id + PID namespace, hashed
    Column("heartbeat_interval_ms", BigInteger),            # longest gap between two heartbeats
    Column("lost_ms", BigInteger),                          # when it was found lost (status 'lost')
    Column("lost_acked_ms", BigInteger),                    # when an operator acknowledged the loss
)

orders = Table(
    "orders", metadata,
    Column("client_order_id", String(64), primary_key=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("exchange_order_id", String(64)),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),              # buy | sell
    Column("type", String(8), nullable=False),              # market | limit
    Column("time_in_force", String(4), nullable=False),     # GTC | IOC
    Column("reduce_only", Boolean, nullable=False),
    Column("price", Float),                                 # limit price, quote
    Column("amount", Float, nullable=False),                # base units
    Column("filled", Float, nullable=False),                # base units
    Column("average", Float),                               # average fill price, quote
    Column("fee", Float, nullable=False),                   # quote
    # new | open | partially_filled | filled | cancelled | rejected | expired
    Column("status", String(16), nullable=False),
    Column("reason", Text),                                 # why the strategy sent it / why it ended
    Column("created_ms", BigInteger, nullable=False),       # bar time (replay) or wall time (live)
    Column("updated_ms", BigInteger, nullable=False),
)
Index("ix_orders_run", orders.c.run_id, orders.c.status)

fills = Table(
    "fills", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("client_order_id", String(64), nullable=False),
    Column("trade_id", String(64)),
    Column("symbol", String(32), nullable=False),
    Column("side", String(4), nullable=False),
    Column("price", Float, nullable=False),                 # quote per base unit
    Column("amount", Float, nullable=False),                # base units
    Column("fee", Float, nullable=False),                   # in fee_currency, as charged
    Column("fee_currency", String(16), nullable=False),
    Column("liquidity", String(5), nullable=False),         # maker | taker
    Column("ts_ms", BigInteger, nullable=False),
)
Index("ix_fills_run", fills.c.run_id, fills.c.ts_ms)

positions = Table(
    "positions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), ForeignKey("runs.run_id"), nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("qty", Float, nullable=False),                   # base units after the change
    Column("avg_price", Float, nullable=False),             # quote
    Column("realized_pnl", Float, nullable=False),          # quote, cumulative, net of fees
)
Index("ix_positions_run", positions.c.run_id, positions.c.symbol, positions.c.ts_ms)

equity = Table(
    "equity", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("ts_ms", BigInteger, primary_key=True),
    Column("equity", Float, nullable=False),                # quote, marked at bar close
    Column("cash", Float, nullable=False),                  # quote balance incl. reserved
    Column("exposure", Float, nullable=False),              # quote notional of positions
    Column("benchmark", Float, nullable=False),             # buy-and-hold equity, quote
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64)),
    Column("ts_ms", BigInteger, nullable=False),
    Column("level", String(8), nullable=False),             # info | warning | critical
    Column("kind", String(48), nullable=False),             # e.g. risk.daily_loss, order.rejected
    Column("message", Text, nullable=False),
    Column("data_json", Text),
)
Index("ix_events_run", events.c.run_id, events.c.ts_ms)

heartbeats = Table(
    "heartbeats", metadata,
    Column("bot_id", String(128), primary_key=True),        # host:pid or a configured name
    Column("run_id", String(64)),
    Column("mode", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("ts_ms", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("detail_json", Text),
)

research_items = Table(
    "research_items", metadata,
    Column("source", String(64), primary_key=True),
    Column("guid", String(512), primary_key=True),
    Column("url", Text),
    Column("title", Text, nullable=False),
    Column("published_ms", BigInteger),
    Column("summary", Text),
    Column("coins_json", Text),
    Column("sentiment", Float),
    Column("first_seen_ms", BigInteger, nullable=False),
)

http_cache = Table(
    "http_cache", metadata,
    Column("url", String(1024), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("fetched_ms", BigInteger, nullable=False),
)

backups = Table(
    "backups", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False),
    Column("tag", String(64)),
    Column("created_ms", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("verified_ms", BigInteger),
)

ledger_writes = Table(
    "ledger_writes", metadata,
    Column("writer_id", String(64), primary_key=True),      # a Ledger instance, or "spill:<file id>"
    Column("seq", BigInteger, nullable=False),              # its newest committed batch
    Column("ts_ms", BigInteger, nullable=False),
)
