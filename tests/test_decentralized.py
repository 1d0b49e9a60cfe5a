"""Proof that the env server carries only an agent's own reward to it: every frame of agent
0's env link passes through a recording proxy, and none holds a reward of agent 1, while agent
0 still learns from agent 1's reward over its neighbour link."""

import csv
import json
import threading

import numpy as np
import pytest
import zmq

from drima import protocol
from drima.launch.plan import LaunchConfig, plan_run
from drima.launch.supervisor import spawn_agent, spawn_env_server, stop_all

pytestmark = pytest.mark.slow

# Agent 0's and agent 1's rewards come from disjoint sets, so a value identifies its owner.
GAME = {"actions": [["C", "D"], ["C", "D"]],
        "payoffs": {"C,C": [1.25, 101.5], "C,D": [2.25, 102.5], "D,C": [3.25, 103.5], "D,D": [4.25, 104.5]}}
OWN = {1.25, 2.25, 3.25, 4.25}
OTHERS = {101.5, 102.5, 103.5, 104.5}


class RecordingProxy(threading.Thread):
    """Sits on one agent's env link: agent <-> ROUTER [proxy] DEALER <-> env server."""

    def __init__(self, ctx, front_addr, env_addr, agent_id):
        super().__init__(daemon=True)
        self.front = ctx.socket(zmq.ROUTER)
        self.front.bind(front_addr)
        self.back = ctx.socket(zmq.DEALER)
        self.back.setsockopt(zmq.IDENTITY, str(agent_id).encode())
        self.back.connect(env_addr)
        self.down: list[bytes] = []  # env server -> agent
        self.up: list[bytes] = []
        self.stop = threading.Event()

    def run(self):
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        ident = None
        while not self.stop.is_set():
            for sock, _ in poller.poll(50):
                if sock is self.front:
                    ident, frame = self.front.recv_multipart()
                    self.up.append(frame)
                    self.back.send(frame)
                else:
                    frame = self.back.recv()
                    self.down.append(frame)
                    self.front.send_multipart([ident, frame])
        self.front.close(0)
        self.back.close(0)


def test_env_link_carries_only_own_reward(tmp_path):
    game_file = tmp_path / "tagged.json"
    game_file.write_text(json.dumps(GAME))
    cfg = LaunchConfig(env=f"payoff:{game_file}", n=2, steps=150, envs=4, mode="dri", run_dir=str(tmp_path / "run"))
    plan = plan_run(cfg)
    ctx = zmq.Context()
    proxy = RecordingProxy(ctx, f"ipc://{plan.socket_dir}/proxy-0", plan.env_server.address, 0)
    proxy.start()
    plan.agents[0].env_address = f"ipc://{plan.socket_dir}/proxy-0"
    children = [spawn_env_server(plan.env_server), *(spawn_agent(a) for a in plan.agents)]
    try:
        assert children[0].proc.wait(timeout=120) == 0
        for c in children[1:]:
            assert c.proc.wait(timeout=60) == 0
    finally:
        stop_all(children)
        proxy.stop.set()
        proxy.join()
        ctx.term()

    results = [m for m in map(protocol.decode, proxy.down) if m.kind == protocol.RESULT]
    assert len(results) == cfg.steps + 1
    seen = set()
    for msg in results[1:]:
        rewards = protocol.floats(msg.body[1])
        assert rewards.shape == (cfg.envs,)
        seen |= set(rewards.tolist())
    assert seen and seen <= OWN
    # No encoding of any of agent 1's rewards appears anywhere in the bytes agent 0 received.
    raw = b"".join(proxy.down)
    for value in OTHERS:
        for dtype in ("<f4", "<f8", ">f4", ">f8"):
            assert np.array(value, dtype).tobytes() not in raw
    # ... yet agent 0 heard agent 1 on its neighbour link, once per step.
    stats = json.loads((tmp_path / "run" / "agent_0" / "stats.json").read_text())
    assert stats["link"]["recv_msgs"] >= cfg.steps
    # and its mu tracks its own reward only (between 1.25 and 4.25, far from agent 1's ~100)
    rows = list(csv.DictReader(open(tmp_path / "run" / "agent_0" / "metrics.csv")))
    assert 0 < float(rows[-1]["mu"]) < 4.25
