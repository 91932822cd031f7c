"""Telegram Bot API: ``POST {api}/bot<token>/sendMessage`` with ``chat_id`` and ``text``
(https://core.telegram.org/bots/api#sendmessage)."""

from __future__ import annotations

from sigmax_cli.alerts.base import Alert, AlertError, Channel


class TelegramChannel(Channel):
    """Send alerts to one Telegram chat through a bot.

    Args:
        token: the bot token (a secret: never shown).
        chat_id: the chat to write to.
        api_url: the Bot API base URL (``https://api.telegram.org``; a local server in tests).
        timeout_s: seconds.
    """

    name = "telegram"

    def __init__(self, token: str, chat_id: str, api_url: str = "https://api.telegram.org",
                 timeout_s: float = 5.0) -> None:
        self._token = token
        self.chat_id = chat_id
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        import requests

        url = f"{self.api_url}/bot{self._token}/sendMessage"
        try:
            response = requests.post(url, json={"chat_id": self.chat_id, "text": alert.line(),
                                                "disable_web_page_preview": True}, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise AlertError(f"Telegram API unreachable ({type(exc).__name__})", "check the network") from None
        if response.status_code >= 300:
            raise AlertError(f"Telegram API answered HTTP {response.status_code}",
                             "check the bot token and chat id")
