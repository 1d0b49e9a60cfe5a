"""Fencing of adopted agents without namespaces (tests/test_adopt.py runs the whole story across two
hosts): the env server gives a seat to its highest incarnation only and tells the neighbours
where it moved; an older incarnation is told it is superseded, and an agent whose folder belongs
to a later incarnation writes nothing there."""

import threading
import time

import numpy as np
import pytest
import zmq

from drima import protocol
from drima.agent import fence
from drima.agent.config import EXIT_SUPERSEDED, AgentConfig
from drima.env_server.server import EnvServer, EnvServerConfig
from drima.launch.adopt import dead_agents
from drima.launch.plan import LaunchConfig
from drima.launch.validate import ConfigError, validate
from helpers import hand_driven_agents


def next_message(sock, moved: list | None = None) -> protocol.Message:
    """The next message other than a HEARTBEAT (MOVED messages go to `moved`)."""
    while True:
        msg = protocol.decode(sock.recv())
        if msg.kind == protocol.MOVED and moved is not None:
            moved.append(msg.body)
        elif msg.kind != protocol.HEARTBEAT:
            return msg


def act(sock, agent: int, step: int) -> None:
    sock.send(protocol.encode(protocol.ACTION, agent, step, [protocol.to_bytes(np.zeros(1), "<i4")]))


def keep_playing(sock, agent: int, moved: list | None = None) -> protocol.Message | None:
    """Whatever `agent` got within 10 ms; a RESULT is answered with an action. Nothing: a
    heartbeat, so that the server does not take the wait for agent 1's death for its own silence."""
    if not sock.poll(10):
        sock.send(protocol.encode(protocol.HEARTBEAT, agent, 0, {}))
        return None
    msg = next_message(sock, moved)
    if msg.kind == protocol.RESULT:
        act(sock, agent, msg.step)
    return msg


def until_dead(server: EnvServer, a0, moved: list) -> None:
    """Agent 0 plays on until the server declares agent 1 (silent) dead."""
    end = time.monotonic() + 30
    while "dead" not in [e["event"] for e in server.seats.events if e["agent"] == 1]:
        assert time.monotonic() < end, "agent 1 never declared dead"
        keep_playing(a0, 0, moved)


def fenced_rejoin(a0, original, adopter, moved: list) -> None:
    """The adopter plays agent 1's seat; the original's HELLO is answered with STOP, superseded."""
    original.send(protocol.encode(protocol.HELLO, 1, 2, {}))
    got_stop = got_result = False
    end = time.monotonic() + 30
    while not (got_stop and got_result):
        assert time.monotonic() < end, (got_stop, got_result)
        if original.poll(10):  # results from before the cut may still be queued there; none after
            msg = next_message(original)
            if msg.kind == protocol.STOP:
                assert msg.body["superseded"] is True and "incarnation 1" in msg.body["reason"]
                got_stop = True
        msg = keep_playing(adopter, 1)
        got_result = got_result or (msg is not None and msg.kind == protocol.RESULT)
        keep_playing(a0, 0, moved)


