"""``sigmax research`` through the real root app against the loopback feeds server: the JSON
document, de-duplication across runs, watch mode, plain and rich output, every exit code,
and bad input (one sentence on stderr, non-zero exit, nothing written)."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.feeds_server import FEEDS, Fault, FeedsServer

ITEM_KEYS = {"source", "title", "url", "published", "published_ms", "coins", "sentiment", "label", "new"}


@pytest.fixture
def server(data_dir):
    with FeedsServer(data_dir) as srv:
        yield srv


def env_for(srv: FeedsServer, **extra: str) -> dict[str, str]:
    return {**srv.env(), "SIGMAX_RESEARCH__MARKET_COINS": "BTC", "SIGMAX_RESEARCH__LOOKBACK_HOURS": "1000000",
            "SIGMAX_RESEARCH__HTTP_TIMEOUT_SECONDS": "0.5", "SIGMAX_RESEARCH__HTTP_RETRIES": "1", **extra}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_json_document_then_a_second_run_with_zero_new(cli, server, ledger_url, data_dir):
    env = env_for(server, SIGMAX_DATABASE_URL=ledger_url)
    first = cli("research", "--json", env=env)
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    total = sum(p.read_bytes().count(b"<item>") for p in (data_dir / "news_feeds").glob("*.rss"))
    assert doc["new_count"] == len(doc["items"]) == total and doc["exit_code"] == 0
    assert all(set(it) == ITEM_KEYS and it["new"] and -1 <= it["sentiment"] <= 1 for it in doc["items"])
    published = [it["published_ms"] for it in doc["items"]]
    assert published == sorted(published, reverse=True)
    assert {s["name"]: s["status"] for s in doc["sources"]} == {
        **{f: "ok" for f in FEEDS}, "feargreed": "ok", "coingecko": "ok", "cryptopanic": "skipped"}
    aggs = doc["aggregates"]
    assert set(aggs) == {"overall", "coins", "fear_greed", "window"} and list(aggs["coins"]) == ["BTC", "ETH", "SOL",
                                                                                                  "XRP"]
    assert aggs["overall"]["count"] == total
    assert aggs["coins"]["BTC"]["count"] == sum("BTC" in it["coins"] for it in doc["items"]) > 0
    fng = json.loads(next((data_dir / "sentiment").glob("*limit365*.json")).read_text())["data"][0]
    assert aggs["fear_greed"]["value"] == int(fng["value"])
    assert aggs["fear_greed"]["classification"] == fng["value_classification"]
    assert doc["market"]["BTC"]["coin_id"] == "bitcoin" and doc["published"] is None
    second = cli("research", "--json", env=env)
    assert second.exit_code == 0
    again = json.loads(second.stdout)
    assert again["new_count"] == 0 and again["items"] == []
    assert again["aggregates"]["overall"]["count"] == total


def test_some_source_failing_exits_1_and_still_reports_the_rest(cli, server):
    server.inject("/feeds/theblock.rss", Fault(status=500), times=None)
    result = cli("research", "--json", env=env_for(server))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    status = {s["name"]: s for s in doc["sources"]}
    assert status["theblock"]["status"] == "degraded" and "HTTP 500" in status["theblock"]["detail"]
    assert status["coindesk"]["status"] == "ok" and doc["exit_code"] == 1
    assert {it["source"] for it in doc["items"]} == {"coindesk", "cointelegraph", "decrypt"}
    assert result.stderr.startswith("warning: theblock: http://127.0.0.1:") and result.stderr.count("\n") == 1


def test_every_source_failing_exits_69(cli):
    dead = f"http://127.0.0.1:{_closed_port()}"
    env = {"SIGMAX_RESEARCH__FEEDS": f"a={dead}/a.rss,b={dead}/b.rss", "SIGMAX_RESEARCH__FEARGREED_URL": dead,
           "SIGMAX_RESEARCH__SOURCES": "rss,feargreed,cryptopanic", "SIGMAX_RESEARCH__HTTP_RETRIES": "0"}
    result = cli("research", env=env)
    assert result.exit_code == 69
    lines = result.stderr.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["warning", "warning", "warning", "error"]
    assert lines[-1] == "error: every research source failed this run; see the warnings above; check the network."
    assert "connection refused" in lines[0]


def test_watch_prints_one_json_document_per_run(cli, server):
    result = cli("research", "--watch", "--interval", "0.05", "--runs", "3", "--json", "--sources", "rss",
                 env=env_for(server))
    assert result.exit_code == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["run"] for d in docs] == [1, 2, 3]
    assert docs[0]["new_count"] > 0 and docs[1]["new_count"] == docs[2]["new_count"] == 0
    assert {s["status"] for s in docs[2]["sources"]} == {"not_modified"}


def test_plain_lines_when_not_a_terminal(cli, server):
    result = cli("research", "--sources", "rss,feargreed", "--feeds", server.feed_specs(("theblock",)),
                 "--symbols", "sol,eth", env=env_for(server))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("research run 1 at ") and lines[0].endswith("19 items, 19 new, exit 0")
    assert lines[1] == "source theblock (rss): ok, 19 items, 19 new"
    assert lines[3].startswith("fear & greed: ")
    assert [ln.split(":")[0] for ln in lines[4:7]] == ["sentiment overall", "sentiment SOL", "sentiment ETH"]
    assert sum(ln.startswith("new [theblock] ") for ln in lines) == 19


def test_rich_view_renders_every_panel(server, tmp_path):
    from rich.console import Console

    from sigmax_cli.research.engine import ResearchOptions, research
    from sigmax_cli.research.formats import render
    from sigmax_cli.settings import load_settings

    settings = load_settings(overrides={"research": {"feeds": server.feed_specs(("coindesk",)),
                                                     "feargreed_url": server.url, "market_coins": ["BTC"],
                                                     "coingecko_url": f"{server.url}/api/v3",
                                                     "lookback_hours": 1e6}})
    result = research(settings, ResearchOptions())
    console = Console(record=True, width=160, no_color=True)
    console.print(render(result, footer="next run in 300 s"))
    text = console.export_text()
    for needle in ("sources", "coindesk", "cryptopanic", "skipped", "fear & greed: 47 Neutral", "market (CoinGecko",
                   "newest items (15 of 25; * new)", "next run in 300 s"):
        assert needle in text, needle


def test_cryptopanic_with_a_key_and_the_key_never_shown(cli, server):
    env = env_for(server, SIGMAX_RESEARCH__CRYPTOPANIC_KEY=server.cryptopanic_key)
    ok = cli("research", "--sources", "cryptopanic", "--json", env=env)
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["sources"] == [{"name": "cryptopanic", "kind": "cryptopanic", "status": "ok", "items": 25, "new": 25,
                               "detail": "", "elapsed_s": doc["sources"][0]["elapsed_s"]}]
    wrong = cli("-v", "research", "--sources", "cryptopanic",
                env={**env, "SIGMAX_RESEARCH__CRYPTOPANIC_KEY": "sekrit-token-0987"})
    assert wrong.exit_code == 69 and "HTTP 401" in wrong.stderr
    shown = cli("config", "--json", env={**env, "SIGMAX_RESEARCH__CRYPTOPANIC_KEY": "sekrit-token-0987"})
    assert json.loads(shown.stdout)["research"]["cryptopanic_key"] == "***"
    for out in (wrong.stdout, wrong.stderr, shown.stdout, shown.stderr, ok.stdout):
        assert "sekrit-token-0987" not in out and server.cryptopanic_key not in out


@pytest.mark.parametrize("args, env, message", [
    (["--sources", "rss,twitter"], {},
     "error: unknown research source 'twitter'; choose from rss, feargreed, coingecko, cryptopanic.\n"),
    (["--feeds", "ftp://example.org/feed"], {},
     "error: feed 'ftp://example.org/feed' is not an http(s) URL; give feeds as URL or NAME=URL, e.g. --feeds "
     "coindesk=https://www.coindesk.com/arc/outboundfeeds/rss/.\n"),
    (["--sources", "cryptopanic"], {},
     "error: no selected research source can run (no CryptoPanic key: set SIGMAX_RESEARCH__CRYPTOPANIC_KEY to "
     "include it); select other --sources.\n"),
    (["--interval", "5"], {}, "error: --interval and --runs only apply with --watch; add --watch or drop them.\n"),
    (["--watch", "--interval", "0"], {},
     "error: --interval 0 must be more than 0 seconds; give the seconds between runs, e.g. --interval 300.\n"),
    (["--publish"], {}, "error: --publish needs Redis; set SIGMAX_REDIS_URL=redis://HOST:6379/0 or drop --publish.\n"),
    (["--symbols", "B$C"], {},
     "error: research symbols: 'B$C' is not a coin ticker such as BTC; give tickers such as --symbols BTC,ETH.\n"),
    ([], {"SIGMAX_RESEARCH__HTTP_TIMEOUT_SECONDS": "-1"},
     "error: setting 'research.http_timeout_seconds' is invalid: Input should be greater than 0; fix it in the "
     "profile (conservative), the env file, SIGMAX_* or the option.\n"),
])
def test_bad_input_is_one_sentence_exit_2_and_nothing_written(cli, tmp_path, args, env, message):
    result = cli("research", *args, env=env)
    assert result.exit_code == 2
    assert result.stderr == message and result.stdout == ""
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())


def test_runs_must_be_positive(cli):
    result = cli("research", "--watch", "--runs", "0")
    assert result.exit_code == 2 and "--runs" in result.stderr
