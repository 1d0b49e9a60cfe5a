"""The agent's end of the env link: one DEALER socket to the env server, whose identity is the
agent's id, with Paranoid-Pirate liveness and reconnection. The agent process owns what the
messages mean; this class owns the socket, heartbeats and silence.

Liveness: a HEARTBEAT goes out whenever nothing else was sent for one interval (call
`heartbeat()` often: it is cheap); the server is lost once it has been silent for `liveness`
intervals, or longer where it said it would be busy (a HEARTBEAT with busy_s, sent before env
steps that can take longer: resets of many worlds). Silence is judged only after an empty poll,
so frames that queued while the agent was busy (a long learner update) count as signs of life.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from drima import protocol, security
from drima.connections import detect_dead_connections

log = logging.getLogger("drima.agent")


MAX_BUSY_S = 600.0  # a server that says it will be busy for longer is not believed


class EnvServerGone(RuntimeError):
    """The env server did not answer in time, or went silent."""


class RunCompletedMeanwhile(Exception):
    """Coming back, the agent learns that the run completed while it was cut off or paused."""


class Superseded(Exception):
    """The env server plays this agent's seat for a later incarnation (another node adopted it):
    this process must exit without writing anything."""


def is_superseded(msg: protocol.Message) -> bool:
    return msg.kind == protocol.STOP and msg.body.get("superseded") is True


class EnvLink:
    def __init__(self, ctx: zmq.Context, agent_id: int, address: str, heartbeat_interval_s: float,
                 heartbeat_liveness: int, stop_requested: Callable[[], bool], keys: security.KeyPair | None = None,
                 server_key: str = "", incarnation: int = 0, link_address: str = ""):
        """`incarnation`, `link_address`: an adopted agent says them in its HELLO (protocol.HELLO)."""
        self.ctx = ctx
        self.incarnation, self.link_address = incarnation, link_address
        self.on_moved: Callable[[dict], None] | None = None  # a neighbour moved to another node (MOVED)
        self.pending: deque[protocol.Message] = deque()  # read by pump() before anyone asked
        self.keys, self.server_key = keys, server_key  # CurveZMQ: prove our key, accept only this server
        self.agent_id = agent_id
        self.address = address
        self.interval = heartbeat_interval_s
        self.liveness = heartbeat_liveness
        self.stop_requested = stop_requested
        self.poll_ms = max(1, min(100, int(heartbeat_interval_s * 500)))  # >= 2 polls per interval
        self.last_heard = time.monotonic()  # last frame from the env server
        self.looked_at = self.last_heard  # last time this agent polled the env link (pauses show as gaps)
        self.last_sent = 0.0  # last frame to the env server
        self.busy_until = 0.0  # the server said it may be silent until then (a slow env step)
        self.sock = self._connect()

    def _connect(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        # no IDENTITY: the env server names the connection and routes by the HELLO it proved
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        detect_dead_connections(sock)
        security.connect(sock, self.keys, self.server_key, self.address)
        return sock

    def close(self, server_lost: bool = False) -> None:
        self.sock.close(linger=0 if server_lost else None)  # nothing to flush to a dead server

    # -- sending -------------------------------------------------------------------------------
    def send(self, kind: str, step: int, body: Any) -> None:
        try:  # never block on a dead server: the queue only fills (1000 frames) when it is gone
            self.sock.send(protocol.encode(kind, self.agent_id, step, body), zmq.NOBLOCK)
            self.last_sent = time.monotonic()
        except zmq.Again:
            log.debug("env link queue full: %s not sent", kind)

    def heartbeat(self, step: int) -> None:
        """Tell the env server we are alive, if nothing else was sent for one interval."""
        if time.monotonic() - self.last_sent >= self.interval:
            self.send(protocol.HEARTBEAT, step, {})

    # -- receiving -----------------------------------------------------------------------------
    def recv(self, step: int, timeout_s: float | None = None,
             while_waiting: Callable[[], None] | None = None) -> protocol.Message:
        """The next valid message from the env server; heartbeats and malformed frames are consumed
        here. With timeout_s (start-up), gives up after that long; without, once the server has
        been silent for `liveness` intervals. Raises EnvServerGone, or KeyboardInterrupt once a stop
        is requested (SIGTERM, SIGINT)."""
        start = time.monotonic()
        if self.pending:
            return self.pending.popleft()
        while not self.stop_requested():
            if self.sock.poll(self.poll_ms):
                msg = self._read()
                if msg is not None:
                    return msg
                continue
            self.heartbeat(step)
            if while_waiting:
                while_waiting()
            self._judge_silence(start, timeout_s)
        raise KeyboardInterrupt

    def pump(self) -> None:
        """Read what already came without blocking (heartbeats, MOVED), keeping other messages
        for the next recv: for loops that do not read the env link (the neighbour handshake)."""
        while self.sock.poll(0):
            msg = self._read()
            if msg is not None:
                self.pending.append(msg)

    def _read(self) -> protocol.Message | None:
        frame = self.sock.recv()
        self.last_heard = self.looked_at = time.monotonic()
        try:
            msg = protocol.decode(frame)
        except protocol.ProtocolError as exc:
            log.warning("dropped malformed frame from the env server: %s", exc)
            return None
        if msg.kind == protocol.MOVED:
            if self.on_moved is not None:
                self.on_moved(msg.body)
            return None
        if msg.kind != protocol.HEARTBEAT:
            return msg
        busy_s = msg.body.get("busy_s")
        if isinstance(busy_s, (int, float)) and 0 < busy_s <= MAX_BUSY_S:
            self.busy_until = max(self.busy_until, self.last_heard + busy_s)
        return None

    def _judge_silence(self, start: float, timeout_s: float | None) -> None:
        """After an empty poll: raise EnvServerGone past timeout_s (start-up), or once the server
        has been silent for `liveness` intervals (and past any busy_s it announced). If this agent
        itself has not looked at the env link for that long, it was paused (SIGSTOP, swapped out)
        or busy: libzmq's I/O thread, paused with it, may not have read yet what the server sent
        meanwhile, so the server gets a new liveness window instead (as the env server does for
        its own pauses)."""
        now = time.monotonic()
        since_looked, self.looked_at = now - self.looked_at, now
        window = self.interval * self.liveness
        if timeout_s is not None:
            if now - start > timeout_s:
                raise EnvServerGone(f"no answer from the env server for {timeout_s:.0f} s")
        elif since_looked > window:
            log.warning("this agent was paused or busy for %.2f s: the env server gets a new liveness window",
                        since_looked)
            self.last_heard = now
        elif now - self.last_heard > window and now > self.busy_until:
            silent = now - self.last_heard
            raise EnvServerGone(f"env server silent for {silent:.2f} s ({int(silent / self.interval)} missed "
                                f"heartbeats)")

    # -- handshakes ----------------------------------------------------------------------------
    def hello(self, step: int, timeout_s: float) -> protocol.Message:
        """HELLO -> SPEC (or STOP), waiting up to timeout_s."""
        body = {"incarnation": self.incarnation, "link": self.link_address} if self.incarnation else {}
        self.send(protocol.HELLO, step, body)
        return self.recv(step, timeout_s)

    def moved_meanwhile(self, spec: dict) -> None:
        """Neighbours adopted by another node while this agent was away: the SPEC lists them."""
        moved = spec.get("moved")
        if self.on_moved is not None and isinstance(moved, dict):
            for peer, where in moved.items():
                if isinstance(where, list) and len(where) == 2:
                    self.on_moved({"agent": peer, "incarnation": where[0], "address": where[1]})

    def reconnect(self, step: int, timeout_s: float) -> bool:
        """A fresh socket (the old one may hold a dead connection), HELLO until a SPEC comes back,
        then READY; the server then sends the current observation. False when refused or not
        back within timeout_s; RunCompletedMeanwhile when the server says the run is over; Superseded
        when another node adopted this agent meanwhile."""
        end = time.monotonic() + timeout_s
        lost_since = self.last_heard
        # a fresh socket and HELLO every liveness window: a server that was paused may still hold
        # our old connection and refuse the new one (same identity) until it notices
        retry_s = self.interval * self.liveness
        while time.monotonic() < end and not self.stop_requested():
            self.sock.close(linger=0)
            self.sock = self._connect()
            self.pending.clear()  # what the old socket brought belongs to the old connection
            try:
                msg = self.hello(step, min(retry_s, max(0.1, end - time.monotonic())))
            except EnvServerGone:
                continue
            if msg.kind == protocol.SPEC:
                self.moved_meanwhile(msg.body)
                self.send(protocol.READY, step, {})
                log.info("reconnected to the env server after %.2f s of silence: rejoining",
                         self.last_heard - lost_since)
                return True
            if msg.kind == protocol.STOP and msg.body.get("completed") is True:
                raise RunCompletedMeanwhile(str(msg.body.get("reason")))
            if is_superseded(msg):
                raise Superseded(str(msg.body.get("reason")))
            if msg.kind == protocol.STOP:
                log.error("env server refused the rejoin: %s", msg.body.get("reason"))
                return False
        return False
