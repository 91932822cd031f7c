"""The ledger: one SQL schema on SQLite (default) and PostgreSQL.

``Ledger``, ``RunInfo``, ``make_engine`` and ``now_ms`` are loaded on first use, so that
light readers (``sigmax health``) can import ``sigmax_cli.ledger.version`` without paying
for SQLAlchemy.
"""

from typing import Any

__all__ = ["Ledger", "RunInfo", "make_engine", "now_ms"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from sigmax_cli.ledger import store

        return getattr(store, name)
    raise AttributeError(f"module 'sigmax_cli.ledger' has no attribute {name!r}")
