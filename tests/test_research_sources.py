"""Research sources over real HTTP on 127.0.0.1, serving the saved real feeds and API answers
of ../shared/data: parsing, conditional GET through the ledger, retries, and every fault."""

from __future__ import annotations

import calendar
import email.utils
import json
import re

import feedparser
import pytest

from sigmax_cli.ledger import Ledger
from sigmax_cli.research.base import SourceError
from sigmax_cli.research.coingecko import CoinGeckoSource
from sigmax_cli.research.cryptopanic import CryptoPanicSource
from sigmax_cli.research.feargreed import FearGreedSource, parse_fng
from sigmax_cli.research.http import HttpClient, redact_query
from sigmax_cli.research.rss import RssSource, feed_sources, parse_feed_spec
from sigmax_cli.research.store import ResearchStore
from tests.support.feeds_server import FEEDS, LAST_MODIFIED, Fault, FeedsServer

TIMEOUT_S = 0.3


@pytest.fixture
def feeds_server(data_dir):
    with FeedsServer(data_dir) as server:
        yield server


def client(cache=None, retries: int = 1) -> HttpClient:
    return HttpClient(TIMEOUT_S, retries, cache=cache, backoff_factor_s=0)


def _raw_items(data_dir, name):
    raw = next((data_dir / "news_feeds").glob(f"{name}_*.rss")).read_bytes()
    return raw, re.findall(rb"<item>.*?</item>", raw, flags=re.S)


@pytest.mark.parametrize("name", FEEDS)
def test_each_saved_feed_parses_into_normalised_items(feeds_server, data_dir, name):
    with client() as http:
        fetched = RssSource(name, feeds_server.feed_url(name)).fetch(http)
    raw, raw_items = _raw_items(data_dir, name)
    assert len(fetched.items) == len(raw_items) > 0
    assert len({it.guid for it in fetched.items}) == len(fetched.items)
    first_date = re.search(rb"<pubDate>(.*?)</pubDate>", raw_items[0]).group(1).decode()
    assert fetched.items[0].published_ms == int(email.utils.parsedate_to_datetime(first_date).timestamp()) * 1000
    for it in fetched.items:
        assert it.source == name and it.title and it.url.startswith("https://")
        assert "<" not in it.summary and "&amp;" not in it.summary and len(it.summary) <= 500
    assert fetched.validators and fetched.validators[0][1].startswith('"')
    assert not fetched.notes


def test_conditional_get_remembers_validators_in_the_ledger_and_answers_304(feeds_server, ledger_url):
    url = feeds_server.feed_url("coindesk")
    source = RssSource("coindesk", url)
    with Ledger(ledger_url) as ledger, client(ResearchStore(ledger)) as http:
        first = source.fetch(http)
        assert first.items and not first.not_modified
        again = source.fetch(http)  # validators are remembered only once the caller says so
        assert len(again.items) == len(first.items)
        http.remember(first.validators)
        third = source.fetch(http)
        assert third.not_modified and third.items == []
        etag, last_modified = ResearchStore(ledger).get_validators(url)
    requests_ = feeds_server.requests_to("/feeds/coindesk.rss")
    assert [r.status for r in requests_] == [200, 200, 304]
    assert requests_[-1].if_none_match == etag and requests_[-1].if_modified_since == last_modified == LAST_MODIFIED
    assert requests_[0].if_none_match is None
    assert requests_[0].user_agent.startswith("sigmax/")


def test_a_single_500_is_retried_and_the_feed_still_arrives(feeds_server):
    feeds_server.inject("/feeds/theblock.rss", Fault(status=500), times=1)
    with client(retries=1) as http:
        fetched = RssSource("theblock", feeds_server.feed_url("theblock")).fetch(http)
    assert fetched.items
    assert [r.status for r in feeds_server.requests_to("/feeds/theblock.rss")] == [500, 200]


