"""The research ``Source`` interface and what a source hands back.

A source has a ``name``, a ``kind`` and one method, :meth:`Source.fetch`, which takes the
shared :class:`~sigmax_cli.research.http.HttpClient` and returns a :class:`Fetched`: news
:class:`Item` objects (feeds, CryptoPanic) and/or market ``context`` (Fear & Greed,
CoinGecko). A source that cannot deliver raises :class:`SourceError` with a sentence a user
understands; the engine turns it into a ``degraded`` :class:`SourceStatus` and carries on,
so one failing source never fails the run. A source that is not configured (CryptoPanic
without a key) is not an error: :meth:`Source.skip_reason` says why it is skipped.

Times are UTC milliseconds since the epoch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sigmax_cli.errors import DataError

if TYPE_CHECKING:
    from sigmax_cli.research.http import HttpClient

Status = Literal["ok", "not_modified", "degraded", "skipped"]
"""``ok``: fetched and parsed; ``not_modified``: HTTP 304, nothing new since the last run;
``degraded``: failed this run (the reason says why); ``skipped``: not configured."""


class SourceError(DataError):
    """A source could not deliver this run (HTTP error, timeout, malformed body).

    ``cause`` is one sentence naming the source and what went wrong; no URL query string
    (it may hold an API key) ever appears in it.
    """


@dataclass(frozen=True)
class Item:
    """One normalised news item.

    Attributes:
        source: the source name (feed name such as ``coindesk``, or ``cryptopanic``).
        guid: the item's id within its source (RSS ``guid``/``id``, else its link, else a
            hash of title and date); ``(source, guid)`` is the de-duplication key.
        url: link to the article, or ``None``.
        title: headline, plain text.
        published_ms: publication time, UTC ms; ``None`` when the source gives none.
        summary: plain-text summary (HTML stripped, at most ``SUMMARY_CHARS`` characters).
        tags: coin tickers the source itself attached (CryptoPanic ``currencies``).
    """

    source: str
    guid: str
    url: str | None
    title: str
    published_ms: int | None
    summary: str
    tags: tuple[str, ...] = ()


SUMMARY_CHARS = 500


@dataclass(frozen=True)
class ScoredItem:
    """An :class:`Item` with what sigmax made of it.

    Attributes:
        item: the normalised item.
        coins: configured tickers found in its title and summary (plus the source's tags).
        sentiment: score in [-1, 1] (``sigmax_cli.research.sentiment.score`` of the title).
        new: first seen in this run (not in the ledger before).
    """

    item: Item
    coins: tuple[str, ...]
    sentiment: float
    new: bool = False


@dataclass
class Fetched:
    """What one successful :meth:`Source.fetch` returns.

    Attributes:
        items: news items in source order (may be empty).
        context: market data keyed by topic (``{"fear_greed": {...}}``, ``{"market": {...}}``).
        not_modified: the server answered 304: nothing changed since the last fetch.
        notes: things worth telling that are not failures (encoding fixed, coin not listed).
        validators: ``(url, etag, last_modified)`` to remember once the items are stored,
            so the next run can send a conditional GET.
        errors: partial failures (one coin of several); the source is then ``degraded``
            but what it did fetch is kept.
    """

    items: list[Item] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    not_modified: bool = False
    notes: list[str] = field(default_factory=list)
    validators: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SourceStatus:
    """How one source fared in one run.

    Attributes:
        name: source name (``coindesk``, ``feargreed``, ...).
        kind: ``rss``, ``feargreed``, ``coingecko`` or ``cryptopanic``.
        status: see :data:`Status`.
        items: items the source returned this run.
        new: of those, first seen in this run.
        detail: the reason for ``degraded``/``skipped``, or notes for ``ok``; ``""`` if none.
        elapsed_s: seconds spent fetching and parsing.
    """

    name: str
    kind: str
    status: Status
    items: int = 0
    new: int = 0
    detail: str = ""
    elapsed_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "degraded"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "status": self.status, "items": self.items,
                "new": self.new, "detail": self.detail, "elapsed_s": round(self.elapsed_s, 3)}


class Source(ABC):
    """One place research comes from. Implementations: ``rss.RssSource``,
    ``feargreed.FearGreedSource``, ``coingecko.CoinGeckoSource``,
    ``cryptopanic.CryptoPanicSource``."""

    name: str
    kind: str

    @abstractmethod
    def fetch(self, http: HttpClient) -> Fetched:
        """Fetch and parse this source once.

        Raises:
            SourceError: the source failed this run (the engine reports it as degraded).
        """

    def skip_reason(self) -> str | None:
        """Why this source cannot run with the current settings, or ``None`` when it can."""
        return None
