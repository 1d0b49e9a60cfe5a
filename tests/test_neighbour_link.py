"""NeighbourLink with real ZeroMQ sockets (inproc, one process): what it accepts and what it drops."""

import logging
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq

from drima import protocol
from drima.agent.neighbour_link import TO_ALL, NeighbourLink, topic_for

K = 4


@pytest.fixture
def wired():
    """Agent 0's link, subscribed to peers 1 and 2, whose PUB sockets the test drives."""
    ctx = zmq.Context()
    peers = {}
    for pid in (1, 2):
        pub = ctx.socket(zmq.PUB)
        pub.bind(f"inproc://peer-{pid}")
        peers[pid] = pub
    link = NeighbourLink(ctx, 0, "inproc://agent-0", {1: "inproc://peer-1", 2: "inproc://peer-2"}, liveness=2)
    # wait until both subscriptions are live (the slow-joiner problem)
    deadline = time.monotonic() + 5
    while link.heard != {1, 2} and time.monotonic() < deadline:
        for pid, pub in peers.items():
            send(pub, protocol.encode(protocol.LINK_HELLO, pid, 0, {}))
        time.sleep(0.01)
        link.drain()
    assert link.heard == {1, 2}
    yield link, peers
    link.close()
    for pub in peers.values():
        pub.close(0)
    ctx.term()


def send(pub, frame: bytes) -> None:
    """As a neighbour's PUB socket sends a frame to all its subscribers: under the topic TO_ALL."""
    pub.send_multipart([TO_ALL, frame])


def scalars(pid, step, rewards, mu):
    return protocol.encode(protocol.SCALARS, pid, step, [protocol.to_bytes(np.asarray(rewards)), mu])


