"""The ledger owns its SQL (issue 20): no module outside ``sigmax_cli/ledger/`` imports
SQLAlchemy or opens a connection on a ledger's engine; they call the ledger's query methods.

Nor does any module outside it hold a SQL statement, except backup's whole-database work,
which the issue lets stay in backup: the advisory lock that keeps two backups apart
(``backup/lock.py``), ``pg_dump``'s exported snapshot and the scratch database of a test
restore (``backup/postgres.py``), and the integrity check and WAL checkpoint of a SQLite
copy (``backup/sqlite_ledger.py``). Their table lists and row counts go through
:mod:`sigmax_cli.ledger.tables`; the health checks' queries are methods of
:class:`sigmax_cli.ledger.reader.Reader`. The scan reads the source (``ast``), so a lazy
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OWNER = Path("sigmax_cli") / "ledger"
ALLOWED: set[str] = set()  # modules outside the ledger allowed to import SQLAlchemy: none
WHOLE_DATABASE = {"sigmax_cli/backup/lock.py", "sigmax_cli/backup/postgres.py", "sigmax_cli/backup/sqlite_ledger.py"}
"""Modules outside the ledger allowed to hold SQL: backup's whole-database work (see above)."""
SQL = re.compile(r"^\s*(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|DATABASE|INDEX)|"
                 r"DROP (TABLE|DATABASE)|ALTER TABLE|PRAGMA)\b")


def offences(source: str, sql: bool = True) -> list[str]:
    """Lines (``LINE: what``) of ``source`` that import SQLAlchemy, open a connection on an
    ``engine`` attribute (``x.engine.connect()`` / ``x.engine.begin()``) or, with ``sql``,
    hold a string that starts like a SQL statement (upper-case keywords)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if sql and isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            found.append(f"{node.lineno}: {node.value.strip()[:40]!r}")
        elif isinstance(node, ast.Import):
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
    assert len(offences('q = "SELECT max(version) FROM schema_version"\nf"DELETE FROM {t}"\n')) == 2
    assert offences('"""Select the runs; delete it or drop --all."""\n') == []  # prose is not SQL


def test_no_module_outside_the_ledger_speaks_sql():
    bad = []
    for root in ("sigmax_cli", "commands"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel.is_relative_to(OWNER) or str(rel) in ALLOWED:
                continue
            sql = str(rel) not in WHOLE_DATABASE
            bad += [f"{rel}:{hit}" for hit in offences(path.read_text(encoding="utf-8"), sql=sql)]
    assert not bad, "SQL outside sigmax_cli/ledger/ (add a query method to the ledger instead):\n" + "\n".join(bad)
