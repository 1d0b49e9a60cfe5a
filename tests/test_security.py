"""CurveZMQ on tcp (drima/security.py) against real ZeroMQ sockets on loopback: who may talk to
the env server, to an agent's PUB and to the rendezvous; and the locked folders."""

import dataclasses
import logging
import os
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from drima import protocol, security
from drima.agent.neighbour_link import NeighbourLink
from drima.env_server.seats import SeatState
from drima.env_server.server import EnvServer, EnvServerConfig
from drima.launch.plan import LaunchConfig, plan_run
from drima.launch.rendezvous import exchange, join_problem, shared_config, table_problem

K = 2
SECRET = "a run secret of the test, 32 bytes"


def dealer(ctx, addr: str, ident: bytes, keys: security.KeyPair | None, server_key: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.setsockopt(zmq.LINGER, 0)
    security.connect(s, keys, server_key, addr)
    return s


def answered(sock: zmq.Socket, timeout_ms: int = 2000) -> protocol.Message | None:
    return protocol.decode(sock.recv()) if sock.poll(timeout_ms) else None


def answered_not_heartbeat(sock: zmq.Socket, timeout_ms: int) -> protocol.Message | None:
    """The first frame that is not a heartbeat within timeout_ms, or None."""
    end = time.monotonic() + timeout_ms / 1000
    while (left := end - time.monotonic()) > 0:
        msg = answered(sock, int(left * 1000) + 1)
        if msg is None or msg.kind != protocol.HEARTBEAT:
            return msg
    return None


@pytest.fixture
def curve_server(tmp_path):
    """An env server for 2 agents over tcp with CURVE, in a thread; yields (address, server keys,
    agent key pairs, server). Its startup timeout ends it when the test is done."""
    port = _free_port()
    server_keys, key_file = security.write_keypair(tmp_path, "env")
    agents = [security.new_keypair() for _ in range(2)]
    cfg = EnvServerConfig(address=f"tcp://127.0.0.1:{port}", env="pd", n_agents=2, steps=3, n_envs=K,
                          run_dir=str(tmp_path / "srv"), startup_timeout_s=20, curve_key_file=str(key_file),
                          agent_keys={str(i): a.public for i, a in enumerate(agents)})
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield cfg.address, server_keys, agents, server
    server.stop_requested = True
    thread.join(30)


def test_a_stranger_gets_no_spec_and_the_agent_keeps_its_seat(curve_server, caplog):
    addr, server_keys, agents, server = curve_server
    ctx = zmq.Context()
    try:
        with caplog.at_level(logging.WARNING, "drima.security"):
            stranger = dealer(ctx, addr, b"0", security.new_keypair(), server_keys.public)  # a fresh key
            plain = dealer(ctx, addr, b"0", None, "")  # no CURVE at all
            for s in (stranger, plain):
                s.send(protocol.encode(protocol.HELLO, 0, 0, {}))
            assert answered(stranger) is None and answered(plain, 100) is None
        assert "env server: refused a connection with an unknown CurveZMQ key" in caplog.text
        stranger.close()
        plain.close()
        agent0 = dealer(ctx, addr, b"0", agents[0], server_keys.public)  # the seat is still agent 0's
        agent0.send(protocol.encode(protocol.HELLO, 0, 0, {}))
        spec = answered(agent0, 10_000)
        assert spec is not None and spec.kind == protocol.SPEC and spec.body["agent_id"] == 0
        agent0.close()
    finally:
        ctx.destroy(0)


def test_agent_js_key_cannot_speak_for_agent_i(curve_server):
    addr, server_keys, agents, server = curve_server
    ctx = zmq.Context()
    try:
        impostor = dealer(ctx, addr, b"0", agents[1], server_keys.public)  # agent 1's key, claims seat 0
        dropped = server.dropped
        impostor.send(protocol.encode(protocol.HELLO, 0, 0, {}))
        assert answered(impostor) is None
        deadline = time.monotonic() + 10
        while server.dropped == dropped and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.dropped == dropped + 1  # dropped by the server, not lost on the way
        assert server.seats.state(0) is SeatState.ABSENT  # never greeted
        impostor.close()
        agent1 = dealer(ctx, addr, b"1", agents[1], server_keys.public)  # with its own id it is served
        agent1.send(protocol.encode(protocol.HELLO, 1, 0, {}))
        spec = answered(agent1, 10_000)
        assert spec is not None and spec.body["agent_id"] == 1
        agent1.close()
    finally:
        ctx.destroy(0)


def test_agent_j_cannot_take_agent_is_route(curve_server):
    """Agent 1, with its own valid key, connects with agent 0's routing id while agent 0 is
    connected (agents used to set their id as routing id, and the server handed an id over to
    its newest connection). Routes are not handed over on a routing id: agent 0 still gets its SPEC and its
    results, and nothing for agent 0 reaches the squatter."""
    addr, server_keys, agents, server = curve_server
    ctx = zmq.Context()
    try:
        agent0 = dealer(ctx, addr, b"0", agents[0], server_keys.public)  # (real agents set no id at all)
        agent0.send(protocol.encode(protocol.HELLO, 0, 0, {}))
        assert answered(agent0, 10_000).kind == protocol.SPEC
        squatter = dealer(ctx, addr, b"0", agents[1], server_keys.public)  # agent 1's key, agent 0's routing id
        squatter.send(protocol.encode(protocol.HEARTBEAT, 0, 0, {}))  # claims agent 0: dropped (agent 1's key)
        time.sleep(0.5)
        agent0.send(protocol.encode(protocol.HELLO, 0, 0, {}))  # agent 0 is still reachable on its own connection
        reply = answered_not_heartbeat(agent0, 10_000)
        assert reply is not None and reply.kind == protocol.SPEC
        assert answered_not_heartbeat(squatter, 500) is None
    finally:
        ctx.destroy(0)


def test_only_neighbours_subscribe_and_only_the_neighbour_publishes(caplog):
    """Agent 0's PUB lets in agent 1's key, not a stranger's; agent 1's SUB accepts only a
    publisher that proves agent 0's key (not a rogue one bound in its place)."""
    ctx = zmq.Context()
    keys = {i: security.new_keypair() for i in (0, 1)}
    port, rogue_port = _free_port(), _free_port()
    link0 = NeighbourLink(ctx, 0, f"tcp://127.0.0.1:{port}", {1: f"tcp://127.0.0.1:{rogue_port}"}, keys=keys[0],
                          peer_keys={1: keys[1].public})
    rogue = ctx.socket(zmq.PUB)  # binds where agent 0 expects agent 1, with a key of its own
    security.serve(rogue, security.new_keypair(), {"0": keys[0].public}, "rogue")
    rogue.bind(f"tcp://127.0.0.1:{rogue_port}")
    link1 = NeighbourLink(ctx, 1, f"tcp://127.0.0.1:{_free_port()}", {0: f"tcp://127.0.0.1:{port}"}, keys=keys[1],
                          peer_keys={0: keys[0].public})
    spies = []
    for spy_keys in (security.new_keypair(), None):  # a fresh key, and no CURVE
        spy = ctx.socket(zmq.SUB)
        spy.setsockopt(zmq.SUBSCRIBE, b"")
        spy.setsockopt(zmq.LINGER, 0)
        security.connect(spy, spy_keys, keys[0].public, f"tcp://127.0.0.1:{port}")
        spies.append(spy)
    try:
        with caplog.at_level(logging.WARNING, "drima.security"):
            deadline = time.monotonic() + 20
            while 0 not in link1.heard and time.monotonic() < deadline:
                link0.publish_hello()
                rogue.send(protocol.encode(protocol.LINK_HELLO, 1, 0, {}))
                time.sleep(0.02)
                link0.drain()
                link1.drain()
            assert 0 in link1.heard
            for step in range(5):
                link0.publish(step, np.full(K, 1.0, np.float32), 0.5)
                rogue.send(protocol.encode(protocol.SCALARS, 1, step, [protocol.to_bytes(np.zeros(K)), 0.0]))
            time.sleep(0.5)
            assert link1.collect(0, K, 5.0)[0] == [0]  # the neighbour gets the scalars
            for spy in spies:
                assert not spy.poll(200), "a stranger subscribed to agent 0's scalars"
            link0.drain()
            assert link0.stats["recv_msgs"] == 0 and 1 not in link0.heard  # nothing from the rogue
        assert "agent 0's PUB: refused a connection with an unknown CurveZMQ key" in caplog.text
    finally:
        for s in (*spies, rogue):
            s.close(0)
        link0.close()
        link1.close()
        security.term(ctx)


def test_plan_locks_its_folders_and_keys(tmp_path):
    """ipc sockets and secret keys live in a folder only this user can enter; keys are 0600; the
    configs carry public keys and file paths, never a secret key."""
    for transport in ("ipc", "tcp"):
        plan = plan_run(LaunchConfig(topology="ring", n=3, transport=transport, run_dir=str(tmp_path / transport)))
        try:
            assert stat.S_IMODE(os.stat(plan.socket_dir).st_mode) == 0o700
            if transport == "ipc":
                assert not plan.env_server.agent_keys and not plan.agents[0].curve_key_file
                continue
            server = plan.env_server
            secret = security.load_keypair(server.curve_key_file).secret
            assert stat.S_IMODE(os.stat(server.curve_key_file).st_mode) == 0o600
            for a in plan.agents:
                own = security.load_keypair(a.curve_key_file)
                assert server.agent_keys[str(a.agent_id)] == own.public
                assert a.env_server_key == security.load_keypair(server.curve_key_file).public
                assert a.peer_keys == {p: server.agent_keys[p] for p in a.peers}
                assert own.secret not in str(server) and secret not in str(a)
        finally:
            shutil.rmtree(plan.socket_dir)


# -- rendezvous ------------------------------------------------------------------------------------
def two_node_config(tmp_path, rank: int, port: int, **kw) -> LaunchConfig:
    return LaunchConfig(n=4, nodes=2, node_rank=rank, transport="tcp", rendezvous=f"127.0.0.1:{port}",
                        rendezvous_timeout_s=60, run_dir=str(tmp_path / f"node{rank}"), **kw)


def node1_table(cfg: LaunchConfig) -> dict:
    keys = {str(i): security.new_keypair().public for i in (2, 3)}
    return {"env": None, "agents": {str(i): f"tcp://127.0.0.2:{7000 + i}" for i in (2, 3)},
            "keys": {"env": None, "agents": keys}}


def test_join_problems():
    cfg = two_node_config(Path("/tmp"), 0, 1)
    good = {"config": shared_config(cfg), "addresses": node1_table(cfg), "keys": node1_table(cfg)["keys"]}
    assert join_problem(cfg, 1, good) is None
    assert join_problem(cfg, 1, {"config": good["config"]}) == "no agent addresses"
    assert join_problem(cfg, 1, [1, 2]) == "no launch config"
    grabbing = good | {"addresses": {"agents": good["addresses"]["agents"] | {"0": "tcp://10.0.0.9:1"}}}  # node 0's
    assert "a node announces only its own agents" in join_problem(cfg, 1, grabbing)
    three = dataclasses.replace(cfg, nodes=3)  # agents 2 and 3 are node 2's
    assert "a node announces only its own agents" in join_problem(three, 1, good)
    assert "no CurveZMQ public key" in join_problem(cfg, 1, good | {"keys": {"agents": {"2": "x", "3": "y"}}})


def test_a_bad_table_is_a_rendezvous_error_not_a_crash():
    cfg = two_node_config(Path("/tmp"), 1, 1)
    agents = {str(i): f"tcp://h:{i}" for i in range(4)}
    keys = {"env": security.new_keypair().public, "agents": {str(i): security.new_keypair().public for i in range(4)}}
    assert table_problem(cfg, {"env": "tcp://h:9", "agents": agents, "keys": keys}) is None
    assert table_problem(cfg, ["not", "a", "table"]) == "no env server address or agent addresses"
    assert "agents 0..n-1" in table_problem(cfg, {"env": "tcp://h:9", "agents": {"0": "tcp://h:0"}, "keys": keys})
    assert "public key" in table_problem(cfg, {"env": "tcp://h:9", "agents": agents, "keys": {"env": "short"}})


def test_rendezvous_drops_strangers_and_bad_joins_and_goes_on(tmp_path, monkeypatch, caplog):
    """Node 0 waits; a stranger without the run secret (plain, or CURVE with a key of its own), a
    member's JOIN without addresses, one announcing node 0's agents and garbage frames all come
    first: node 0 neither crashes nor ends the run, and the real node 1 then completes it."""
    monkeypatch.setenv(security.RUN_SECRET_ENV, SECRET)
    port = _free_port()
    cfg0, cfg1 = two_node_config(tmp_path, 0, port), two_node_config(tmp_path, 1, port)
    own0 = {"env": "tcp://127.0.0.1:6000", "agents": {"0": "tcp://127.0.0.1:6001", "1": "tcp://127.0.0.1:6002"},
            "keys": {"env": security.new_keypair().public,
                     "agents": {str(i): security.new_keypair().public for i in (0, 1)}}}
    result: dict = {}
    node0 = threading.Thread(target=lambda: result.update(table=_catching(exchange, cfg0, own0)), daemon=True)
    ctx = zmq.Context()
    server, member = security.rendezvous_keys(SECRET.encode())
    try:
        with caplog.at_level(logging.WARNING):
            node0.start()
            join = protocol.encode(protocol.JOIN, 1, 0, {"config": shared_config(cfg1), "addresses": own0})
            other_server, other_member = security.rendezvous_keys(b"another run's secret, 32 bytes")
            for keys, server_key in ((None, ""), (security.new_keypair(), server.public),
                                     (other_member, other_server.public)):
                stranger = ctx.socket(zmq.REQ)
                stranger.setsockopt(zmq.LINGER, 0)
                security.connect(stranger, keys, server_key, f"tcp://127.0.0.1:{port}")
                stranger.send(join)
                assert not stranger.poll(1000)
                stranger.close()
            bad = {"config": shared_config(cfg1)}  # a member's JOIN without addresses (a KeyError before)
            grab = {"config": shared_config(cfg1), "addresses": own0, "keys": own0["keys"]}  # node 0's agents
            for body in (bad, grab):
                req = ctx.socket(zmq.REQ)
                req.setsockopt(zmq.LINGER, 0)
                security.connect(req, member, server.public, f"tcp://127.0.0.1:{port}")
                req.send(protocol.encode(protocol.JOIN, 1, 0, body))
                assert req.poll(10_000), "a bad JOIN was not answered"
                assert "error" in protocol.decode(req.recv()).body
                req.close()
            dealer_ = ctx.socket(zmq.DEALER)
            dealer_.setsockopt(zmq.LINGER, 0)
            security.connect(dealer_, member, server.public, f"tcp://127.0.0.1:{port}")
            dealer_.send_multipart([b"", b"\xc1 not msgpack"])
            dealer_.send_multipart([b"a", b"b", b"c"])
            time.sleep(0.5)
            dealer_.close()
            assert node0.is_alive() and "table" not in result, result
            table1 = exchange(cfg1, node1_table(cfg1))
        node0.join(30)
        assert result["table"] == table1
        assert set(table1["agents"]) == {"0", "1", "2", "3"} and table1["agents"]["0"] == own0["agents"]["0"]
        assert table1["keys"]["agents"]["0"] == own0["keys"]["agents"]["0"]
        assert "rendezvous: refused a connection" in caplog.text  # the strangers
        assert "refused a connection with an unknown CurveZMQ key" in caplog.text
        assert "refused node 1's JOIN: no agent addresses" in caplog.text
        assert "a node announces only its own agents" in caplog.text
    finally:
        ctx.destroy(0)


def _catching(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # the test asserts on it
        return exc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
