"""The ledger: one SQL schema on SQLite (default) and PostgreSQL."""

from sigmax_cli.ledger.store import Ledger, RunInfo, make_engine, now_ms

__all__ = ["Ledger", "RunInfo", "make_engine", "now_ms"]
