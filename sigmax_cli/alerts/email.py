"""E-mail alerts over SMTP (smtplib), with STARTTLS and login when configured."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

from sigmax_cli.alerts.base import Alert, AlertError, Channel


class EmailChannel(Channel):
    """Send each alert as one e-mail.

    Args:
        host, port: the SMTP server.
        sender: From address; recipients: To addresses.
        user, password: login (the password is a secret: never shown); both or neither.
        starttls: upgrade the connection with STARTTLS before login.
        timeout_s: seconds.
    """

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: list[str], user: str | None = None,
                 password: str | None = None, starttls: bool = False, timeout_s: float = 10.0) -> None:
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.user, self._password = user, password
        self.starttls = starttls
        self.timeout_s = timeout_s

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[sigmax {alert.severity.upper()}] {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message.set_content(f"{alert.title}\n\n{alert.text}\n\ntrigger: {alert.trigger}\n")
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self._password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise AlertError(f"e-mail to {self.host}:{self.port} failed ({type(exc).__name__})",
                             "check SIGMAX_ALERTS__SMTP_* settings") from None
