"""Which coins a headline is about: word-boundary-aware detection by ticker and by name.

Rules (so that "SOL" is not found in "solution", nor "LINK" in "a link to"):

* a ticker matches in upper case only (``BTC``, ``SOL``), or in any case right after a
  ``$`` (``$sol``); a name matches in any case (``Bitcoin``, ``bitcoin``), optionally
  followed by ``s`` (``bitcoins``);
* a match needs a non-alphanumeric character (or the text's edge) on both sides, so
  ``ETHBTC``, ``solution``, ``Solana's`` -> only ``Solana``;
* possessives and punctuation do not hurt: ``Bitcoin's``, ``(ETH)``, ``BTC-USD``, ``XRP/USDT``.

Names per ticker come from :data:`COIN_NAMES` (well-known coins) plus any aliases passed in;
a ticker without an entry is detected by its ticker alone. :data:`COINGECKO_IDS` maps the
same tickers to CoinGecko coin ids (from ``https://api.coingecko.com/api/v3/coins/list``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

COIN_NAMES: dict[str, tuple[str, ...]] = {
    "BTC": ("bitcoin",),
    "ETH": ("ethereum", "ether"),
    "SOL": ("solana",),
    "XRP": ("ripple",),
    "ADA": ("cardano",),
    "DOGE": ("dogecoin",),
    "DOT": ("polkadot",),
    "LINK": ("chainlink",),
    "MATIC": ("polygon",),
    "POL": ("polygon",),
    "LTC": ("litecoin",),
    "BNB": ("binance coin", "bnb chain"),
    "AVAX": ("avalanche",),
    "TRX": ("tron",),
    "TON": ("toncoin",),
    "SUI": (),
    "USDT": ("tether",),
    "USDC": ("usd coin",),
    "SHIB": ("shiba inu",),
    "XLM": ("stellar",),
    "ATOM": ("cosmos",),
    "HYPE": ("hyperliquid",),
}

COINGECKO_IDS: dict[str, str] = {
    "BTC": "bitcoin", "ETH": "ethereum", "SOL": "solana", "XRP": "ripple", "ADA": "cardano",
    "DOGE": "dogecoin", "DOT": "polkadot", "LINK": "chainlink", "MATIC": "matic-network",
    "POL": "polygon-ecosystem-token", "LTC": "litecoin", "BNB": "binancecoin", "AVAX": "avalanche-2",
    "TRX": "tron", "TON": "the-open-network", "SUI": "sui", "USDT": "tether", "USDC": "usd-coin",
    "SHIB": "shiba-inu", "XLM": "stellar", "ATOM": "cosmos", "HYPE": "hyperliquid",
}

_EDGE_BEFORE = r"(?<![A-Za-z0-9])"
_EDGE_AFTER = r"(?![A-Za-z0-9])"
_TICKER = re.compile(r"^[A-Z0-9]{2,12}$")


class CoinDetector:
    """Finds configured coins in text.

    Args:
        symbols: tickers to detect (``["BTC", "ETH", "SOL"]``); order is the output order.
        aliases: extra names per ticker, added to :data:`COIN_NAMES`.

    Raises:
        ValueError: a ticker is not 2-12 upper-case letters or digits.
    """

    def __init__(self, symbols: Iterable[str], aliases: Mapping[str, Iterable[str]] | None = None) -> None:
        self.symbols: list[str] = []
        by_word: dict[str, str] = {}
        tickers: list[str] = []
        names: list[str] = []
        for raw in symbols:
            ticker = raw.strip().upper()
            if not _TICKER.match(ticker):
                raise ValueError(f"{raw!r} is not a coin ticker such as BTC")
            if ticker in self.symbols:
                continue
            self.symbols.append(ticker)
            tickers.append(re.escape(ticker))
            by_word[ticker.lower()] = ticker
            for name in (*COIN_NAMES.get(ticker, ()), *((aliases or {}).get(ticker, ()))):
                key = name.strip().lower()
                if key and key not in by_word:
                    by_word[key] = ticker
                    names.append(r"\s+".join(re.escape(part) for part in key.split()))
        self._by_word = by_word
        self._order = {t: i for i, t in enumerate(self.symbols)}
        if not tickers:
            self._pattern = None
            return
        # longest first, so "binance coin" wins over a shorter overlapping alternative
        tickers.sort(key=len, reverse=True)
        names.sort(key=len, reverse=True)
        parts = [rf"(?P<t>{'|'.join(tickers)})", rf"\$(?i:(?P<d>{'|'.join(tickers)}))"]
        if names:
            parts.append(rf"(?i:(?P<n>{'|'.join(names)})s?)")
        self._pattern = re.compile(_EDGE_BEFORE + "(?:" + "|".join(parts) + ")" + _EDGE_AFTER)

    def detect(self, *texts: str | None) -> list[str]:
        """Tickers mentioned in any of ``texts``, each once, in configuration order."""
        if self._pattern is None:
            return []
        found: set[str] = set()
        for text in texts:
            if not text:
                continue
            for match in self._pattern.finditer(text):
                word = match.group("t") or match.group("d") or match.group("n")
                found.add(self._by_word[" ".join(word.lower().split())])
        return sorted(found, key=self._order.__getitem__)
