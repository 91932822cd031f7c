"""Extreme negative sentiment: no new entries while the news is very bearish."""

from __future__ import annotations

from sigmax_cli.risk.base import RiskView, TradingState, Trip, TripRule


class ExtremeSentiment(TripRule):
    """Trip to REDUCING while the overall research sentiment (``[-1, 1]``, from `sigmax
    research` signals) is at or below ``min_score``; resumes when it recovers above it.
    Without signals (``view.sentiment is None``) the rule does nothing."""

    name = "extreme_sentiment"

    def __init__(self, min_score: float) -> None:
        self.min_score = min_score


    def on_mark(self, view: RiskView) -> Trip | None:
        if view.sentiment is not None and view.sentiment <= self.min_score:
            return Trip(self.name, TradingState.REDUCING,
                        f"news sentiment {view.sentiment:+.2f} <= {self.min_score:+.2f}", round(view.sentiment, 4),
                        self.min_score, "condition")
        return None

    def cleared(self, view: RiskView) -> bool:
        return view.sentiment is None or view.sentiment > self.min_score
