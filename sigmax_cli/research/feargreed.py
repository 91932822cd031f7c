"""The Crypto Fear & Greed Index of alternative.me (``GET /fng/?limit=N``).

The index is a daily value 0..100 with a classification (Extreme Fear 0-24, Fear 25-46,
Neutral 47-54, Greed 55-74, Extreme Greed 75-100, as alternative.me publishes it; we take
its ``value_classification`` as sent). The API sends values and timestamps as strings,
newest first; ``timestamp`` is in seconds. Context produced::

    {"fear_greed": {"value": 47, "classification": "Neutral", "timestamp_ms": 1745280000000,
                    "previous": 39, "change": 8}}

``previous``/``change`` are the prior day's value and the difference (points), ``None``
when the answer holds one day only.
"""

from __future__ import annotations

from typing import Any

from sigmax_cli.research.base import Fetched, Source, SourceError
from sigmax_cli.research.http import HttpClient


class FearGreedSource(Source):
    """Fear & Greed index from ``{base_url}/fng/?limit={limit}``.

    Args:
        base_url: API base, ``https://api.alternative.me`` by default.
        limit: days requested (2: today and yesterday, for the change).
    """

    name = "feargreed"
    kind = "feargreed"

    def __init__(self, base_url: str, limit: int = 2) -> None:
        self.url = f"{base_url.rstrip('/')}/fng/?limit={int(limit)}"

    def fetch(self, http: HttpClient) -> Fetched:
        body = http.get_json(self.url, who=self.name)
        return Fetched(context={"fear_greed": parse_fng(body)})


def parse_fng(body: Any) -> dict[str, Any]:
    """The newest value of an ``/fng/`` answer (see the module docstring for the shape).

    Raises:
        SourceError: the API reported an error, or the answer has no usable value.
    """
    if not isinstance(body, dict):
        raise SourceError("feargreed: the answer is not a JSON object", "the API may have changed")
    error = (body.get("metadata") or {}).get("error")
    if error:
        raise SourceError(f"feargreed: the API reported an error ({str(error)[:200]})", "try again later")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise SourceError("feargreed: the answer holds no index values", "try again later")
    try:
        rows = [(int(d["value"]), str(d["value_classification"]), int(d["timestamp"]) * 1000) for d in data[:2]]
    except (KeyError, TypeError, ValueError):
        raise SourceError("feargreed: the answer's values are not numbers", "the API may have changed") from None
    value, classification, ts_ms = rows[0]
    if not 0 <= value <= 100:
        raise SourceError(f"feargreed: index value {value} is outside 0..100", "the API may have changed")
    previous = rows[1][0] if len(rows) > 1 else None
    return {"value": value, "classification": classification, "timestamp_ms": ts_ms, "previous": previous,
            "change": value - previous if previous is not None else None}
