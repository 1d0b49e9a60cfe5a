"""The dashboard's web server: the standard library's ThreadingHTTPServer, in a thread of the
process that starts it (the launcher with --dashboard, or drima-dashboard). Two routes:

    GET /              the page (index.html, shipped in this package; plain JS, nothing fetched
                       from elsewhere)
    GET /status.json   status.run_status(run_dir): the page polls it every second

Anything else, a folder that is not (yet) a run folder, or a failure while reading it is answered
with a status code and a one-line JSON {"error": ...}; the server goes on serving.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from .status import RunDirError, run_status

log = logging.getLogger("drima.dashboard")

DEFAULT_PORT = 8765
"""the port of `drima-dashboard` and of a bare `drima-launch --dashboard`"""
DEFAULT_BIND = "127.0.0.1"
"""loopback: the page shows a run's rewards to whoever reaches it, so other addresses only on request"""


def page() -> bytes:
    return resources.files(__package__).joinpath("index.html").read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._reply(HTTPStatus.OK, self.server.page, "text/html; charset=utf-8")
        elif path == "/status.json":
            self._status()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, f"no page {path[:100]!r}: the dashboard serves / and /status.json")

    def _status(self) -> None:
        try:
            body, code = run_status(self.server.run_dir), HTTPStatus.OK
        except RunDirError as exc:
            body, code = {"error": str(exc)}, HTTPStatus.NOT_FOUND
        except Exception as exc:  # a file in a shape no writer of ours makes: say so, keep serving
            log.warning("status of %s: %s: %s", self.server.run_dir, type(exc).__name__, exc)
            body, code = {"error": f"reading {self.server.run_dir}: {type(exc).__name__}: {exc}"}, \
                HTTPStatus.INTERNAL_SERVER_ERROR
        self._reply(code, json.dumps(body, allow_nan=False).encode(), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every error (ours, and http.server's own: a malformed request, an unsupported method) as
        one line of JSON."""
        self.close_connection = True
        self._reply(code, json.dumps({"error": message or HTTPStatus(code).phrase}).encode(), "application/json")

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class DashboardServer(ThreadingHTTPServer):
    """Serves the dashboard of `run_dir` on bind:port (port 0: any free port) from a daemon thread."""

    daemon_threads = True

    def __init__(self, run_dir: str | Path, port: int = DEFAULT_PORT, bind: str = DEFAULT_BIND):
        self.run_dir = Path(run_dir)
        self.page = page()
        super().__init__((bind, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="drima-dashboard", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> DashboardServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
        self.server_close()
