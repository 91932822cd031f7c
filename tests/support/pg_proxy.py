"""A TCP relay in front of the real PostgreSQL that can lose the answer to a COMMIT.

Clients connect to the relay's port on 127.0.0.1 (with ``sslmode=disable``, so the relay
sees the protocol in clear); every byte goes through unchanged, except that once
:meth:`PgProxy.lose_next_commit_answer` is called, the next simple-query ``COMMIT`` is passed
to the server, the server's answer is read (so the server has committed) and, instead of
being relayed, the client's connection is closed: the client sees a connection lost during
COMMIT, as after a network cut or a failover at that moment.
"""

from __future__ import annotations

import socket
import struct
import threading


class PgProxy:
    """Relay ``127.0.0.1:<port>`` to ``upstream``; use as a context manager.

    Attributes:
        port: the relay's port.
        commits_lost: COMMITs whose answer was dropped so far.
    """

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self.commits_lost = 0
        self._closed = False
        threading.Thread(target=self._accept, name="pg-proxy", daemon=True).start()

    def __enter__(self) -> PgProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def lose_next_commit_answer(self) -> None:
        """The next COMMIT is executed by the server, and its answer never reaches the client."""
        self._armed.set()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    # ----------------------------------------------------------------------------- relay
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            drop = threading.Event()
            threading.Thread(target=self._client_to_server, args=(client, server, drop), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client, drop), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket, drop: threading.Event) -> None:
        buf = b""
        started = False  # the startup message has no type byte
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    head = 4 if not started else 5
                    if len(buf) < head:
                        break
                    length = struct.unpack("!I", buf[head - 4:head])[0]
                    end = length if not started else 1 + length
                    if len(buf) < end:
                        break
                    msg, buf = buf[:end], buf[end:]
                    if started and msg[:1] == b"Q" and msg[5:11].upper() == b"COMMIT" and self._armed.is_set():
                        self._armed.clear()
                        drop.set()
                    started = True
                    server.sendall(msg)
        except OSError:
            pass
        finally:
            _close(server)

    def _server_to_client(self, server: socket.socket, client: socket.socket, drop: threading.Event) -> None:
        try:
            while True:
                data = server.recv(65536)
                if not data:
                    break
                if drop.is_set():  # the answer to the COMMIT: the server has committed; the client never hears it
                    self.commits_lost += 1
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(server)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
