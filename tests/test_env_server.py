"""The env server against hand-driven DEALER sockets: the protocol, and bad input it survives."""

import json
import threading

import msgpack
import numpy as np
import zmq

from drima import protocol
from drima.env_server.server import EnvServer, EnvServerConfig

K = 3


def dealer(ctx, addr, ident: bytes):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.connect(addr)
    return s


def recv_non_heartbeat(sock) -> protocol.Message:
    """The next message that is not a HEARTBEAT (the server sends one whenever it sent an agent
    nothing for heartbeat_interval_s, e.g. while it waits action_timeout_s for a bad action)."""
    while (msg := protocol.decode(sock.recv())).kind == protocol.HEARTBEAT:
        pass
    return msg


def test_protocol_and_bad_input(tmp_path):
    addr = f"ipc://{tmp_path}/env"
    cfg = EnvServerConfig(address=addr, env="pd", n_agents=2, steps=6, n_envs=K, run_dir=str(tmp_path / "srv"),
                          log_every=2, action_timeout_s=0.5)
    server = EnvServer(cfg)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=server.run()))
    thread.start()
    ctx = zmq.Context()
    try:
        intruder = dealer(ctx, addr, b"intruder")
        intruder.send(b"\xc1 not msgpack")
        intruder.send(msgpack.packb([protocol.PROTOCOL_VERSION, "hello", 7, 0, {}]))  # unknown agent id
        # without CurveZMQ nothing proves who is who: this HELLO claiming agent 1 is answered, and agent
        # 1's own HELLO below moves its route to its own socket (tests/test_security.py: with CURVE)
        intruder.send(protocol.encode(protocol.HELLO, 1, 0, {}))
        intruder.send_multipart([b"a", b"b", b"c"])  # wrong number of parts
        agents = [dealer(ctx, addr, str(i).encode()) for i in range(2)]
        for i, s in enumerate(agents):
            s.send(protocol.encode(protocol.HELLO, i, 0, {}))
            spec = recv_non_heartbeat(s)
            assert spec.kind == protocol.SPEC
            assert spec.body["n_envs"] == K and spec.body["action"] == {"type": "discrete", "n": 2}
            s.send(protocol.encode(protocol.READY, i, 0, {}))
        rewards = {0: [], 1: []}
        not_executed = {0: [], 1: []}  # the steps whose RESULT says the agent's action was not played
        for step in range(cfg.steps + 1):
            for i, s in enumerate(agents):
                msg = recv_non_heartbeat(s)
                assert msg.kind == protocol.RESULT and msg.step == step
                assert msg.body[3] is (step == cfg.steps)
                res = protocol.decode_result(msg.body, K, spec.body["obs_dim"])
                assert res.executed.all() or not res.executed.any()  # all copies or none
                if not res.executed.all():
                    not_executed[i].append(step - 1)
                if step > 0:
                    rewards[i].append(protocol.floats(msg.body[1]))
                if step == cfg.steps:
                    continue
                act = np.full(K, 0 if i == 0 else 1)  # agent 0 cooperates, agent 1 defects
                if i == 1 and step == 2:  # a malformed action: wrong width; the last one is repeated
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.ones(K + 1), "<i4")]))
                elif i == 1 and step == 3:  # an action for the wrong step
                    s.send(protocol.encode(protocol.ACTION, i, step + 5, [protocol.to_bytes(act, "<i4")]))
                else:
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(act, "<i4")]))
        thread.join(timeout=30)
        assert result.get("code") == 0
        # agent 1's actions of steps 2 and 3 were dropped: its seat played its last action, and it was told
        assert not_executed == {0: [], 1: [2, 3]}
        # (C, D) pays (0, 18) in every copy; each agent received exactly its own K rewards
        np.testing.assert_array_equal(np.concatenate(rewards[0]), np.zeros(K * cfg.steps))
        np.testing.assert_array_equal(np.concatenate(rewards[1]), np.full(K * cfg.steps, 18.0))
        stats = json.loads((tmp_path / "srv" / "stats.json").read_text())
        assert stats["dropped_frames"] >= 5
        assert stats["final"]["joint_action_freq"]["C,D"] == 1.0
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)
