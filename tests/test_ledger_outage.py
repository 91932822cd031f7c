"""A ledger outage in the middle of a run (issue 15, scenario 5), with real faults.

A real ``sigmax paper`` process replays real candles (slowed with ``--speed`` so that it is
still trading when the fault comes) into a PostgreSQL database of this test alone, and the
test breaks the database under it:

* its sessions killed with ``pg_terminate_backend`` again and again;
* the database closed (``ALTER DATABASE ... ALLOW_CONNECTIONS false`` and its sessions
  terminated), then opened again: the bot must say HALTED (cause ledger) while it is closed,
  stay alive, resume by itself, and end with exactly the rows of an undisturbed run;
* the database closed for longer than ``ledger.outage_grace_seconds``: exit 69, one line,
  and the run recorded ``failed`` with every row once a bot next opens the ledger.

The reference is the same replay with the same run id into a SQLite ledger, undisturbed: a
paper replay is deterministic, so orders, fills, positions and equity must be equal row for
row, and the events equal apart from the outage's own two.

A full SQLite disk is a real full filesystem: a 64 MiB tmpfs mounted for the test (root
only; skipped, saying so, where mounting is not permitted) holds SIGMAX_HOME, and a filler
file takes its last free bytes while the bot runs, then is deleted. ``RLIMIT_FSIZE`` was not
used because it makes SQLite fail with EFBIG ("disk I/O error"), not the ENOSPC ("database or
disk is full") of a real full disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FREQTRADE_1H, REPO
from tests.support.pg_faults import close_database, open_database, terminate_sessions

RUN_ID = "outage-run-1"
REPLAY = ["paper", "--data", str(FREQTRADE_1H), "--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1h",
          "--max-bars", "2400", "--no-tui", "--run-id", RUN_ID]
STEPS = 1200  # two symbols a step
SPEED = ["--speed", "400000"]  # 1h bars at 400000x: ~110 steps/s at most, so the run lasts >= 11 s
TIMEOUT = 240.0  # seconds; generous, the machine is shared


# ------------------------------------------------------------------------------ helpers
class Bot:
    """A ``sigmax paper`` subprocess whose stdout lines are collected as they come."""

    def __init__(self, home: Path, env: dict[str, str], extra: list[str] = ()) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SIGMAX_") or k.startswith("SIGMAX_TEST")}
        full_env.update({"SIGMAX_HOME": str(home), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **env})
        self.proc = subprocess.Popen([sys.executable, "-m", "commands.app", *REPLAY, *extra], cwd=REPO,
                                     env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def wait_for_line(self, text: str, timeout: float = TIMEOUT) -> str:
        """The first stdout line containing ``text``; fails if the bot ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if not self._reader.is_alive():
                    pytest.fail(f"the bot ended (exit {self.proc.poll()}) before printing {text!r}:\n"
                                + "\n".join(self.lines[-20:]) + "\n" + (self.proc.stderr.read() or ""))
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no line with {text!r} after {timeout:g} s:\n" + "\n".join(self.lines[-20:]))
                self._new.wait(min(left, 1.0))

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Exit code and stderr, once the bot ends by itself."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("the bot did not end:\n" + "\n".join(self.lines[-20:]))
        self._reader.join(timeout=10)
        return rc, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


