"""The ledger owns its SQL (issue 20): no module outside ``sigmax_cli/ledger/`` imports
SQLAlchemy or opens a connection on a ledger's engine; they call the ledger's query methods.

Backups dump and restore whole databases with ``pg_dump`` / the SQLite file and count
tables through :mod:`sigmax_cli.ledger.tables` (DB-API, no SQLAlchemy), so no module needs
an exception here. The scan reads the source (``ast``), so a lazy import inside a function
counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWNER = Path("sigmax_cli") / "ledger"
ALLOWED: set[str] = set()  # modules outside the ledger allowed to import SQLAlchemy: none


def offences(source: str) -> list[str]:
    """Lines (``LINE: what``) of ``source`` that import SQLAlchemy or open a connection on
    an ``engine`` attribute (``x.engine.connect()`` / ``x.engine.begin()``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy" \
                and not node.level:
            found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in ("connect", "begin") \
                and isinstance(node.value, ast.Attribute) and node.value.attr == "engine":
            found.append(f"{node.lineno}: .engine.{node.attr}()")
    return found


def test_the_scan_finds_each_kind_of_offence():
    source = ("import sqlalchemy\nfrom sqlalchemy.exc import DBAPIError\n"
              "def f(ledger):\n    from sqlalchemy import select\n    with ledger.engine.begin() as c:\n"
              "        pass\n    ledger.engine.connect()\n")
    assert sorted(int(line.split(":")[0]) for line in offences(source)) == [1, 2, 4, 5, 7]
    assert offences("from sigmax_cli.ledger import Ledger\nledger.heartbeats()\n") == []


def test_no_module_outside_the_ledger_speaks_sql():
    bad = []
    for root in ("sigmax_cli", "commands"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel.is_relative_to(OWNER) or str(rel) in ALLOWED:
                continue
            bad += [f"{rel}:{hit}" for hit in offences(path.read_text(encoding="utf-8"))]
    assert not bad, "SQL outside sigmax_cli/ledger/ (add a query method to the ledger instead):\n" + "\n".join(bad)
