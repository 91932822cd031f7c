"""An OSV-compatible vulnerability service on 127.0.0.1 for pip-audit and sigmax to query.

Serves the advisories (OSV JSON records, one per file) of a directory, by default
``tests/fixtures/osv`` (real records copied from the advisory databases they name)::

    POST /v1/query          {"package": {"name", "ecosystem"}, "version"}
                            -> {"vulns": [record, ...]} or {} when none affects it
    GET  /v1/vulns/<id>     the record, or 404 {"code": 5, "message": "Bug not found."}

A record affects a version when its package matches (names compared after PEP 503
normalisation, ecosystem exactly) and the version is listed in ``versions`` or falls in an
``ECOSYSTEM`` range (``introduced`` <= version < ``fixed``, or <= ``last_affected``), as
the OSV schema defines. Every request lands in :attr:`OsvServer.log`.

A package named in :attr:`OsvServer.failing` (PEP 503 name) gets ``500 {"code": 13,
"message": "Internal error."}`` instead, as the real service answers when it breaks on one
package; pip-audit then aborts its whole run.

    with OsvServer() as osv:
        osv.query_url   # http://127.0.0.1:PORT/v1/query

Run as a script (``python -m tests.support.osv_server [--port N]``) it serves until killed,
printing its query URL on the first line.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tests.support.loopback import server_url, start_server, stop_server

ADVISORIES = Path(__file__).resolve().parent.parent / "fixtures" / "osv"


def affects(record: dict[str, Any], name: str, ecosystem: str, version: str) -> bool:
    """Whether the OSV ``record`` affects ``name`` ``version`` in ``ecosystem``."""
    try:
        wanted = Version(version)
    except InvalidVersion:
        return False
    for affected in record.get("affected", []):
        package = affected.get("package", {})
        if package.get("ecosystem") != ecosystem:
            continue
        if canonicalize_name(package.get("name", "")) != canonicalize_name(name):
            continue
        if version in affected.get("versions", []):
            return True
        for rng in affected.get("ranges", []):
            if rng.get("type") == "ECOSYSTEM" and _in_range(rng.get("events", []), wanted):
                return True
    return False


def _in_range(events: list[dict[str, str]], version: Version) -> bool:
    hit = False
    for event in events:
        if "introduced" in event:
            start = event["introduced"]
            if start == "0" or Version(start) <= version:
                hit = True
        elif "fixed" in event and hit and version >= Version(event["fixed"]):
            hit = False
        elif "last_affected" in event and hit and version > Version(event["last_affected"]):
            hit = False
    return hit


class OsvServer:
    """A started-on-demand OSV API on 127.0.0.1 (``port=0``: any free port)."""

    def __init__(self, advisories: Path = ADVISORIES, port: int = 0) -> None:
        self.records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(advisories.glob("*.json"))]
        self.log: list[tuple[str, str, Any]] = []
        self.failing: set[str] = set()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("OsvServer not started")
        return server_url(self._server)

    @property
    def query_url(self) -> str:
        """The ``/v1/query`` URL to give pip-audit's ``--osv-url`` / sigmax's ``--osv-url``."""
        return f"{self.url}/v1/query"

    def start(self) -> OsvServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    query = json.loads(raw or b"{}")
                except ValueError:
                    query = None
                server.log.append(("POST", self.path, query))
                if self.path != "/v1/query":
                    self._send(404, {"code": 5, "message": "Not Found"})
                    return
                if not isinstance(query, dict) or "package" not in query or "version" not in query:
                    self._send(400, {"code": 3, "message": "Invalid query."})
                    return
                package = query["package"]
                if canonicalize_name(str(package.get("name", ""))) in server.failing:
                    self._send(500, {"code": 13, "message": "Internal error."})
                    return
                vulns = [r for r in server.records
                         if affects(r, package.get("name", ""), package.get("ecosystem", ""), str(query["version"]))]
                self._send(200, {"vulns": vulns} if vulns else {})

            def do_GET(self) -> None:
                server.log.append(("GET", self.path, None))
                prefix = "/v1/vulns/"
                if self.path.startswith(prefix):
                    wanted = self.path[len(prefix):]
                    for record in server.records:
                        if record["id"] == wanted:
                            self._send(200, record)
                            return
                self._send(404, {"code": 5, "message": "Bug not found."})

        self._server, self._thread = start_server(Handler, name="osv-server", port=self._port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            stop_server(self._server, self._thread)
            self._server = None

    def __enter__(self) -> OsvServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve tests/fixtures/osv as an OSV API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = OsvServer(port=args.port).start()
    print(server.query_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
