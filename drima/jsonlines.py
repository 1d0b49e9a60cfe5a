"""JSON objects, one a line, over a local stream socket: how the launcher talks to its zygote."""

from __future__ import annotations

import json
import logging
import select
import socket

log = logging.getLogger("drima.jsonlines")

MAX_LINE_BYTES = 1 << 20
"""a longer line is a broken peer, not a message"""


class Closed(ConnectionError):
    """The other end closed the socket (or sent a line too long to be one of ours)."""


class JsonLines:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = b""

    def send(self, msg: dict) -> None:
        self.sock.sendall(json.dumps(msg, default=str).encode() + b"\n")  # default: a Path as its text

    def receive(self, timeout_s: float | None) -> list[dict]:
        """The whole lines that arrive within timeout_s (None: wait for one); [] when none did.
        Raises Closed at the end of the stream."""
        ready, _, _ = select.select([self.sock], [], [], timeout_s)
        if not ready:
            return []
        data = self.sock.recv(65536)
        if not data:
            raise Closed("the other end closed the socket")
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > MAX_LINE_BYTES:
            raise Closed(f"a line longer than {MAX_LINE_BYTES} bytes")
        return [msg for msg in map(_parse, lines) if msg is not None]

    def close(self) -> None:
        self.sock.close()


def _parse(line: bytes) -> dict | None:
    """One line's object; None (logged) for a blank line or one that is not a JSON object."""
    if not line.strip():
        return None
    try:
        msg = json.loads(line)
    except ValueError as exc:
        log.error("dropped a line that is not JSON (%s): %r", exc, line[:80])
        return None
    if not isinstance(msg, dict):
        log.error("dropped a line that is not a JSON object: %r", line[:80])
        return None
    return msg