@pytest.mark.parametrize("fault, expected", [
    (Fault(status=500), r"theblock: http://127\.0\.0\.1:\d+/feeds/theblock\.rss answered HTTP 500 .* after 2 tries"),
    (Fault(status=503), r"answered HTTP 503 .*after 2 tries"),
    (Fault(status=404), r"answered HTTP 404 Not Found; check the URL"),
    (Fault(delay_s=1.5), r"timed out after 0\.3 s \(2 tries\)"),
    (Fault(kind="malformed"), r"is malformed XML \(line \d+:\d+: "),
    (Fault(kind="html"), r"did not answer an RSS or Atom feed \(Content-Type text/html\)"),
    (Fault(kind="drop"), r"cannot connect to .* \(closed without an answer, 2 tries\)"),
])
def test_feed_faults_become_one_sentence_source_errors(feeds_server, fault, expected):
    feeds_server.inject("/feeds/theblock.rss", fault, times=None)
    with client(retries=1) as http, pytest.raises(SourceError) as err:
        RssSource("theblock", feeds_server.feed_url("theblock")).fetch(http)
    sentence = err.value.sentence()
    assert re.search(expected, sentence), sentence
    assert "\n" not in sentence and "Traceback" not in sentence


def test_a_304_to_an_unconditional_get_is_an_error_not_an_empty_feed(feeds_server):
    feeds_server.inject("/feeds/decrypt.rss", Fault(status=304), times=None)
    with client() as http, pytest.raises(SourceError, match="304 Not Modified to an unconditional GET"):
        RssSource("decrypt", feeds_server.feed_url("decrypt")).fetch(http)


def test_wrong_encoding_is_recovered_with_a_note(feeds_server, data_dir):
    raw, _ = _raw_items(data_dir, "cointelegraph")
    truth = [e.title for e in feedparser.parse(raw).entries]
    feeds_server.inject("/feeds/cointelegraph.rss", Fault(kind="wrong_encoding"))
    with client() as http:
        fetched = RssSource("cointelegraph", feeds_server.feed_url("cointelegraph")).fetch(http)
    assert fetched.notes and "windows-1252" in fetched.notes[0]
    assert len(fetched.items) == len(truth)
    representable = [t for t in truth if t.encode("cp1252", errors="replace").decode("cp1252") == t]
    assert any(not t.isascii() for t in representable)  # the case is real: curly quotes survive
    assert [it.title for it in fetched.items if it.title in representable] == representable


def test_fear_greed_parses_both_saved_answers(feeds_server, data_dir):
    year = json.loads(next((data_dir / "sentiment").glob("*limit365*.json")).read_text())["data"]
    one = json.loads(next((data_dir / "sentiment").glob("*limit1_*.json")).read_text())["data"][0]
    with client() as http:
        two_days = FearGreedSource(feeds_server.url).fetch(http).context["fear_greed"]
        latest = FearGreedSource(feeds_server.url, limit=1).fetch(http).context["fear_greed"]
    assert two_days == {"value": int(year[0]["value"]), "classification": year[0]["value_classification"],
                        "timestamp_ms": int(year[0]["timestamp"]) * 1000, "previous": int(year[1]["value"]),
                        "change": int(year[0]["value"]) - int(year[1]["value"])}
    assert latest["value"] == int(one["value"]) and latest["previous"] is None and latest["change"] is None
    assert latest["classification"] == one["value_classification"]


@pytest.mark.parametrize("body, match", [
    ({"name": "x", "data": [], "metadata": {"error": None}}, "holds no index values"),
    ({"data": [{"value": "x"}], "metadata": {"error": None}}, "not numbers"),
    ({"data": [], "metadata": {"error": "Limit exceeded"}}, r"reported an error \(Limit exceeded\)"),
    ({"data": [{"value": "140", "value_classification": "?", "timestamp": "1"}]}, "outside 0..100"),
    ([1, 2], "not a JSON object"),
])
def test_fear_greed_rejects_answers_without_a_usable_value(body, match):
    with pytest.raises(SourceError, match=match):
        parse_fng(body)


@pytest.mark.parametrize("fault, match", [
    (Fault(kind="html"), "answered an HTML page instead of JSON"),
    (Fault(status=502), "answered HTTP 502"),
])
def test_json_apis_answering_html_or_errors_are_source_errors(feeds_server, fault, match):
    feeds_server.inject("/fng/", fault, times=None)
    with client() as http, pytest.raises(SourceError, match=match):
        FearGreedSource(feeds_server.url).fetch(http)


