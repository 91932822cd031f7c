"""Coin detection (word-boundary aware) and sentiment, checked on a hand-labelled set of the
real saved headlines in ../shared/data/news_feeds (referenced by feed and guid; the text stays
there). The accuracy is printed (run with ``-s`` to see it)."""

from __future__ import annotations

import feedparser
import pytest

from sigmax_cli.research.coins import COIN_NAMES, COINGECKO_IDS, CoinDetector
from sigmax_cli.research.rss import entry_to_item
from sigmax_cli.research.sentiment import CRYPTO_LEXICON, label, score

# Labelled by hand from the headline alone, as a trader reading it would take it for the
# market (bullish / bearish / neutral), without looking at any score.
LABELLED: dict[tuple[str, str], str] = {  # (feed, a fragment of the item's guid): label
    # bullish
    ("coindesk", "dab608c4"): "bullish",
    ("coindesk", "66531607"): "bullish",
    ("coindesk", "2bac9c08"): "bullish",
    ("cointelegraph", "bitgo-circle-fidelity-bitgo-ripple-occ-approval-bank-conversion"): "bullish",
    ("cointelegraph", "ethereum-price-rallied-260-percent-last-time-eth-5k"): "bullish",
    ("cointelegraph", "crypto-markets-bounce-fed-rate-cut-analysts-predict-bigger-rally-ahead"): "bullish",
    ("cointelegraph", "sec-clears-dtcc-to-offer-tokenization-service"): "bullish",
    ("decrypt", "352184"): "bullish",
    ("decrypt", "352080"): "bullish",
    ("decrypt", "ImN1EVr6"): "bullish",
    ("decrypt", "kLKB13oZ"): "bullish",
    ("theblock", "382379"): "bullish",
    ("theblock", "382357"): "bullish",
    # bearish
    ("coindesk", "06fc3a87"): "bearish",
    ("coindesk", "ccb8e557"): "bearish",
    ("coindesk", "868a1532"): "bearish",
    ("coindesk", "09156560"): "bearish",
    ("cointelegraph", "binance-upbit-hack-funds-freeze-kbs-report"): "bearish",
    ("cointelegraph", "bitcoin-new-year-bear-flag-sparks-76k-btc-price-target-next"): "bearish",
    ("decrypt", "352002"): "bearish",
    ("decrypt", "352113"): "bearish",
    ("decrypt", "351946"): "bearish",
    ("decrypt", "BcHTc0O2"): "bearish",
    ("decrypt", "feVCIfte"): "bearish",
    # neutral
    ("coindesk", "370d2a3a"): "neutral",
    ("coindesk", "c2088570"): "neutral",
    ("cointelegraph", "what-happened-in-crypto-today"): "neutral",
    ("cointelegraph", "phantom-kalshi-prediction-markets-wallet-integration"): "neutral",
    ("cointelegraph", "coinbase-prediction-markets-tokenized-stocks-december-17-report"): "neutral",
    ("decrypt", "352224"): "neutral",
    ("decrypt", "352200"): "neutral",
    ("decrypt", "352121"): "neutral",
    ("decrypt", "0bzRT1D1"): "neutral",
    ("theblock", "382291"): "neutral",
    ("theblock", "382298"): "neutral",
    ("theblock", "382340"): "neutral",
}


@pytest.fixture(scope="module")
def headlines(data_dir) -> dict[tuple[str, str], str]:
    """The title of each labelled headline; exactly one item of its feed must match the fragment."""
    items: dict[str, list] = {}
    for path in sorted((data_dir / "news_feeds").glob("*.rss")):
        feed = path.name.split("_")[0]
        items[feed] = [entry_to_item(feed, entry) for entry in feedparser.parse(path.read_bytes()).entries]
    out = {}
    for feed, fragment in LABELLED:
        matches = [it.title for it in items[feed] if fragment in it.guid]
        assert len(matches) == 1, (feed, fragment, matches)
        out[(feed, fragment)] = matches[0]
    return out


def test_sentiment_accuracy_on_hand_labelled_headlines(headlines):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    plain = SentimentIntensityAnalyzer()  # VADER without the crypto supplement, for comparison
    hits = plain_hits = 0
    per_label: dict[str, list[int]] = {"bullish": [0, 0], "bearish": [0, 0], "neutral": [0, 0]}
    for key, want in LABELLED.items():
        title = headlines[key]
        value = score(title)
        assert -1.0 <= value <= 1.0
        got = label(value)
        hits += got == want
        plain_hits += label(plain.polarity_scores(title)["compound"]) == want
        per_label[want][0] += got == want
        per_label[want][1] += 1
    accuracy, plain_accuracy = hits / len(LABELLED), plain_hits / len(LABELLED)
    print(f"\nsentiment accuracy on {len(LABELLED)} hand-labelled headlines: {accuracy:.1%} "
          f"(plain VADER {plain_accuracy:.1%}); " +
          ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in per_label.items()))
    assert all(v[1] >= 10 for v in per_label.values())
    assert accuracy >= 0.8
    assert accuracy > plain_accuracy  # the supplement must earn its place


@pytest.mark.parametrize("text, expected", [
    ("Bitcoin rallies to a new all-time high", "bullish"),
    ("Ether plunges as liquidations mount", "bearish"),
    ("Exchange hacked, $40M drained in exploit", "bearish"),
    ("Protocol suffers rug pull", "bearish"),
    ("Analysts turn bullish on SOL", "bullish"),
    ("Markets are not bullish this week", "bearish"),  # VADER's negation still applies
    ("Coinbase lists a new token on Tuesday", "neutral"),
])
def test_the_crypto_supplement_reads_market_words(text, expected):
    assert label(score(text)) == expected


def test_scores_and_labels_edges():
    assert score("") == 0.0 and score("   ") == 0.0
    assert label(0.05) == "bullish" and label(-0.05) == "bearish" and label(0.049) == "neutral"
    assert all(-4.0 <= v <= 4.0 for v in CRYPTO_LEXICON.values())  # VADER's rating scale


@pytest.mark.parametrize("text, coins", [
    ("A solution for SOL holders", ["SOL"]),
    ("The solution is consolidation", []),
    ("Solana's validators upgrade", ["SOL"]),
    ("ETHBTC ratio hits low", []),
    ("$sol and $eth pump", ["ETH", "SOL"]),
    ("Bitcoins and ether ETFs", ["BTC", "ETH"]),
    ("BTC-USD and XRP/USDT open higher", ["BTC", "XRP"]),
    ("Whether the tether holds", []),
    ("Ethereum (ETH) and Ripple", ["ETH", "XRP"]),
    ("sol y sombra", []),  # a lower-case ticker alone is a word, not a coin
    ("", []),
])
def test_coin_detection_is_word_boundary_aware(text, coins):
    assert CoinDetector(["BTC", "ETH", "SOL", "XRP"]).detect(text) == coins


def test_coin_detection_aliases_unknown_tickers_and_bad_input():
    detector = CoinDetector(["LINK", "HYPE", "PEPE"], aliases={"PEPE": ["pepe coin"]})
    assert detector.detect("a link to Chainlink") == ["LINK"]
    assert detector.detect("LINK and HYPE rise; hype is not a coin") == ["LINK", "HYPE"]
    assert detector.detect("Pepe  Coin, then PEPE") == ["PEPE"]
    assert detector.detect("pepe the frog") == []
    with pytest.raises(ValueError, match="not a coin ticker"):
        CoinDetector(["B$C"])
    assert set(COINGECKO_IDS) <= set(COIN_NAMES)
