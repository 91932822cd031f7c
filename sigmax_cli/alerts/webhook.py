"""Slack-compatible incoming webhook: ``POST {"text": ...}`` (Slack, Mattermost, Rocket.Chat)."""

from __future__ import annotations

from sigmax_cli.alerts.base import Alert, AlertError, Channel


class WebhookChannel(Channel):
    """POST the alert as Slack's ``{"text": ...}`` JSON to ``url`` (a secret: never shown).

    Args:
        url: the webhook URL.
        timeout_s: connect and read timeout, seconds.
    """

    name = "webhook"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        import requests

        try:
            response = requests.post(self._url, json={"text": alert.line()}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise AlertError(f"webhook unreachable ({type(exc).__name__})", "check SIGMAX_ALERT_WEBHOOK_URL") from None
        if response.status_code >= 300:
            raise AlertError(f"webhook answered HTTP {response.status_code}", "check the webhook URL and its token")
