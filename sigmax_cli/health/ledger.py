"""Ledger database: it opens, a write reads back in time, and its schema is the one we write.

Measurements:

``ledger:latency`` (ms)
    One write-read round trip: insert a probe row into ``events``, select it back, roll the
    transaction back (nothing is left behind). Graded by ``health.ledger_latency_ms``.
    The ledger cannot be opened (no file, refused, unreachable): CRITICAL.
``ledger:schema`` (version number)
    OK when it is this sigmax's version; WARNING when older (a bot upgrades it when it next
    opens the ledger) or empty (a bot creates the tables); CRITICAL when newer than this
    sigmax, which would refuse to open it.
"""

from __future__ import annotations

import time
import uuid

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health import db
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status


class LedgerCheck(Check):
    """Connect, write-read round trip, schema version (see the module docstring)."""

    name = "ledger"
    primary = "latency"
    description = "ledger database: connect, write-read round trip latency, schema version"

    def run(self, ctx: CheckContext) -> list[Outcome]:
        url = ctx.settings.ledger_url
        try:
            with db.Reader(url, ctx.left_s()) as reader:
                version = db.schema_version(reader.conn)
                out: list[Outcome] = [self._schema(version, ctx)]
                if version == 0:
                    out.insert(0, self.skip("latency", "the ledger has no tables to write a probe to yet"))
                    return out
                out.insert(0, self._round_trip(reader, ctx))
                return out
        except SigmaxError as exc:
            return [self.result("latency", Status.CRITICAL, exc.sentence().rstrip("."), ctx)]

    def _round_trip(self, reader: db.Reader, ctx: CheckContext) -> Outcome:
        token = f"sigmax health probe {uuid.uuid4().hex}"
        started = time.perf_counter()
        reader.query("INSERT INTO events (run_id, ts_ms, level, kind, message) VALUES (NULL, ?, 'info', "
                     "'health.probe', ?)", (ctx.clock(), token))
        back = reader.query("SELECT message FROM events WHERE kind = 'health.probe' AND message = ?", (token,))
        reader.conn.rollback()
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if not back or back[0][0] != token:
            return self.result("latency", Status.CRITICAL, "a probe row written to the ledger did not read back",
                               ctx, value=elapsed_ms, unit="ms")
        return self.graded("latency", elapsed_ms, "ms", Limits.of(ctx.health.ledger_latency_ms),
                           f"write-read round trip {elapsed_ms:g} ms ({db.backend(reader.url)})", ctx)

    def _schema(self, version: int, ctx: CheckContext) -> Outcome:
        expected = db.LEDGER_SCHEMA_VERSION
        if version == expected:
            status, message = Status.OK, f"schema version {version}"
        elif version == 0:
            status, message = Status.WARNING, "the ledger has no tables yet; a bot creates them when it starts"
        elif version < expected:
            status, message = Status.WARNING, (f"schema version {version} is older than this sigmax's "
                                               f"{expected}; a bot upgrades it when it next opens the ledger")
        else:
            status, message = Status.CRITICAL, (f"schema version {version} is newer than this sigmax's "
                                                f"{expected}; upgrade sigmax on this host")
        return self.result("schema", status, message, ctx, value=version)