def _equity_rows(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM equity WHERE run_id = %s", (RUN_ID,)).fetchone()[0]
    except psycopg.Error:
        return 0  # schema not created yet


def _wait_until(predicate, what: str, timeout: float = TIMEOUT, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


LEDGER_EVENTS = ("risk.ledger", "risk.resumed.ledger")


def _content(url: str) -> dict[str, list]:
    """Everything the run wrote, without autoincrement ids; events as (level, kind, message)
    apart from the outage's own, which are returned under ``outage``."""
    from sigmax_cli.ledger import Ledger

    with Ledger(url, create=False) as ledger:
        out = {
            "orders": ledger.rows("orders", RUN_ID, ["created_ms", "client_order_id"]),
            "fills": [{k: v for k, v in r.items() if k != "id"} for r in ledger.rows("fills", RUN_ID, ["id"])],
            "positions": [{k: v for k, v in r.items() if k != "id"}
                          for r in ledger.rows("positions", RUN_ID, ["id"])],
            "equity": ledger.rows("equity", RUN_ID, ["ts_ms"]),
        }
        events = ledger.rows("events", RUN_ID, ["id"])
        out["events"] = [(e["level"], e["kind"], e["message"]) for e in events if e["kind"] not in LEDGER_EVENTS]
        out["outage"] = [e["kind"] for e in events if e["kind"] in LEDGER_EVENTS]
        out["run"] = ledger.get_run(RUN_ID)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, list]:
    """The same replay, undisturbed, into a SQLite ledger."""
    home = tmp_path_factory.mktemp("reference")
    bot = Bot(home, {})
    rc, err = bot.finish()
    assert rc == 0, err
    content = _content(f"sqlite:///{home / 'ledger.db'}")
    assert content["run"].status == "completed"
    assert len(content["equity"]) == STEPS and len(content["fills"]) >= 4  # a run that trades
    return content


def _assert_same_rows(got: dict[str, list], want: dict[str, list]) -> None:
    for table in ("orders", "fills", "positions", "equity", "events"):
        assert len(got[table]) == len(want[table]), table
        assert got[table] == want[table], table


# ------------------------------------------------------------------------------ tests
def test_sessions_terminated_again_and_again_lose_no_row(tmp_path, pg_db, reference):
    url, name = pg_db
    bot = Bot(tmp_path / "home", {"SIGMAX_DATABASE_URL": url}, SPEED)
    try:
        for n in range(1, 6):  # five rounds of killing every session of the run's database
            _wait_until(lambda n=n: _equity_rows(url) >= 150 * n, f"{150 * n} equity rows")
            assert terminate_sessions(name) >= 1
        rc, err = bot.finish()
    finally:
        bot.kill()
    assert rc == 0, err
    got = _content(url)
    assert got["run"].status == "completed"
    _assert_same_rows(got, reference)


def test_a_closed_database_halts_the_bot_which_resumes_by_itself_without_losing_a_row(tmp_path, pg_db, reference):
    url, name = pg_db
    bot = Bot(tmp_path / "home", {"SIGMAX_DATABASE_URL": url, "SIGMAX_LEDGER__OUTAGE_GRACE_SECONDS": "600"}, SPEED)
    try:
        _wait_until(lambda: _equity_rows(url) >= 100, "100 equity rows")
        close_database(name)
        halted = bot.wait_for_line("risk.ledger: HALTED: ledger unavailable")
        assert "CRITICAL" in halted and "rows kept in memory" in halted
        time.sleep(3.0)  # keep it closed for a while (no assertion on time: only on what follows)
        assert bot.proc.poll() is None  # still alive, waiting for its ledger
        assert not any("risk.resumed.ledger" in line for line in bot.lines)  # still halted
        open_database(name)
        resumed = bot.wait_for_line("risk.resumed.ledger")
        assert "ACTIVE: the ledger is reachable again" in resumed
        rc, err = bot.finish()
    finally:
        bot.kill()
    assert rc == 0, err
    got = _content(url)
    assert got["run"].status == "completed"
    assert got["outage"] == ["risk.ledger", "risk.resumed.ledger"]
    trips = [t["rule"] for t in got["run"].summary["risk_trips"]]
    assert trips.count("ledger") == 1
    assert [t for t in trips if t != "ledger"] == [t["rule"] for t in reference["run"].summary["risk_trips"]]
    _assert_same_rows(got, reference)


def test_an_outage_past_the_grace_exits_69_and_the_run_is_recorded_failed_with_every_row(tmp_path, pg_db):
    url, name = pg_db
    home = tmp_path / "home"
    env = {"SIGMAX_DATABASE_URL": url, "SIGMAX_LEDGER__OUTAGE_GRACE_SECONDS": "3"}
    bot = Bot(home, env, SPEED)
    try:
        _wait_until(lambda: _equity_rows(url) >= 100, "100 equity rows")
        close_database(name)
        bot.wait_for_line("risk.ledger: HALTED")
        rc, err = bot.finish()
    finally:
        bot.kill()
    assert rc == 69
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the ledger at postgresql://"), err
    assert "longer than ledger.outage_grace_seconds" in lines[0] and "ledger-spill" in lines[0]
    spilled = list((home / "ledger-spill").glob("*.json"))
    assert len(spilled) == 1

    open_database(name)
    from sigmax_cli.ledger import Ledger

    with Ledger(url, create=False) as ledger:  # what the database holds before any bot comes back
        assert ledger.get_run(RUN_ID).status == "running"
    nxt = Bot(home, {"SIGMAX_DATABASE_URL": url}, ["--run-id", "next-run", "--max-bars", "10"])
    rc, err = nxt.finish()
    assert rc == 0, err
    assert not list((home / "ledger-spill").glob("*.json"))
    got = _content(url)
    run = got["run"]
    assert run.status == "failed" and "the ledger was unavailable" in run.summary["error"]
    assert len(got["equity"]) == run.summary["steps"] > 0  # every bar it replayed, none lost
    assert got["outage"] == ["risk.ledger"]
    import psycopg

    with psycopg.connect(url) as conn:  # its heartbeat no longer looks like a live bot's
        beats = conn.execute("SELECT status FROM heartbeats WHERE run_id = %s", (RUN_ID,)).fetchall()
    assert beats == [("stopped",)]


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to fill a disk for real ({done.stderr.strip()}); needs root")


def _fill(path: Path) -> None:
    """Take every free byte of the filesystem holding ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError:  # ENOSPC: this size no longer fits, try a smaller one
                pass
    finally:
        os.close(fd)


def test_a_full_sqlite_disk_halts_the_bot_which_resumes_when_space_is_freed(tmp_path, reference):
    if os.geteuid() != 0:
        pytest.skip("filling a disk for real needs a tmpfs mount, which needs root")
    mnt = tmp_path / "small-disk"
    _mount_tmpfs(mnt, "64m")
    try:
        home = mnt / "home"
        url = f"sqlite:///{home / 'ledger.db'}"
        bot = Bot(home, {"SIGMAX_LEDGER__OUTAGE_GRACE_SECONDS": "600"}, SPEED)
        try:
            from sqlalchemy import create_engine, text

            def equity_rows() -> int:
                if not (home / "ledger.db").exists():
                    return 0
                engine = create_engine(url)
                try:
                    with engine.connect() as conn:
                        return conn.execute(text("SELECT count(*) FROM equity")).scalar_one()
                except Exception:  # noqa: BLE001 - not created yet
                    return 0
                finally:
                    engine.dispose()

            _wait_until(lambda: equity_rows() >= 100, "100 equity rows", every=0.2)
            filler = mnt / "filler"
            _fill(filler)
            halted = bot.wait_for_line("risk.ledger: HALTED: ledger unavailable")
            assert "database or disk is full" in halted
            assert bot.proc.poll() is None
            filler.unlink()
            bot.wait_for_line("risk.resumed.ledger")
            rc, err = bot.finish()
        finally:
            bot.kill()
        assert rc == 0, err
        got = _content(url)
        assert got["run"].status == "completed"
        assert got["outage"] == ["risk.ledger", "risk.resumed.ledger"]
        _assert_same_rows(got, reference)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_bot_stopped_during_an_outage_saves_its_rows_and_says_where(tmp_path, pg_db):
    import signal

    url, name = pg_db
    home = tmp_path / "home"
    bot = Bot(home, {"SIGMAX_DATABASE_URL": url, "SIGMAX_LEDGER__OUTAGE_GRACE_SECONDS": "600"}, SPEED)
    try:
        _wait_until(lambda: _equity_rows(url) >= 100, "100 equity rows")
        close_database(name)
        bot.wait_for_line("risk.ledger: HALTED")
        bot.proc.send_signal(signal.SIGTERM)  # the operator stops it; it must not wait out the 600 s
        rc, err = bot.finish()
    finally:
        bot.kill()
    assert rc == 69
    (line,) = err.strip().splitlines()
    assert "when the run was stopped" in line and "ledger-spill" in line and "(interrupted)" in line
    open_database(name)
    from sigmax_cli.ledger import Ledger

    with Ledger(url, spill_dir=home / "ledger-spill") as ledger:  # what the next bot does on start
        run = ledger.get_run(RUN_ID)
        assert run.status == "interrupted"
        assert ledger.count("equity", RUN_ID) == run.summary["steps"] > 0