def test_coingecko_summary_matches_the_saved_chart(feeds_server, data_dir):
    chart = json.loads(next((data_dir / "coingecko").glob("*.json")).read_text())
    with client() as http:
        fetched = CoinGeckoSource(f"{feeds_server.url}/api/v3", ["BTC"]).fetch(http)
    btc = fetched.context["market"]["BTC"]
    as_of, last = chart["prices"][-1]
    week_ago = max(p for p in chart["prices"] if p[0] <= as_of - 7 * 86_400_000)
    assert btc["coin_id"] == "bitcoin" and btc["as_of_ms"] == as_of and btc["price"] == last
    assert btc["change_7d_pct"] == pytest.approx((last / week_ago[1] - 1) * 100)
    assert btc["market_cap"] == chart["market_caps"][-1][1] and btc["volume_24h"] == chart["total_volumes"][-1][1]
    assert not fetched.errors and not fetched.notes


def test_coingecko_keeps_what_worked_when_one_coin_fails(feeds_server):
    base = f"{feeds_server.url}/api/v3"
    with client() as http:
        partial = CoinGeckoSource(base, ["BTC", "ETH", "ZZZ"]).fetch(http)
        assert set(partial.context["market"]) == {"BTC"}
        assert "ethereum/market_chart" in partial.errors[0] and "HTTP 404" in partial.errors[0]
        assert partial.notes == ["no CoinGecko id known for ZZZ"]
        with pytest.raises(SourceError, match="HTTP 404"):
            CoinGeckoSource(base, ["ETH"]).fetch(http)


def test_cryptopanic_is_skipped_without_a_key_and_never_shows_it(feeds_server):
    base = f"{feeds_server.url}/cryptopanic"
    assert "SIGMAX_RESEARCH__CRYPTOPANIC_KEY" in CryptoPanicSource(base, None, ["BTC"]).skip_reason()
    good = CryptoPanicSource(base, feeds_server.cryptopanic_key, ["BTC", "ETH"])
    assert good.skip_reason() is None and feeds_server.cryptopanic_key not in repr(good)
    with client() as http:
        items = good.fetch(http).items
        with pytest.raises(SourceError) as err:
            CryptoPanicSource(base, "wrong-secret-token-42", ["BTC"]).fetch(http)
    coindesk = feedparser.parse(feeds_server.feeds["coindesk"]).entries
    assert [it.title for it in items] == [e.title for e in coindesk]
    assert [it.published_ms for it in items] == [calendar.timegm(e.published_parsed) * 1000 for e in coindesk]
    assert all(it.source == "cryptopanic" and it.url.startswith("https://www.coindesk.com/") for it in items)
    assert "HTTP 401" in err.value.sentence() and "/cryptopanic/posts/?***" in err.value.sentence()
    assert "wrong-secret-token-42" not in err.value.sentence()
    assert feeds_server.requests_to("/cryptopanic/posts/")[0].query.startswith("auth_token=")


def test_feed_specs_names_and_bad_feeds():
    assert parse_feed_spec("https://www.coindesk.com/arc/outboundfeeds/rss/") == (
        "coindesk", "https://www.coindesk.com/arc/outboundfeeds/rss/")
    assert parse_feed_spec("Block=https://www.theblock.co/rss.xml") == ("block", "https://www.theblock.co/rss.xml")
    assert parse_feed_spec("http://127.0.0.1:8000/x.rss")[0] == "127.0.0.1"
    from sigmax_cli.errors import ConfigError

    for bad, match in [("ftp://example.org/feed", "not an http"), ("news", "not an http"),
                       ("bad name=https://a.org/f", "not allowed")]:
        with pytest.raises(ConfigError, match=match):
            parse_feed_spec(bad)
    with pytest.raises(ConfigError, match="two feeds are named 'a'"):
        feed_sources(["a=https://a.org/1", "a=https://a.org/2"])
    with pytest.raises(ConfigError, match="listed twice"):
        feed_sources(["a=https://a.org/1", "b=https://a.org/1"])


def test_redact_query_hides_keys_and_credentials():
    assert redact_query("https://u:pw@cryptopanic.com/api/posts/?auth_token=abc&x=1") == \
        "https://cryptopanic.com/api/posts/?***"
    assert redact_query("http://127.0.0.1:81/feeds/a.rss") == "http://127.0.0.1:81/feeds/a.rss"
