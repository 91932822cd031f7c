"""A bot killed with SIGKILL at the worst moment (the exchange has taken its order, the
answer has not come back) and restarted neither loses nor duplicates an order: checked on
the emulator's account and in the ledger. Both bots are real `sigmax run` processes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter

from tests.support.binance_orders import AcceleratedClock, spot_exchange
from tests.test_run_cli import btc, keys_file, profile  # noqa: F401  (btc is a fixture)

STATUS = {"NEW": "open", "PARTIALLY_FILLED": "partially_filled", "FILLED": "filled", "CANCELED": "cancelled",
          "EXPIRED": "expired"}


def start_bot(tmp_path, emu, ticks):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SIGMAX_")},
           "SIGMAX_HOME": str(tmp_path / "home"), "SIGMAX_EXCHANGE_API_URL": emu.url}
    return subprocess.Popen([sys.executable, "-m", "commands.app", "--profile", str(profile(tmp_path)), "run",
                             "--max-ticks", str(ticks), "--no-tui", "--json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_while_an_order_is_in_flight_then_restart(data_dir, btc, tmp_path):  # noqa: F811
    clock = AcceleratedClock(int(btc.ts[3000]) + 1000, 3000)
    emu, account = spot_exchange(data_dir, [btc], clock=clock.now_ms)
    (tmp_path / "home").mkdir()
    keys_file(tmp_path / "home")  # found in SIGMAX_HOME
    taken, release = threading.Event(), threading.Event()
    held: dict[str, str] = {}

    def hold(order):  # the exchange has created the order; its answer waits here
        if not held:
            held["cid"] = order["clientOrderId"]
            account.after_accept.append("drop")  # and then never comes
            taken.set()
            release.wait(30)

    account.on_accept = hold
    first = start_bot(tmp_path, emu, 400)
    try:
        assert taken.wait(60), first.stderr.read() if first.poll() is not None else "no order in 60 s"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
        release.set()
    assert first.returncode == -signal.SIGKILL
    account.on_accept = None
    cid = held["cid"]
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        (status,) = conn.execute("select status from orders where client_order_id = ?", (cid,)).fetchone()
    assert status == "new"  # written before it was sent; the killed bot never learnt more

    second = start_bot(tmp_path, emu, 25)
    out, err = second.communicate(timeout=90)
    emu.stop()
    assert second.returncode == 0, err
    summary = json.loads(out)
    start = summary["reconciliation"]["start"]
    assert len(start["failed_runs"]) == 1 and start["resolved"] == {cid: "filled"}

    # nothing duplicated: one exchange order per client order id, the held one sent once
    per_id = Counter(o["clientOrderId"] for o in account.orders.values())
    assert max(per_id.values()) == 1
    assert sum(1 for r in emu.log if r.method == "POST" and r.params.get("newClientOrderId") == cid) <= 1
    # nothing lost: the ledger holds every exchange order and every trade, once
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        orders = {c: (s, f) for c, s, f in conn.execute("select client_order_id, status, filled from orders")}
        trades = Counter(t for (t,) in conn.execute("select trade_id from fills"))
        runs = dict(conn.execute("select run_id, status from runs").fetchall())
        kinds = [k for (k,) in conn.execute("select kind from events")]
    for o in account.orders.values():
        assert orders[o["clientOrderId"]] == (STATUS[o["status"]], o["executed"])
    assert trades == Counter(str(t["id"]) for t in account.trades)
    assert sorted(runs.values()) == ["completed", "lost"]  # the SIGKILLed run: lost, its orders resumed
    assert "reconcile.resolved" in kinds and "reconcile.dead_run" in kinds
    assert "reconcile.discrepancy" not in kinds and start["discrepancies"] == []  # ledger and exchange agree
