"""RSS 2.0 / Atom news feeds, parsed with feedparser.

Each configured feed is one :class:`RssSource` named after the feed (``coindesk``). A feed
is fetched with a conditional GET; a ``304 Not Modified`` yields no items (everything in
it was stored by an earlier run). The body goes to feedparser with the response's
``Content-Type`` so that it can honour (or overrule) the declared charset.

Outcomes:

* well-formed feed: ``ok``;
* declared charset wrong (feedparser's ``CharacterEncodingOverride``): ``ok`` with a note
  naming the encoding feedparser fell back to;
* malformed XML (``bozo`` with any other exception): ``degraded``; nothing is stored and
  the validators are not remembered, so the next run fetches the feed whole again;
* a body that is not a feed at all (an HTML page): ``degraded``.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import re
from typing import Any
from urllib.parse import urlsplit

from sigmax_cli.errors import ConfigError
from sigmax_cli.research.base import SUMMARY_CHARS, Fetched, Item, Source, SourceError
from sigmax_cli.research.http import HttpClient

FEED_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"
GUID_CHARS = 512  # research_items.guid is VARCHAR(512)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def plain_text(fragment: str | None, limit: int = SUMMARY_CHARS) -> str:
    """``fragment`` (HTML) as plain text: tags dropped, entities decoded, whitespace collapsed,
    cut at ``limit`` characters (with ``…``)."""
    if not fragment:
        return ""
    text = _SPACE.sub(" ", html.unescape(_TAG.sub(" ", fragment))).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class RssSource(Source):
    """One RSS/Atom feed.

    Args:
        name: source name stored with its items (lowercase, ``[a-z0-9_.-]``).
        url: the feed URL (http or https).
    """

    kind = "rss"

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url

    def __repr__(self) -> str:
        return f"RssSource({self.name!r}, {self.url!r})"

    def fetch(self, http: HttpClient) -> Fetched:
        resp = http.get(self.url, who=self.name, conditional=True, accept=FEED_ACCEPT)
        if resp.not_modified:
            return Fetched(not_modified=True)
        import feedparser

        headers = {"content-type": resp.headers.get("Content-Type", "application/xml"), "content-location": resp.url}
        parsed = feedparser.parse(resp.body, response_headers=headers)
        notes: list[str] = []
        if not parsed.get("version") and not parsed.entries:
            raise SourceError(f"{self.name}: {resp.label} did not answer an RSS or Atom feed "
                              f"(Content-Type {resp.content_type or 'none'})", "check the feed URL")
        if parsed.get("bozo"):
            exc = parsed.get("bozo_exception")
            if isinstance(exc, feedparser.CharacterEncodingOverride | feedparser.CharacterEncodingUnknown):
                notes.append(f"encoding: {_first_line(exc)}")
            else:
                raise SourceError(f"{self.name}: the feed at {resp.label} is malformed XML ({_first_line(exc)})",
                                  "it is fetched again on the next run; tell the publisher if it persists")
        items: list[Item] = []
        seen: set[str] = set()
        for entry in parsed.entries:
            item = entry_to_item(self.name, entry)
            if item is not None and item.guid not in seen:
                seen.add(item.guid)
                items.append(item)
        return Fetched(items=items, notes=notes, validators=[resp.validators])


def entry_to_item(source: str, entry: Any) -> Item | None:
    """Normalise one feedparser entry; ``None`` when it has neither title nor summary."""
    summary_html = entry.get("summary") or ""
    if not summary_html and entry.get("content"):
        summary_html = entry["content"][0].get("value", "")
    summary = plain_text(summary_html)
    title = plain_text(entry.get("title"), limit=1000) or summary[:120]
    if not title:
        return None
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    published_ms = calendar.timegm(stamp) * 1000 if stamp else None
    link = entry.get("link") or None
    guid = entry.get("id") or link or _digest(f"{title}|{published_ms}")
    if len(guid) > GUID_CHARS:
        guid = "sha256:" + _digest(guid)
    return Item(source=source, guid=guid, url=link, title=title, published_ms=published_ms, summary=summary)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _first_line(exc: object) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).replace("<unknown>:", "line ")


def parse_feed_spec(spec: str) -> tuple[str, str]:
    """``NAME=URL`` or a bare URL -> ``(name, url)``; a bare URL is named after its host
    (``https://www.coindesk.com/...`` -> ``coindesk``).

    Raises:
        ConfigError: not an http(s) URL, or a name outside ``[a-z0-9_.-]``.
    """
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"feed {spec!r} is not an http(s) URL",
                          "give feeds as URL or NAME=URL, e.g. --feeds coindesk=https://www.coindesk.com/arc/outboundfeeds/rss/")
    name = name.strip().lower() or _host_name(parts.hostname)
    if not _NAME.match(name):
        raise ConfigError(f"feed name {name!r} is not allowed", "use lowercase letters, digits, '-', '_' or '.'")
    return name, url


def _host_name(host: str) -> str:
    labels = [label for label in host.lower().split(".") if label not in ("www", "feeds", "rss")]
    if len(labels) >= 2 and not host.replace(".", "").isdigit():
        return labels[-2]
    return host.lower()


def feed_sources(specs: list[str]) -> list[RssSource]:
    """One :class:`RssSource` per spec (see :func:`parse_feed_spec`).

    Raises:
        ConfigError: a malformed spec, no feeds, or two feeds with the same name or URL.
    """
    if not specs:
        raise ConfigError("no news feed is configured", "give --feeds or research.feeds in the profile")
    sources: list[RssSource] = []
    names: dict[str, str] = {}
    for spec in specs:
        name, url = parse_feed_spec(spec)
        if name in names:
            raise ConfigError(f"two feeds are named {name!r} ({names[name]} and {url})",
                              "name them apart with NAME=URL")
        if url in names.values():
            raise ConfigError(f"feed {url} is listed twice", "list each feed once")
        names[name] = url
        sources.append(RssSource(name, url))
    return sources
