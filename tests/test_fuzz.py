"""Fuzzing a live run where a real attacker could reach it (tcp transport):
(a) the env server's ROUTER port, which any host on the network can connect to;
(b) an agent's neighbour SUB socket: an attacker who takes over a dead neighbour's address
    (here: binds its freed tcp port) is connected to by the agent and can publish anything.
Random bytes, random msgpack structures, wrong versions, kinds and ids, multi-part and
oversized frames, and garbage below ZeroMQ (raw TCP). Every process must survive and the run
must complete.

The run is --insecure: with CurveZMQ (the default) none of these frames would get past the
handshake (test_security.py shows that); here they reach the parsers, as they would from an
attacker who holds a key, and the parsers must survive them."""

import json
import socket
import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drima import protocol
from drima.agent.neighbour_link import TO_ALL
from helpers import load_summary, pid_of

pytestmark = pytest.mark.slow

EXAMPLES = 200
STEPS = 5000

leaf = (st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=16)
        | st.binary(max_size=48))
value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=6), kids,
                                                                                     max_size=5), max_leaves=16)
kind = st.sampled_from(sorted(protocol.KINDS)) | st.text(max_size=8)
int_or_junk = st.integers(-10, 2**40) | value
frames = st.one_of(
    st.binary(max_size=256),  # random bytes
    value.map(msgpack.packb),  # random msgpack structures
    st.tuples(st.integers(-3, 5) | value, kind, int_or_junk, int_or_junk, value)  # right shape, wrong content
    .map(lambda t: msgpack.packb(list(t))),
    st.tuples(st.just(protocol.PROTOCOL_VERSION), kind, st.integers(-3, 10), st.integers(0, 2**40),  # plausible
              st.tuples(st.binary(max_size=40), st.floats() | st.integers(-2**63, 2**63)).map(list))
    .map(lambda t: msgpack.packb(list(t))),
)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def raw_tcp_garbage(address: str) -> None:
    """Bytes below ZeroMQ: a bad greeting must only cost the attacker its connection."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    for junk in (b"\xff" * 64, b"GET / HTTP/1.1\r\n\r\n", bytes(range(256)) * 4):
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.sendall(junk)
            time.sleep(0.05)


def fuzz_socket(sock) -> int:
    """Send hypothesis's multipart messages on `sock` (a function of its own, so that the
    examples' closure holds this socket, not a loop variable); returns how many."""
    sent = 0

    @SETTINGS
    @given(parts=st.lists(frames, min_size=1, max_size=3))
    def send_one(parts):
        nonlocal sent
        sock.send_multipart(parts)
        sent += 1

    send_one()
    return sent


def fuzz_env_server(ctx, address: str) -> int:
    sent = 0
    for ident in (b"intruder", b"7", b"1"):  # b"1" is a live agent's id: the ROUTER refuses the twin
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, ident)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        sent += fuzz_socket(sock)
        sock.send(b"\x00" * (protocol.MAX_FRAME_BYTES + 1))  # oversized: the ROUTER drops the connection
        sock.close()
    raw_tcp_garbage(address)
    return sent


def fuzz_agent_link(ctx, address: str) -> int:
    """Bind a rogue publisher on the dead neighbour's address and wait until both of its
    neighbours have (re)connected and subscribed (XPUB shows the subscriptions)."""
    rogue = ctx.socket(zmq.XPUB)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.setsockopt(zmq.XPUB_VERBOSE, 1)  # pass on every subscription, not only the first per topic
    deadline = time.monotonic() + 30
    while True:  # the dead agent's port can take a moment to be free
        try:
            rogue.bind(address)
            break
        except zmq.ZMQError:
            assert time.monotonic() < deadline, f"could not bind {address}"
            time.sleep(0.1)
    subscribed = 0
    while subscribed < 4:  # two neighbours, each subscribed to TO_ALL and to its own topic
        assert rogue.poll(30_000), "the neighbours never connected to the rogue publisher"
        subscribed += rogue.recv()[:1] == b"\x01"
    sent = 0

    @SETTINGS
    @given(frame=frames)
    def attack(frame):
        nonlocal sent
        rogue.send_multipart([TO_ALL, frame])  # under the topic every neighbour takes, as a peer sends
        sent += 1
        time.sleep(0.001)  # stay under the sockets' high-water marks

    attack()
    rogue.send(b"\x00" * (protocol.MAX_LINK_FRAME_BYTES + 1))  # oversized: each SUB drops the connection
    rogue.close()
    return sent


def test_fuzzing_a_live_run_over_tcp(tmp_path):
    run_dir = tmp_path / "fuzz"
    launcher = subprocess.Popen([sys.executable, "-m", "drima.launch", "--run-dir", str(run_dir), "--quiet",
                                 "--transport", "tcp", "--insecure", "--env", "pd", "--topology", "ring", "--n", "4",
                                 "--steps", str(STEPS), "--log-every", "10", "--link-deadline", "0.2",
                                 "--kill-agent", "1@100"], stderr=subprocess.PIPE, text=True)
    agent_cfg = run_dir / "agent_1" / "config.json"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (run_dir / "env_server" / "metrics.csv").exists():
        time.sleep(0.1)
    env_address = json.loads((run_dir / "env_server" / "config.json").read_text())["address"]
    victim_address = json.loads(agent_cfg.read_text())["link_bind"]
    survivors = {name: pid_of(run_dir, name) for name in ("env-server", "agent 0", "agent 2", "agent 3")}
    ctx = zmq.Context()
    try:
        sent_server = fuzz_env_server(ctx, env_address)
        while pid_of_or_none(run_dir, "agent 1") is not None:
            time.sleep(0.1)  # wait for the kill at step 100, which frees agent 1's port
        sent_link = fuzz_agent_link(ctx, victim_address)
    finally:
        ctx.destroy(0)
    for name, pid in survivors.items():  # nobody crashed
        assert pid_of(run_dir, name) == pid, f"{name} died during the fuzzing"
    assert launcher.wait(timeout=300) == 1, launcher.stderr.read()  # 1: agent 1 was killed on purpose
    summary = load_summary(run_dir)
    assert summary["status"] == "completed with agent failures", "the run ended before the fuzzing: make it longer"
    assert summary["steps"] == STEPS
    server_stats = json.loads((run_dir / "env_server" / "stats.json").read_text())
    assert server_stats["dropped_frames"] >= 0.5 * sent_server, (server_stats["dropped_frames"], sent_server)
    for i in (0, 2):  # agent 1's neighbours got the rogue frames, dropped them and learned to the end
        link = json.loads((run_dir / f"agent_{i}" / "stats.json").read_text())["link"]
        dropped = link["dropped_malformed"] + link["dropped_unknown_peer"] + link["dropped_late"]
        assert dropped >= 0.5 * sent_link, (link, sent_link)
        assert summary["agents"][str(i)]["steps_logged"] == STEPS


def pid_of_or_none(run_dir, role):
    try:
        return pid_of(run_dir, role)
    except AssertionError:
        return None
