"""Sentiment of a headline: VADER with a crypto-market lexicon supplement.

Scores are VADER's ``compound`` score in [-1, 1] (Hutto & Gilbert, "VADER: A Parsimonious
Rule-based Model for Sentiment Analysis of Social Media Text", ICWSM 2014; package
``vaderSentiment``). VADER's own convention labels a text positive at compound >= 0.05,
negative at <= -0.05 and neutral in between (:data:`POSITIVE_AT`, :data:`NEGATIVE_AT`).

VADER's lexicon was rated on general social-media text: it does not know "bullish",
"plunge" or "rally", and it rates "exploit" -0.4 and "crash" -1.7 where market news means
much worse. :data:`CRYPTO_LEXICON` adds or overrides words on VADER's scale (-4..+4, the
mean of human ratings; 1.9 is "good", -2.2 "fear"). The values are ours, set so that each
word alone rates like a VADER word of similar strength:

* price moves (rally, surge, soar, plunge, plummet, tumble, slump, rebound, ...) and
  market slang (bullish, bearish, moon, FUD, capitulation, HODL, ATH) after their usage in
  market reporting;
* negative finance terms follow the Loughran-McDonald financial sentiment word lists
  (Loughran & McDonald, "When Is a Liability Not a Liability?", Journal of Finance 2011):
  liquidation, insolvency, lawsuit, delist, decline, downturn, investigation, fined;
* security incidents (hack, exploit, drained, theft, rug pull) at the level of VADER's
  "stolen" (-2.2) or below.

Multi-word phrases VADER cannot see as one token are rewritten first
(:data:`PHRASES`: "all-time high" -> ``alltimehigh``, "rug pull" -> ``rugpull``, ...).
The supplement is checked on a hand-labelled headline set in
``tests/test_research_sentiment.py``, which prints the accuracy.
"""

from __future__ import annotations

import re
import threading
from typing import Literal

POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05

CRYPTO_LEXICON: dict[str, float] = {
    # market direction and slang
    "bullish": 2.3, "bull": 1.0, "bulls": 1.0, "bearish": -2.3, "bear": -1.0, "bears": -1.0,
    "rally": 1.9, "rallies": 1.9, "rallied": 1.9, "rallying": 1.9,
    "surge": 1.9, "surges": 1.9, "surged": 1.9, "surging": 1.9,
    "soar": 2.2, "soars": 2.2, "soared": 2.2, "soaring": 2.2,
    "skyrocket": 2.4, "skyrockets": 2.4, "skyrocketed": 2.4,
    "jump": 1.3, "jumps": 1.3, "jumped": 1.3, "climb": 1.2, "climbs": 1.2, "climbed": 1.2,
    "rise": 1.1, "rises": 1.1, "rising": 1.0, "gained": 1.4, "gaining": 1.4,
    "rebound": 1.6, "rebounds": 1.6, "rebounded": 1.6, "recover": 1.5, "recovers": 1.5,
    "recovered": 1.5, "recovery": 1.6, "breakout": 1.6, "outperform": 1.6, "outperforms": 1.6,
    "upgrade": 1.2, "upgrades": 1.2, "adoption": 1.3, "inflow": 1.3, "inflows": 1.3,
    "accumulate": 0.8, "accumulation": 0.8, "hodl": 0.8, "moon": 1.5, "mooning": 2.0,
    "alltimehigh": 2.2, "ath": 2.0, "recordhigh": 2.0, "partnership": 1.2,
    "plunge": -2.2, "plunges": -2.2, "plunged": -2.2, "plunging": -2.2,
    "plummet": -2.4, "plummets": -2.4, "plummeted": -2.4, "plummeting": -2.4,
    "tumble": -1.9, "tumbles": -1.9, "tumbled": -1.9, "slump": -1.9, "slumps": -1.9, "slumped": -1.9,
    "sink": -1.5, "sinks": -1.5, "sank": -1.5, "slide": -1.2, "slides": -1.2, "slid": -1.2,
    "drops": -1.1, "dropped": -1.1, "fall": -1.2, "falls": -1.2, "fell": -1.2, "falling": -1.2,
    "dip": -0.8, "dips": -0.8, "crash": -2.6, "crashes": -2.6, "crashed": -2.6,
    "selloff": -2.0, "sell-off": -2.0, "dumps": -1.6, "dumped": -1.6, "dumping": -1.6,
    "capitulation": -2.0, "fud": -1.5, "alltimelow": -2.0, "outflow": -1.3, "outflows": -1.3,
    "underperform": -1.4, "underperforms": -1.4,
    # finance negatives (Loughran-McDonald negative list)
    "liquidation": -1.6, "liquidations": -1.6, "liquidated": -1.8, "insolvency": -2.5,
    "insolvent": -2.5, "bankruptcy": -2.6, "lawsuit": -1.5, "lawsuits": -1.5, "sues": -1.5,
    "sued": -1.5, "delist": -1.8, "delists": -1.8, "delisting": -1.8, "delisted": -1.8,
    "decline": -1.3, "declines": -1.3, "declined": -1.3, "declining": -1.3, "downturn": -1.6,
    "investigation": -1.0, "probe": -1.0, "fined": -1.6, "crackdown": -1.8, "bans": -2.0,
    "sanctions": -1.5, "sanctioned": -1.5, "halt": -1.2, "halts": -1.2, "halted": -1.2,
    "outage": -1.5, "warns": -1.2, "vulnerability": -1.5,
    # security incidents
    "hack": -2.4, "hacks": -2.4, "hacked": -2.4, "hacker": -2.0, "hackers": -2.0,
    "exploit": -2.2, "exploits": -2.2, "exploited": -2.2, "drained": -2.0, "drain": -1.5,
    "theft": -2.4, "thieves": -2.2, "rugpull": -3.0,
}

PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), token) for pattern, token in (
        (r"\ball[-\s]time[-\s]highs?\b", "alltimehigh"),
        (r"\ball[-\s]time[-\s]lows?\b", "alltimelow"),
        (r"\brecord[-\s]highs?\b", "recordhigh"),
        (r"\brug[-\s]?pulls?\b", "rugpull"),
        (r"\bsell[-\s]offs?\b", "selloff"),
    )
)

Label = Literal["bullish", "bearish", "neutral"]

_ANALYZER = None
_LOCK = threading.Lock()


def analyzer():
    """The shared VADER analyzer with :data:`CRYPTO_LEXICON` applied (built once, ~30 ms)."""
    global _ANALYZER
    with _LOCK:
        if _ANALYZER is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            built = SentimentIntensityAnalyzer()
            built.lexicon.update(CRYPTO_LEXICON)
            _ANALYZER = built
    return _ANALYZER


def score(text: str) -> float:
    """Sentiment of ``text`` in [-1, 1] (VADER compound, crypto supplement), 0.0 if empty."""
    if not text or not text.strip():
        return 0.0
    for pattern, token in PHRASES:
        text = pattern.sub(token, text)
    return float(analyzer().polarity_scores(text)["compound"])


def label(value: float) -> Label:
    """``bullish`` at >= :data:`POSITIVE_AT`, ``bearish`` at <= :data:`NEGATIVE_AT`, else ``neutral``."""
    if value >= POSITIVE_AT:
        return "bullish"
    if value <= NEGATIVE_AT:
        return "bearish"
    return "neutral"