def test_the_env_server_plays_a_seat_for_its_highest_incarnation_only(tmp_path):
    addr = f"ipc://{tmp_path}/env"
    cfg = EnvServerConfig(address=addr, env="pd", n_agents=2, steps=100_000, n_envs=1, run_dir=str(tmp_path / "srv"),
                          heartbeat_interval_s=0.25, heartbeat_liveness=2, action_timeout_s=5.0)
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run)
    thread.start()
    ctx = zmq.Context()
    try:
        (a0, original), _ = hand_driven_agents(ctx, addr, 2)
        moved: list[dict] = []
        for step in range(3):  # both play
            for i, s in enumerate((a0, original)):
                assert next_message(s, moved).kind == protocol.RESULT
                act(s, i, step)
        until_dead(server, a0, moved)  # agent 1 goes silent (its host cut off)
        adopter = ctx.socket(zmq.DEALER)
        adopter.setsockopt(zmq.RCVTIMEO, 10000)
        adopter.connect(addr)
        adopter.send(protocol.encode(protocol.HELLO, 1, 2, {"incarnation": 1, "link": "tcp://10.0.0.9:5000"}))
        spec, end = None, time.monotonic() + 30
        while spec is None or spec.kind != protocol.SPEC:  # agent 0 keeps the run going meanwhile
            assert time.monotonic() < end, "the adopter got no SPEC"
            spec = adopter.poll(10) and next_message(adopter) or spec
            keep_playing(a0, 0, moved)
        original.send(protocol.encode(protocol.HEARTBEAT, 1, 2, {}))  # not over a connection of incarnation 1
        adopter.send(protocol.encode(protocol.READY, 1, 2, {}))
        fenced_rejoin(a0, original, adopter, moved)
        assert moved == [{"agent": 1, "incarnation": 1, "address": "tcp://10.0.0.9:5000"}]
        assert server.incarnations == [0, 1]
        end = time.monotonic() + 10  # the server records "rejoined" just after it sent that result
        while (events := [e["event"] for e in server.seats.events if e["agent"] == 1])[-1] != "rejoined" \
                and time.monotonic() < end:
            keep_playing(a0, 0, moved)
        assert events[-3:] == ["dead", "adopted", "rejoined"], events
        assert server.dropped >= 2  # the original's heartbeat and its HELLO
        # a HELLO of agent 0 now learns in its SPEC where agent 1 publishes
        late = ctx.socket(zmq.DEALER)
        late.setsockopt(zmq.RCVTIMEO, 10000)
        late.connect(addr)
        late.send(protocol.encode(protocol.HELLO, 0, 2, {}))
        assert next_message(late).body["moved"] == {"1": [1, "tcp://10.0.0.9:5000"]}
    finally:
        server.stop_requested = True
        thread.join(timeout=30)
        ctx.destroy(0)
    assert not thread.is_alive()


def test_an_agent_whose_folder_belongs_to_a_later_incarnation_writes_nothing(tmp_path):
    from drima.agent.process import AgentProcess  # torch

    folder = tmp_path / "agent_1"
    folder.mkdir()
    assert fence.owner(folder) == 0  # no adoption: incarnation 0 owns it
    assert fence.claim(folder, 1) and not fence.claim(folder, 1)  # one adopter per incarnation
    assert fence.owner(folder) == 1
    cfg = AgentConfig(agent_id=1, env_address=f"ipc://{tmp_path}/env", link_bind=f"ipc://{tmp_path}/a1", peers={},
                      run_dir=str(folder), resume=True, startup_timeout_s=5)
    assert AgentProcess(cfg).run() == EXIT_SUPERSEDED  # restarted on its own node after the adoption
    assert sorted(p.name for p in folder.iterdir()) == ["claim_1", "incarnation"]
    fence.reset(folder)  # a new run (or --resume) in this folder: incarnation 0 again
    assert fence.owner(folder) == 0 and not list(folder.iterdir())


def test_dead_agents_are_those_whose_last_seat_event_is_dead():
    events = [{"event": "dead", "agent": 1}, {"event": "dead", "agent": 2}, {"event": "rejoined", "agent": 2},
              {"event": "late", "agent": 3}, {"event": "dead", "agent": 4}, {"event": "adopted", "agent": 4},
              {"event": "env_server_resumed", "step": 5}, {"event": "dead", "agent": "x"}]
    assert dead_agents(events) == {1}


@pytest.mark.parametrize(("changes", "error"), [
    ({"adopt_after_s": 2.0}, "--adopt-after restarts agents of other nodes: it needs --nodes > 1"),
    ({"adopt_after_s": -1.0, "nodes": 2, "rendezvous": "h:1", "insecure": True}, "--adopt-after -1.0: seconds, >= 0"),
])
def test_adopt_after_is_checked(changes, error):
    with pytest.raises(ConfigError) as exc:
        validate(LaunchConfig(env="pd", n=4, steps=10, **changes))
    assert str(exc.value).startswith(error)
