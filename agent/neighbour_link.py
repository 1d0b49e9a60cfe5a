"""Agent-to-agent links: each agent publishes (step, rewards, mu) once per step on its own
PUB socket and subscribes to the PUB sockets of its graph neighbours. The env server is never
on this path: it does not know these addresses.

Every frame travels under a topic (ZeroMQ filters topics at the publisher): `*.` for all of
the agent's subscribers, `<id>.` for one of them. Where the neighbourhood changes every step
(range topologies, agents that leave episodes early) an agent sends its scalars only to the
peers that count it as a neighbour at that step, so the bytes an agent receives grow with its
neighbours in range, not with the number of agents.

Receiving is defensive: a malformed frame, a message from an agent that is not a neighbour,
or one for a step already learned from (late) is logged, counted and dropped.

With CurveZMQ (tcp, drima/security.py): the PUB lets only the neighbours' keys subscribe, and
each SUB connection accepts only a publisher that proves that neighbour's key, so whoever
takes over a dead neighbour's port cannot feed its neighbours.

Liveness, Paranoid-Pirate style: a peer that misses `liveness` consecutive steps is marked
silent and no longer waited for. Only scalars that arrive in time to be used (for a step not yet
closed) count as signs of life and make a silent peer live again: a peer whose scalars always
come after the deadline would otherwise cost every neighbour the whole deadline at every step
while none of its data is used. Late scalars and hellos are counted, not believed. One kind of
lateness is a hint, though: a silent peer's scalars for the step just closed mean that it is back
and only a little behind (a restarted agent is; a silent peer is not waited for, so it loses every
race with the others). Such a peer is put on probation: the next step waits for it once. In time,
it is live again; late again, it is silent again and the next probation comes after twice as many
steps (at most MAX_PROBE_BACKOFF), so a peer that is always late costs the deadline rarely. Below that,
each connection carries ZMTP heartbeats, so that one left half-open by a partition is closed and
the subscriber reconnects (drima/connections.py).

Chaos injection, for fault tests and benchmarks: `drop` loses that fraction of the incoming
scalar messages (independently per link, seeded), `delay_ms` holds every outgoing scalar
message that long before it is sent.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import zmq

from drima import protocol, security
from drima.connections import detect_dead_connections

log = logging.getLogger("drima.agent.link")

MAX_PENDING_STEPS = 64  # open steps with early neighbour messages; a live peer is at most a step or two ahead
MAX_PROBE_BACKOFF = 64  # steps between two probations of a silent peer that stays late, at most
TO_ALL = b"*."  # the topic every subscriber takes; b"<id>." is agent <id>'s own


def topic_for(agent_id: int) -> bytes:
    return f"{agent_id}.".encode()  # the dot: "1." is no prefix of "12."


class NeighbourLink:
    def __init__(self, ctx: zmq.Context, agent_id: int, bind_address: str, peers: dict[int, str],
                 liveness: int = 3, drop: float = 0.0, delay_ms: float = 0.0, seed: int = 0,
                 keys: security.KeyPair | None = None, peer_keys: dict[int, str] | None = None):
        """`keys`: this agent's CurveZMQ key pair, and `peer_keys` each neighbour's public key
        (CURVE on); None: plain text."""
        self.agent_id = agent_id
        self.drop = drop
        self.delay_s = delay_ms / 1000.0
        self._chaos_rng = random.Random(seed)
        self._delayed: deque[tuple[float, bytes, bytes]] = deque()  # (due time, topic, frame), in due order
        self.peers = dict(peers)
        self.liveness = liveness
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 500)
        self.pub.setsockopt(zmq.SNDHWM, 1000)
        peer_keys = peer_keys or {}
        self.keys, self.peer_keys = keys, peer_keys
        if keys is not None:
            security.serve(self.pub, keys, {str(p): peer_keys[p] for p in self.peers}, f"agent {agent_id}'s PUB")
        self.pub.bind(bind_address)
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, TO_ALL)
        self.sub.setsockopt(zmq.SUBSCRIBE, topic_for(agent_id))
        self.sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_LINK_FRAME_BYTES)  # a rogue publisher cannot balloon us
        for sock in (self.pub, self.sub):
            detect_dead_connections(sock)
        for p, addr in self.peers.items():
            security.connect(self.sub, keys, peer_keys.get(p, ""), addr)
        self.missed = {p: 0 for p in self.peers}  # consecutive steps without a message
        self._probation: set[int] = set()  # silent peers waited for once more (their scalars came just late)
        self._probe_from = {p: 0 for p in self.peers}  # a silent peer's next probation: not before this step
        self._probe_backoff = {p: 1 for p in self.peers}
        # per peer, since the start: scalars used (in time), come late, and steps waited for in vain
        self.per_peer = {p: {"recv": 0, "late": 0, "missed": 0} for p in self.peers}
        self.heard: set[int] = set()  # peers heard from during the handshake
        self._pending: dict[int, dict[int, tuple[np.ndarray, float]]] = {}
        self._learned_up_to = -1  # steps <= this are closed: later messages for them are late
        self._not_wanted: deque[tuple[int, set[int]]] = deque(maxlen=16)  # (step, peers out of range)
        self.stats = {"sent_msgs": 0, "sent_bytes": 0, "recv_msgs": 0, "recv_bytes": 0, "recv_scalars": 0,
                      "dropped_malformed": 0, "dropped_unknown_peer": 0, "dropped_late": 0, "dropped_chaos": 0,
                      "dropped_flood": 0, "ignored_out_of_range": 0, "probations": 0}

    # -- sending ---------------------------------------------------------------------------
    def publish(self, step: int, rewards: np.ndarray, mu: float, to: set[int] | None = None) -> None:
        """(step, rewards, mu) to every subscriber, or only to the peers in `to`."""
        frame = protocol.encode(protocol.SCALARS, self.agent_id, step, [protocol.to_bytes(rewards), float(mu)])
        for topic in [TO_ALL] if to is None else [topic_for(p) for p in sorted(to & self.peers.keys())]:
            if self.delay_s > 0:
                self._delayed.append((time.monotonic() + self.delay_s, topic, frame))
            else:
                self._send(topic, frame)
        self.flush_delayed()

    def flush_delayed(self) -> None:
        """Send the delayed frames that are due."""
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, topic, frame = self._delayed.popleft()
            self._send(topic, frame)

    def publish_hello(self) -> None:
        self._send(TO_ALL, protocol.encode(protocol.LINK_HELLO, self.agent_id, 0, {}))

    def _send(self, topic: bytes, frame: bytes) -> None:
        try:
            self.pub.send_multipart([topic, frame], zmq.NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; count nothing as sent
            return
        self.stats["sent_msgs"] += 1
        self.stats["sent_bytes"] += len(topic) + len(frame)

    # -- receiving -------------------------------------------------------------------------
    def drain(self) -> None:
        """Read every frame already queued, without blocking. Asks the socket whether a frame is
        there (no syscall) instead of ending on zmq.Again: an exception per call cost 2 % of an
        agent's CPU."""
        while self.sub.get(zmq.EVENTS) & zmq.POLLIN:
            try:
                parts = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(parts)

    def _decode(self, parts: list[bytes]) -> protocol.Message | None:
        """The message in [topic, frame], counted; None (logged) for a malformed one."""
        size = sum(map(len, parts))
        self.stats["recv_msgs"] += 1
        self.stats["recv_bytes"] += size
        try:
            if len(parts) != 2:
                raise protocol.ProtocolError(f"{len(parts)}-part message, expected [topic, frame]")
            return protocol.decode(parts[1])
        except protocol.ProtocolError as exc:
            self.stats["dropped_malformed"] += 1
            log.warning("dropped malformed neighbour frame (%d bytes): %s", size, exc)
            return None

    def _handle(self, parts: list[bytes]) -> None:
        msg = self._decode(parts)
        if msg is None:
            return
        if msg.sender not in self.peers:
            self.stats["dropped_unknown_peer"] += 1
            log.warning("dropped %s from unknown peer %d (neighbours: %s)", msg.kind, msg.sender, sorted(self.peers))
            return
        if msg.kind == protocol.LINK_HELLO:
            self.heard.add(msg.sender)
            return
        if msg.kind != protocol.SCALARS:
            self.stats["dropped_malformed"] += 1
            log.warning("dropped unexpected %s from neighbour %d", msg.kind, msg.sender)
            return
        self.stats["recv_scalars"] += 1
        if self.drop > 0 and self._chaos_rng.random() < self.drop:
            self.stats["dropped_chaos"] += 1
            return
        if msg.step <= self._learned_up_to:
            if any(step == msg.step and msg.sender in peers for step, peers in self._not_wanted):
                self.stats["ignored_out_of_range"] += 1  # not late: it was not waited for
                return
            self.stats["dropped_late"] += 1
            self.per_peer[msg.sender]["late"] += 1
            log.debug("dropped late scalars of neighbour %d for step %d", msg.sender, msg.step)
            self._maybe_probe(msg.sender, msg.step)
            return
        self.heard.add(msg.sender)
        if self.missed[msg.sender] >= self.liveness or msg.sender in self._probation:
            log.info("neighbour %d is back (scalars for step %d in time)", msg.sender, msg.step)
            self._probation.discard(msg.sender)
            self._probe_backoff[msg.sender] = 1
        self.missed[msg.sender] = 0  # in time: a sign of life for the step exchange
        self.per_peer[msg.sender]["recv"] += 1
        if msg.step not in self._pending and len(self._pending) >= MAX_PENDING_STEPS:
            # only a broken or hostile peer gets this far ahead: evict the farthest step, keep memory bounded
            self.stats["dropped_flood"] += 1
            del self._pending[max(self._pending)]
        self._pending.setdefault(msg.step, {})[msg.sender] = (protocol.floats(msg.body[0]), float(msg.body[1]))

    def _maybe_probe(self, peer: int, late_step: int) -> None:
        """A silent peer's scalars for the step just closed: wait for it at the next step (probation),
        unless its last probation failed too recently."""
        if (self.missed[peer] >= self.liveness and late_step == self._learned_up_to
                and late_step >= self._probe_from[peer]):
            self.missed[peer] = self.liveness - 1  # live, one miss away from silent again
            self._probation.add(peer)
            self.stats["probations"] += 1
            log.debug("neighbour %d silent but only just late (step %d): waiting for it at the next step",
                      peer, late_step)

    def move(self, peer: int, address: str) -> bool:
        """Neighbour `peer` now publishes at `address` (another node adopted it): drop the old
        connection and subscribe there, still accepting only a publisher that proves its key.
        False when `peer` is not a neighbour or already there."""
        old = self.peers.get(peer)
        if old is None or old == address:
            return False
        try:
            self.sub.disconnect(old)
        except zmq.ZMQError:  # libzmq gave up on it already
            pass
        security.connect(self.sub, self.keys, self.peer_keys.get(peer, ""), address)
        self.peers[peer] = address
        log.info("neighbour %d moved from %s to %s: subscribed there", peer, old, address)
        return True

    def live_peers(self) -> list[int]:
        return [p for p, m in self.missed.items() if m < self.liveness]

    def collect(self, step: int, n_envs: int, deadline_s: float, wanted: set[int] | None = None,
                on_wait: Callable[[], None] | None = None) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Neighbour (rewards, mu) for `step`: waits for every live peer (of `wanted`, if given:
        range topologies wait only for the peers in range) until the deadline, then closes the
        step; `on_wait` is called at least every 100 ms while waiting (the agent's heartbeat).
        Returns (peer ids, rewards (m, K), mus (m,))."""
        wanted = set(self.peers) if wanted is None else wanted & self.peers.keys()
        self.drain()  # first: what came since may end a silence or start a probation
        expected = set(self.live_peers()) & wanted
        self._wait_for(step, expected, time.monotonic() + deadline_s, on_wait)
        return _stacked(self._close_step(step, wanted), n_envs, step)

    def _wait_for(self, step: int, expected: set[int], end: float, on_wait: Callable[[], None] | None) -> None:
        """Receive until every peer in `expected` has sent its scalars for `step`, or until `end`
        (collect has just drained what was queued)."""
        while not expected <= self._pending.get(step, {}).keys():
            self.flush_delayed()  # our own delayed frames must go out while we wait
            now = time.monotonic()
            if now >= end:
                break
            wait = end - now
            if self._delayed:
                wait = min(wait, max(0.0, self._delayed[0][0] - now))
            if self.sub.poll(int(min(wait, 0.1) * 1000) + 1):
                self.drain()
            if on_wait:
                on_wait()

    def _close_step(self, step: int, wanted: set[int]) -> dict[int, tuple[np.ndarray, float]]:
        """Close `step` (later messages for it are late) and return what arrived for it; a wanted
        peer that sent nothing has missed one more step."""
        got = self._pending.pop(step, {})
        for old in [s for s in self._pending if s < step]:
            del self._pending[old]
        self._learned_up_to = step
        if len(wanted) < len(self.peers):
            self._not_wanted.append((step, set(self.peers) - wanted))
        for p in wanted:  # a peer we did not wait for is not counted as silent
            if p not in got:
                self.missed[p] += 1
                self.per_peer[p]["missed"] += 1
                if self.missed[p] == self.liveness and p in self._probation:  # late again: back off
                    self._probation.discard(p)
                    self._probe_from[p] = step + self._probe_backoff[p]
                    self._probe_backoff[p] = min(2 * self._probe_backoff[p], MAX_PROBE_BACKOFF)
                elif self.missed[p] == self.liveness:
                    log.warning("neighbour %d silent for %d steps (last at step <= %d): learning without it",
                                p, self.liveness, step - self.liveness)
        return got

    def close(self) -> None:
        self.pub.close()
        self.sub.close()


def _stacked(got: dict[int, tuple[np.ndarray, float]], n_envs: int,
             step: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Peers' (rewards, mu) -> (peer ids in order, rewards (m, K), mus (m,)); rewards of the wrong
    width are dropped."""
    ids = sorted(p for p, (r, _) in got.items() if r.shape[0] == n_envs)
    if len(ids) != len(got):
        log.warning("dropped scalars of wrong width at step %d", step)
    rewards = np.stack([got[p][0] for p in ids]) if ids else np.zeros((0, n_envs), np.float32)
    mus = np.array([got[p][1] for p in ids], np.float64)
    return ids, rewards, mus
