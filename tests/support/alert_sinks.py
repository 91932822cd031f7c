"""Real servers on 127.0.0.1 that receive alerts: an HTTP sink (Slack-style webhook and
the Telegram Bot API's sendMessage) and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import server_url, start_server, stop_server


class HttpSink:
    """Records every POST: ``received`` is a list of ``(path, json_body)``. ``status`` is the
    HTTP status it answers with (set 500 to simulate a failing webhook)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.status = 200
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                sink.received.append((self.path, body))
                self.send_response(sink.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args):
                pass

        self._handler = Handler

    def __enter__(self) -> HttpSink:
        self.server, self._thread = start_server(self._handler, name="alert-sink")
        self.url = server_url(self.server)
        return self

    def __exit__(self, *exc) -> None:
        stop_server(self.server, self._thread)


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1; ``messages`` holds ``email.message.Message`` objects."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message

        sink = self

        class Collect(Message):
            def handle_message(self, message):
                sink.messages.append(message)

        import socket

        with socket.socket() as probe:  # a free loopback port (aiosmtpd needs a real one)
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.messages: list = []
        self.controller = Controller(Collect(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
