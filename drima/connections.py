"""Connection-level liveness for every ZeroMQ socket that crosses hosts (the env link, the
neighbour links): ZMTP heartbeats answered by libzmq's own I/O thread, below the step-level
Paranoid-Pirate liveness of the messages.

Without them a partition can leave a connection half-open for good: one end gives up on it
while the other, which may send nothing (a SUB socket), keeps its half and never reconnects
(tests/test_net_faults.py); and a ROUTER that still holds such a connection keeps the old routing
id while the peer comes back on a new one."""

from __future__ import annotations

import zmq

PING_MS = 1000  # a ZMTP heartbeat on each connection
PING_TIMEOUT_MS = 5000  # no answer for this long: the connection is closed (the connecting end reconnects)
CONNECT_TIMEOUT_MS = 2000  # a connect not answered by then is retried afresh, not left to SYN back-off


def detect_dead_connections(sock: zmq.Socket) -> None:
    """Set before bind/connect: options apply to the connections made afterwards."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, PING_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, PING_TIMEOUT_MS)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
