"""Alerts delivered to real HTTP and SMTP servers on 127.0.0.1, with debounce."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from sigmax_cli.alerts.base import Alert
from sigmax_cli.alerts.dispatcher import AlertDispatcher
from sigmax_cli.alerts.email import EmailChannel
from sigmax_cli.alerts.performance import PerformanceStats, PerformanceWatch
from sigmax_cli.alerts.telegram import TelegramChannel
from sigmax_cli.alerts.webhook import WebhookChannel
from tests.conftest import FREQTRADE_1H
from tests.support.alert_sinks import HttpSink, SmtpSink


class Clock:
    def __init__(self):
        self.t = 1_000.0

    def __call__(self):
        return self.t


def alert(trigger="risk.daily_loss_limit", severity="warning", title="REDUCING: daily loss 2.1% >= 2%"):
    return Alert(trigger, severity, title, "", int(time.time() * 1000))


def test_webhook_telegram_and_email_receive_with_debounce():
    clock = Clock()
    with HttpSink() as http, SmtpSink() as smtp:
        dispatcher = AlertDispatcher([
            WebhookChannel(f"{http.url}/hooks/T000/B000/secret-token"),
            TelegramChannel("123456:bot-token", "-1001", api_url=http.url),
            EmailChannel("127.0.0.1", smtp.port, "bot@example.org", ["ops@example.org"], starttls=False),
        ], debounce_s=300, background=False, clock=clock)
        assert dispatcher.notify(alert())
        assert not dispatcher.notify(alert())  # same trigger within 5 minutes
        assert dispatcher.notify(alert(trigger="risk.max_drawdown", severity="critical", title="drawdown"))
        clock.t += 301
        assert dispatcher.notify(alert())
    paths = [p for p, _ in http.received]
    assert paths.count("/hooks/T000/B000/secret-token") == 3
    assert paths.count("/bot123456:bot-token/sendMessage") == 3
    webhook_texts = [b["text"] for p, b in http.received if p.startswith("/hooks")]
    assert webhook_texts[0] == "[WARNING] REDUCING: daily loss 2.1% >= 2%"
    assert "(1 more since the last alert)" in webhook_texts[2]
    telegram = [b for p, b in http.received if p.endswith("sendMessage")]
    assert telegram[1]["chat_id"] == "-1001" and telegram[1]["text"].startswith("[CRITICAL]")
    assert len(smtp.messages) == 3
    assert smtp.messages[0]["Subject"] == "[sigmax WARNING] REDUCING: daily loss 2.1% >= 2%"
    statuses = [h["status"] for h in dispatcher.drain_history()]
    assert statuses.count("sent") == 9 and statuses.count("debounced") == 1


def test_a_background_dispatcher_delivers_its_queue_on_close_and_later_alerts_inline():
    """A live run's close-out can raise an alert after the engine closed the dispatcher:
    it is delivered at once, not queued for a worker that is gone. Closing twice is harmless."""
    with HttpSink() as http:
        dispatcher = AlertDispatcher([WebhookChannel(f"{http.url}/hook")], debounce_s=300, background=True)
        assert dispatcher.notify(alert(trigger="order.unknown", severity="critical", title="before close"))
        dispatcher.close()
        assert [b["text"] for _, b in http.received] == ["[CRITICAL] before close"]
        assert dispatcher.notify(alert(trigger="reconcile.discrepancy", severity="critical", title="after close"))
        assert [b["text"] for _, b in http.received][-1] == "[CRITICAL] after close"  # inline: already there
        dispatcher.close()
    assert [h["status"] for h in dispatcher.drain_history()] == ["sent", "sent"]


@pytest.mark.parametrize(("level", "kind", "severity"), [
    ("critical", "order.unknown", "critical"), ("critical", "reconcile.discrepancy", "critical"),
    ("critical", "ledger.invariant", "critical"), ("warning", "risk.daily_loss_limit", "warning"),
    ("warning", "order.rejections_repeated", "warning"), ("warning", "risk.denied.max_orders", None),
    ("warning", "reconcile.discrepancy", None), ("warning", "feed.stale", None), ("info", "risk.resumed.x", None)])
def test_which_events_alert(level, kind, severity):
    from sigmax_cli.alerts.events import alert_for

    made = alert_for("run-1", 5, level, kind, "what happened", {"k": 1})
    assert (made.severity if made else None) == severity
    if made is not None:
        assert (made.trigger, made.title, made.ts_ms, made.data) == (kind, "run-1: what happened", 5, {"k": 1})


def test_a_failing_webhook_is_recorded_not_raised_and_never_leaks_its_url():
    with HttpSink() as http:
        http.status = 500
        dispatcher = AlertDispatcher([WebhookChannel(f"{http.url}/hooks/secret-token")], background=False)
        assert dispatcher.notify(alert())
    (entry,) = dispatcher.drain_history()
    assert entry["status"] == "failed" and "HTTP 500" in entry["error"] and "secret-token" not in entry["error"]
    unreachable = AlertDispatcher([WebhookChannel("http://127.0.0.1:9/hooks/secret-token")], background=False)
    unreachable.notify(alert())
    (entry,) = unreachable.drain_history()
    assert entry["status"] == "failed" and "secret-token" not in entry["error"]


def test_below_the_minimum_severity_nothing_is_sent():
    with HttpSink() as http:
        dispatcher = AlertDispatcher([WebhookChannel(http.url)], min_severity="error", background=False)
        assert not dispatcher.notify(alert(severity="warning"))
        assert dispatcher.notify(alert(severity="error"))
    assert len(http.received) == 1


def test_performance_thresholds_fire_once_per_step_and_period():
    watch = PerformanceWatch()
    base = dict(ts_ms=0, week_drawdown_pct=0, total_drawdown_pct=0, losing_streak=0, trades=0, wins=0, day=1, week=1)
    assert watch.check(PerformanceStats(day_drawdown_pct=4.9, **base)) == []
    (a,) = watch.check(PerformanceStats(day_drawdown_pct=5.5, **base))
    assert a.trigger == "perf.daily_drawdown.5" and a.severity == "warning"
    assert watch.check(PerformanceStats(day_drawdown_pct=6.0, **base)) == []
    (b,) = watch.check(PerformanceStats(day_drawdown_pct=21.0, **base))
    assert b.severity == "critical"
    stats = dict(base, losing_streak=10, trades=12, wins=3)
    triggers = {x.trigger for x in watch.check(PerformanceStats(day_drawdown_pct=0, **stats))}
    assert triggers == {"perf.losing_streak", "perf.win_rate"}


CRASH = """
symbols = ["BTC/USDT", "ETH/USDT"]
[strategy]
trend_ema = 2
rsi_entry = 45.0
position_fraction = 0.3
[risk]
max_order_notional = 3000.0
max_position_notional = 5000.0
max_total_notional = 10000.0
max_open_orders = 10
daily_loss_limit_pct = 2.0
max_drawdown_pct = 5.0
[alerts]
debounce_seconds = 300
"""


def test_a_paper_run_alerts_its_risk_trips_and_records_the_deliveries(cli, tmp_path):
    profile = tmp_path / "crash.toml"
    profile.write_text(CRASH)
    with HttpSink() as http:
        result = cli("--profile", profile, "paper", "--data", FREQTRADE_1H, "--timeframe", "1h", "--start",
                     "2021-05-12", "--end", "2021-05-24", "--json",
                     env={"SIGMAX_ALERT_WEBHOOK_URL": f"{http.url}/hooks/abc-secret"})
    assert result.exit_code == 0, result.output
    texts = [body["text"] for _, body in http.received]
    assert any("daily loss" in t for t in texts) and any("drawdown" in t for t in texts)
    with sqlite3.connect(tmp_path / "home" / "ledger.db") as conn:
        sent = conn.execute("select count(*) from events where kind='alert.sent'").fetchone()[0]
    assert sent == len(http.received)


def test_panic_and_release_alert(cli):
    with HttpSink() as http:
        env = {"SIGMAX_ALERT_WEBHOOK_URL": f"{http.url}/hook"}
        report = json.loads(cli("panic", "--reason", "drill", "--json", env=env).stdout)
        assert any(n.startswith("alert webhook: sent") for n in report["notes"])
        cli("panic", "--release", "--reason", "drill over", env=env)
    assert http.received[0][1]["text"].startswith("[CRITICAL] PANIC: kill switch engaged")
    assert http.received[1][1]["text"].startswith("[WARNING] kill switch released")


@pytest.mark.parametrize("value", ["loud", "2x"])
def test_bad_alert_settings_are_config_errors(cli, value):
    result = cli("config", env={"SIGMAX_ALERTS__MIN_SEVERITY": value})
    assert result.exit_code == 2 and "alerts.min_severity" in result.stderr
