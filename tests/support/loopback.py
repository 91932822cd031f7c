"""Start and stop the test HTTP servers on 127.0.0.1, the same way for all of them."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def start_server(handler: type[BaseHTTPRequestHandler], *, name: str, port: int = 0,
                 server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer,
                 ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handler`` on ``127.0.0.1:port`` (0: any free port) from a daemon thread.

    Request threads are daemons too, and the serve loop polls for shutdown every 50 ms.
    """
    server = server_class(("127.0.0.1", port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return server, thread


def stop_server(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    """Stop serving, close the socket and wait for the serve thread."""
    server.shutdown()
    server.server_close()
    thread.join()


def server_url(server: ThreadingHTTPServer) -> str:
    """``http://127.0.0.1:PORT`` of a started server."""
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"
