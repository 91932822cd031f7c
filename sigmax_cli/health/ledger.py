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
``ledger:spill`` (count of files)
    Rows a bot could not write before it gave up on a ledger outage wait in
    ``$SIGMAX_HOME/ledger-spill/`` (:meth:`sigmax_cli.ledger.store.Ledger.spill`) until a bot
    that opens the same ledger with the same ``SIGMAX_HOME`` (``sigmax paper`` or
    ``sigmax run``; ``report``, ``monitor`` and ``health`` only read) writes them in. OK with
    none; WARNING with the count, the oldest file's age and that fix (the ledger lacks those
    rows until then, and each file's run may still show ``running``); files of another
    ledger and unreadable files are counted and named apart (no bot on this ledger takes
    them). A directory that cannot be listed is UNKNOWN. Measured even when the ledger
    cannot be opened: that is when spill files appear.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from sigmax_cli.errors import SigmaxError
from sigmax_cli.health.base import Check, CheckContext, Limits, Outcome, Status
from sigmax_cli.ledger import reader as db


class LedgerCheck(Check):
    """Connect, write-read round trip, schema version (see the module docstring)."""

    name = "ledger"
    primary = "latency"
    description = ("ledger database: connect, write-read round trip latency, schema version, rows spilled in an "
                   "outage that wait to be written in")

    def run(self, ctx: CheckContext) -> list[Outcome]:
        return [*self._database(ctx), self._spills(ctx)]

    def _database(self, ctx: CheckContext) -> list[Outcome]:
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

    def _spills(self, ctx: CheckContext) -> Outcome:
        """``ledger:spill``: the spill files waiting in ``$SIGMAX_HOME/ledger-spill/``."""
        folder = spill_folder(ctx.settings.home)
        try:
            files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        except OSError as exc:
            return self.result("spill", Status.UNKNOWN, f"cannot list {folder} ({exc.strerror or exc}); spilled "
                               "ledger rows may be waiting there", ctx)
        if not files:
            return self.result("spill", Status.OK, "no spilled ledger rows wait to be written in", ctx, value=0)
        from sigmax_cli.ledger.store import ledger_fingerprint  # SQLAlchemy: only when there are files

        mine_id = ledger_fingerprint(ctx.settings.ledger_url)
        mine: list[int] = []  # written_ms of each file of this ledger
        other: list[int] = []
        damaged: list[str] = []
        for path in files:
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                written = int(doc.get("written_ms") or path.stat().st_mtime * 1000)
                (mine if doc.get("ledger") == mine_id else other).append(written)
            except (OSError, ValueError, TypeError, AttributeError):
                damaged.append(path.name)
        now = ctx.clock()
        parts = []
        if mine:
            age_h = max(0.0, (now - min(mine)) / 3_600_000)
            parts.append(f"{len(mine)} file(s) of ledger rows spilled in an outage wait in {folder} (oldest "
                         f"{age_h:.1f} h) and are missing from the ledger; start a bot on this ledger with this "
                         "SIGMAX_HOME (`sigmax paper` or `sigmax run`): it writes them in when it opens the ledger")
        if other:
            age_h = max(0.0, (now - min(other)) / 3_600_000)
            parts.append(f"{len(other)} file(s) there (oldest {age_h:.1f} h) belong to another ledger: a bot started "
                         "with that ledger's SIGMAX_DATABASE_URL and this SIGMAX_HOME writes them in")
        if damaged:
            parts.append(f"{len(damaged)} file(s) cannot be read ({', '.join(damaged[:3])}"
                         f"{', ...' if len(damaged) > 3 else ''}): no bot will write them in; inspect them, then "
                         "move them out of the folder")
        return self.result("spill", Status.WARNING, "; ".join(parts), ctx, value=len(files))

    def _round_trip(self, reader: db.Reader, ctx: CheckContext) -> Outcome:
        token = f"sigmax health probe {uuid.uuid4().hex}"
        started = time.perf_counter()
        read_back = reader.probe(ctx.clock(), token)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if not read_back:
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


def spill_folder(home: Path) -> Path:
    """``$SIGMAX_HOME/ledger-spill``, where bots spill (``sigmax_cli.paper.spill_dir``, which
    cannot be imported here without the engine; the health test spills through it)."""
    return Path(home) / "ledger-spill"
