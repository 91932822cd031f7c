"""Research: news feeds, Fear & Greed and CoinGecko context, sentiment, the signal stream.

Modules: ``base`` (the ``Source`` interface, ``Item``), one file per source (``rss``,
``feargreed``, ``coingecko``, ``cryptopanic``), ``http`` (requests session, retries,
conditional GET), ``store`` (ledger tables), ``coins``, ``sentiment``, ``aggregate``,
``signals`` (Redis stream), ``engine`` (the ``research()`` entry point), ``formats``.
Nothing here imports Typer; heavy libraries load when a module is imported, so commands
import this package inside their function bodies.
"""