def test_collects_both_neighbours(wired):
    link, peers = wired
    send(peers[1], scalars(1, 0, [1, 2, 3, 4], 0.5))
    send(peers[2], scalars(2, 0, [5, 6, 7, 8], 1.5))
    ids, rewards, mus = link.collect(0, K, deadline_s=2.0)
    assert ids == [1, 2]
    np.testing.assert_array_equal(rewards, [[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(mus, [0.5, 1.5])


def test_bad_frames_are_dropped_and_logged(wired, caplog):
    link, peers = wired
    caplog.set_level(logging.WARNING, logger="drima.agent.link")
    send(peers[1], b"\x00garbage")  # malformed
    send(peers[1], msgpack.packb([7, "dri", 1, 0, [b"", 0.0]]))  # wrong protocol version
    send(peers[1], scalars(9, 0, [0, 0, 0, 0], 0.0))  # an agent that is not a neighbour
    send(peers[1], scalars(1, 0, [9, 9], 0.0))  # wrong width for K=4
    send(peers[2], scalars(2, 0, [1, 1, 1, 1], 0.0))
    ids, rewards, _ = link.collect(0, K, deadline_s=0.3)
    assert ids == [2]
    assert link.stats["dropped_malformed"] == 2
    assert link.stats["dropped_unknown_peer"] == 1
    assert "unknown peer 9" in caplog.text and "protocol version 7" in caplog.text
    assert "wrong width" in caplog.text


def test_late_message_is_never_applied_to_a_later_step(wired):
    link, peers = wired
    send(peers[2], scalars(2, 0, [1, 1, 1, 1], 0.0))
    ids, _, _ = link.collect(0, K, deadline_s=0.2)  # peer 1 misses step 0
    assert ids == [2]
    send(peers[1], scalars(1, 0, [7, 7, 7, 7], 0.0))  # ... and its step-0 message comes late
    send(peers[1], scalars(1, 1, [3, 3, 3, 3], 0.0))
    send(peers[2], scalars(2, 1, [2, 2, 2, 2], 0.0))
    ids, rewards, _ = link.collect(1, K, deadline_s=2.0)
    assert ids == [1, 2]
    np.testing.assert_array_equal(rewards[0], [3, 3, 3, 3])
    assert link.stats["dropped_late"] == 1


def test_silent_neighbour_stops_being_waited_for_and_comes_back(wired):
    link, peers = wired
    for step in range(2):  # liveness = 2: peer 1 silent for two steps
        send(peers[2], scalars(2, step, [0, 0, 0, 0], 0.0))
        link.collect(step, K, deadline_s=0.2)
    assert link.live_peers() == [2]
    send(peers[2], scalars(2, 2, [0, 0, 0, 0], 0.0))
    t0 = time.monotonic()
    ids, _, _ = link.collect(2, K, deadline_s=5.0)
    assert ids == [2] and time.monotonic() - t0 < 1.0  # did not wait the 5 s deadline for peer 1
    send(peers[1], scalars(1, 3, [1, 1, 1, 1], 0.0))
    send(peers[2], scalars(2, 3, [0, 0, 0, 0], 0.0))
    ids, _, _ = link.collect(3, K, deadline_s=2.0)
    assert ids == [1, 2]
    assert link.live_peers() == [1, 2]


def test_a_neighbour_that_is_always_late_is_declared_silent(wired):
    """Peer 1's scalars for step t always come after step t was closed. Late scalars are no sign
    of life: after `liveness` steps it is silent and its late frames are counted. Each one is only
    a step late, so it is put on probation (waited for once more), but after a failed probation
    the next one comes twice as many steps later: the deadline is paid at few of the steps."""
    link, peers = wired
    waited = []  # steps at which peer 1 was waited for (live when the step was collected)
    for step in range(24):
        send(peers[2], scalars(2, step, [0, 0, 0, 0], 0.0))
        waited.append(1 in link.live_peers())  # its late frame of the step before is in: drained below
        ids, _, _ = link.collect(step, K, deadline_s=0.2)
        assert ids == [2]
        send(peers[1], scalars(1, step, [1, 1, 1, 1], 0.0))  # after the step was closed
        send(peers[1], protocol.encode(protocol.LINK_HELLO, 1, 0, {}))  # a hello is no sign of life either
        time.sleep(0.02)
        link.drain()
    assert link.live_peers() == [2]  # silent at the end: its last probation failed at step 21
    assert link.stats["dropped_late"] == 24
    # live at steps 0-1 (liveness 2), then probations at steps 2, 3+1, 5+2, 8+4, 13+8: 7 waits, not 24
    assert [i for i, w in enumerate(waited) if w] == [0, 1, 2, 4, 7, 12, 21]
    assert link.stats["probations"] == 5
    # once its scalars come in time again, it is waited for again
    link.drain()
    send(peers[1], scalars(1, 24, [1, 1, 1, 1], 0.0))
    send(peers[2], scalars(2, 24, [0, 0, 0, 0], 0.0))
    ids, _, _ = link.collect(24, K, deadline_s=2.0)
    assert ids == [1, 2] and link.live_peers() == [1, 2]


def test_a_silent_neighbour_just_behind_the_others_is_waited_for_again(wired, caplog):
    """A restarted agent's scalars come a little after its neighbours' (it is not waited for, so it
    loses every race): its scalars for the step just closed put it on probation, the next step
    waits for it, and it is live again."""
    link, peers = wired
    caplog.set_level(logging.INFO, logger="drima.agent.link")
    for step in range(2):  # liveness = 2: peer 1 silent
        send(peers[2], scalars(2, step, [0, 0, 0, 0], 0.0))
        link.collect(step, K, deadline_s=0.05)
    assert link.live_peers() == [2]
    send(peers[2], scalars(2, 2, [0, 0, 0, 0], 0.0))
    ids, _, _ = link.collect(2, K, deadline_s=5.0)  # not waited for ...
    assert ids == [2]
    send(peers[1], scalars(1, 2, [1, 1, 1, 1], 0.0))  # ... its scalars for step 2 come just after
    send(peers[2], scalars(2, 3, [0, 0, 0, 0], 0.0))
    timer = threading.Timer(0.1, send, (peers[1], scalars(1, 3, [3, 3, 3, 3], 0.0)))  # and step 3's a bit later
    timer.start()
    ids, rewards, _ = link.collect(3, K, deadline_s=5.0)
    timer.join()
    assert ids == [1, 2] and rewards[0].tolist() == [3, 3, 3, 3]
    assert link.live_peers() == [1, 2] and link.stats["probations"] == 1
    assert "neighbour 1 is back (scalars for step 3 in time)" in caplog.text


def test_chaos_drop_loses_the_given_fraction_seeded():
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind("inproc://chaos-peer")
    link = NeighbourLink(ctx, 0, "inproc://chaos-agent", {1: "inproc://chaos-peer"}, liveness=10**6, drop=0.3, seed=7)
    while not link.heard:
        send(pub, protocol.encode(protocol.LINK_HELLO, 1, 0, {}))
        time.sleep(0.01)
        link.drain()
    got = 0
    for step in range(400):
        send(pub, scalars(1, step, [1, 1, 1, 1], 0.0))
        ids, _, _ = link.collect(step, K, deadline_s=0.05)
        got += len(ids)
    assert link.stats["dropped_chaos"] == 400 - got
    assert 0.22 < 1 - got / 400 < 0.38
    link.close()
    pub.close(0)
    ctx.term()


def test_chaos_delay_holds_outgoing_messages():
    ctx = zmq.Context()
    sender = NeighbourLink(ctx, 1, "inproc://slow-peer", {0: "inproc://slow-agent"}, delay_ms=150)
    receiver = NeighbourLink(ctx, 0, "inproc://slow-agent", {1: "inproc://slow-peer"})
    while 1 not in receiver.heard:
        sender.publish_hello()
        time.sleep(0.01)
        receiver.drain()
    t0 = time.monotonic()
    sender.publish(0, np.ones(K), 0.0)
    arrived = None
    while arrived is None and time.monotonic() - t0 < 2:
        sender.flush_delayed()  # what the sender's own collect() does while it waits
        if receiver.sub.poll(5):
            arrived = time.monotonic() - t0
    assert arrived is not None and 0.15 <= arrived < 0.5
    ids, rewards, _ = receiver.collect(0, K, deadline_s=0.5)
    assert ids == [1]
    for link in (sender, receiver):
        link.close()
    ctx.term()


def test_a_flood_of_future_steps_keeps_memory_bounded(wired):
    """A hostile peer sending scalars for 10,000 future steps cannot grow the pending table
    beyond MAX_PENDING_STEPS; the real next step still gets through."""
    from drima.agent.neighbour_link import MAX_PENDING_STEPS

    link, peers = wired
    for step in range(1000, 11000):
        send(peers[1], scalars(1, step, [0, 0, 0, 0], 0.0))
        if step % 100 == 0:  # below the sockets' high-water marks, so that none is lost in transit
            time.sleep(0.005)
            link.drain()
    send(peers[2], scalars(2, 0, [5, 6, 7, 8], 1.5))
    time.sleep(0.2)
    link.drain()
    assert len(link._pending) <= MAX_PENDING_STEPS
    assert link.stats["dropped_flood"] >= 10000 - MAX_PENDING_STEPS
    ids, rewards, _ = link.collect(0, K, deadline_s=0.5)
    assert ids == [2]


def test_scalars_sent_to_some_peers_reach_only_those():
    """Range topologies: an agent publishes its scalars only to the peers that count it as a
    neighbour at this step; ZeroMQ filters the topic at the publisher, so the others receive
    nothing at all (their bytes grow with their neighbours in range, not with n)."""
    ctx = zmq.Context()
    addrs = {i: f"inproc://targeted-{i}" for i in range(4)}
    links = {i: NeighbourLink(ctx, i, addrs[i], {j: a for j, a in addrs.items() if j != i}) for i in range(4)}
    deadline = time.monotonic() + 5
    while any(len(link.heard) < 3 for link in links.values()) and time.monotonic() < deadline:
        for link in links.values():
            link.publish_hello()
        time.sleep(0.01)
        for link in links.values():
            link.drain()
    before = {i: link.stats["recv_msgs"] for i, link in links.items()}
    links[0].publish(0, np.ones(K), 0.5, to={1, 3})
    time.sleep(0.2)
    for link in links.values():
        link.drain()
    assert {i: link.stats["recv_msgs"] - before[i] for i, link in links.items()} == {0: 0, 1: 1, 2: 0, 3: 1}
    assert links[0].stats["sent_msgs"] >= 2
    ids, rewards, _ = links[3].collect(0, K, deadline_s=0.5, wanted={0})
    assert ids == [0] and rewards.tolist() == [[1.0] * K]
    assert topic_for(1) != topic_for(12)[:2]  # "1." is no prefix of "12."
    for link in links.values():
        link.close()
    ctx.term()
