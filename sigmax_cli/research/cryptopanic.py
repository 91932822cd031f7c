"""CryptoPanic news posts (``GET {base}/posts/?auth_token=KEY&public=true&kind=news``).

Runs only when ``research.cryptopanic_key`` (``SIGMAX_RESEARCH__CRYPTOPANIC_KEY``) is set;
otherwise it is skipped with a note. The key travels in the query string, so the URL is
never shown: messages use the redacted form (``.../posts/?***``) and the URL is not
cached for conditional GET.

An answer is ``{"results": [{"id", "title", "published_at" (ISO 8601, UTC), "url"?,
"original_url"?, "slug"?, "description"?, "currencies": [{"code": "BTC", ...}]?,
"source": {"domain", "title"}?, ...}, ...]}`` (the developer API's documented fields; the
optional ones depend on the plan). Items are stored under source ``cryptopanic`` with the
post id as guid; ``currencies`` codes become the item's tags and count as detected coins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sigmax_cli.research.base import Fetched, Item, Source, SourceError
from sigmax_cli.research.http import HttpClient
from sigmax_cli.research.rss import plain_text


class CryptoPanicSource(Source):
    """CryptoPanic posts for ``currencies``.

    Args:
        base_url: API base, ``https://cryptopanic.com/api/developer/v2`` by default.
        key: the auth token, or ``None`` (then the source is skipped).
        currencies: tickers to filter on (``["BTC", "ETH"]``); empty: all posts.
    """

    name = "cryptopanic"
    kind = "cryptopanic"

    def __init__(self, base_url: str, key: str | None, currencies: list[str]) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.currencies = currencies

    def __repr__(self) -> str:  # never the key
        return f"CryptoPanicSource({self.base_url!r}, key={'***' if self._key else None})"

    def skip_reason(self) -> str | None:
        if not self._key:
            return "no CryptoPanic key: set SIGMAX_RESEARCH__CRYPTOPANIC_KEY to include it"
        return None

    def fetch(self, http: HttpClient) -> Fetched:
        if not self._key:
            raise SourceError("cryptopanic: no API key is set", "set SIGMAX_RESEARCH__CRYPTOPANIC_KEY")
        query = {"auth_token": self._key, "public": "true", "kind": "news"}
        if self.currencies:
            query["currencies"] = ",".join(self.currencies)
        body = http.get_json(f"{self.base_url}/posts/?{urlencode(query)}", who=self.name)
        return Fetched(items=parse_posts(body))


def parse_posts(body: Any) -> list[Item]:
    """Items from a ``/posts/`` answer, in answer order, duplicates (same id) dropped.

    Raises:
        SourceError: the answer has no ``results`` list.
    """
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list):
        detail = (body.get("info") or body.get("detail")) if isinstance(body, dict) else None
        hint = f" ({str(detail)[:160]})" if detail else ""
        raise SourceError(f"cryptopanic: the answer holds no posts{hint}", "check the key and the plan")
    items: list[Item] = []
    seen: set[str] = set()
    for post in results:
        if not isinstance(post, dict) or not post.get("title"):
            continue
        guid = str(post.get("id") or post.get("slug") or post.get("url") or post["title"])
        if guid in seen:
            continue
        seen.add(guid)
        url = post.get("original_url") or post.get("url")
        if not url and post.get("id") is not None:
            url = f"https://cryptopanic.com/news/{post['id']}/{post.get('slug') or ''}".rstrip("/")
        codes = tuple(str(c.get("code", "")).upper() for c in post.get("currencies") or []
                      if isinstance(c, dict) and c.get("code"))
        items.append(Item(source="cryptopanic", guid=guid[:512], url=url, title=plain_text(post["title"], 1000),
                          published_ms=_iso_ms(post.get("published_at")),
                          summary=plain_text(post.get("description")), tags=codes))
    return items


def _iso_ms(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return int(stamp.timestamp() * 1000)
