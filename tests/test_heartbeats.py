"""Env-link heartbeats, both ways, with real sockets: a silent agent is declared dead by the env
server and its seat plays `missing_action`; a silent env server is declared lost by a real agent
process, which saves a checkpoint and exits with status 4, or (on_env_loss=wait) rejoins."""

import json
import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import zmq

from drima import protocol
from drima.agent.config import AgentConfig
from drima.config import save_config
from drima.env_server.envs import make_env
from drima.env_server.seats import SeatState
from drima.env_server.server import ENV_CALL_WINDOW, EnvServer, EnvServerConfig

K = 3
INTERVAL, LIVENESS = 0.1, 4  # dead after 0.4 s of silence
C, D = 0, 1


def dealer(ctx, addr, ident: bytes):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, ident)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(addr)
    return s


def recv_alive(sock, me: int, timeout_s: float = 10.0) -> protocol.Message:
    """Next non-heartbeat message, heartbeating the server meanwhile (what a real agent does)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if sock.poll(20):
            msg = protocol.decode(sock.recv())
            if msg.kind != protocol.HEARTBEAT:
                return msg
        sock.send(protocol.encode(protocol.HEARTBEAT, me, 0, {}))
    raise AssertionError("nothing from the env server")


def start_server(tmp_path, missing_action: str, steps: int = 8, end_linger_s: float = 0.0):
    cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env", env="pd", n_agents=2, steps=steps, n_envs=K,
                          run_dir=str(tmp_path / "srv"), action_timeout_s=30.0,  # only heartbeats can unblock it
                          heartbeat_interval_s=INTERVAL, heartbeat_liveness=LIVENESS, missing_action=missing_action,
                          end_linger_s=end_linger_s)
    server = EnvServer(cfg)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=server.run()))
    thread.start()
    return cfg, server, thread, result


def join_agents(ctx, addr):
    socks = [dealer(ctx, addr, str(i).encode()) for i in range(2)]
    for i, s in enumerate(socks):
        s.send(protocol.encode(protocol.HELLO, i, 0, {}))
        assert protocol.decode(s.recv()).kind == protocol.SPEC
        s.send(protocol.encode(protocol.READY, i, 0, {}))
    return socks


@pytest.mark.parametrize("missing_action, agent0_reward", [("last", 0.0), ("noop", 10.0), ("remove", 0.0)])
def test_env_server_declares_a_silent_agent_dead_and_steps_on(tmp_path, caplog, missing_action, agent0_reward):
    """Agent 1 defects for 2 steps, then goes silent. The server stops waiting for it after
    ~LIVENESS * INTERVAL (not after action_timeout_s = 30 s) and plays its seat per missing_action."""
    caplog.set_level(logging.INFO, logger="drima.env_server")
    cfg, server, thread, result = start_server(tmp_path, missing_action)
    ctx = zmq.Context()
    try:
        a0, a1 = join_agents(ctx, cfg.address)
        for step in range(2):
            for i, s in enumerate((a0, a1)):
                assert recv_alive(s, i).step == step
                s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.full(K, (C, D)[i]), "<i4")]))
        # agent 1 is now silent; agent 0 keeps cooperating and heartbeating
        rewards, waits = [], []
        for step in range(2, cfg.steps + 1):
            t_sent = time.monotonic()
            msg = recv_alive(a0, 0)
            waits.append(time.monotonic() - t_sent)
            assert msg.kind == protocol.RESULT and msg.step == step
            rewards.append(protocol.floats(msg.body[1]))
            if step < cfg.steps:
                a0.send(protocol.encode(protocol.ACTION, 0, step, [protocol.to_bytes(np.full(K, C), "<i4")]))
        thread.join(timeout=10)
        assert result.get("code") == 0
        # the first wait includes the detection; it ends after the liveness window, long before 30 s
        assert LIVENESS * INTERVAL * 0.9 < waits[1] < LIVENESS * INTERVAL + 0.5, waits
        assert max(waits[2:]) < 0.3, waits  # then agent 1 is not waited for any more
        np.testing.assert_array_equal(rewards[-1], np.full(K, agent0_reward))
        dead = [r.getMessage() for r in caplog.records if "agent 1 silent for" in r.getMessage()]
        assert len(dead) == 1 and "missed heartbeats" in dead[0], dead
        silent_s = float(dead[0].split("silent for ")[1].split(" s")[0])
        assert LIVENESS * INTERVAL <= silent_s < LIVENESS * INTERVAL + 0.3
        stats = json.loads((tmp_path / "srv" / "stats.json").read_text())
        assert [e["event"] for e in stats["agent_events"]] == ["dead"]
        assert ("removing it from the run" in dead[0]) == (missing_action == "remove")
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


def test_an_agent_that_missed_the_end_is_told_the_run_completed(tmp_path, caplog):
    """Agent 1 goes silent (cut off, paused) and the run completes without it. The server stays
    up to end_linger_s: agent 1's next frame (here a HELLO, as from a reconnecting agent) gets a
    STOP that says the run completed, and only then does the server exit."""
    caplog.set_level(logging.INFO, logger="drima.env_server")
    cfg, server, thread, result = start_server(tmp_path, "last", steps=6, end_linger_s=60.0)
    ctx = zmq.Context()
    try:
        a0, a1 = join_agents(ctx, cfg.address)
        for step in range(cfg.steps + 1):  # agent 1 is silent; agent 0 plays to the end
            msg = recv_alive(a0, 0)
            assert msg.kind == protocol.RESULT and msg.step == step
            if step < cfg.steps:
                a0.send(protocol.encode(protocol.ACTION, 0, step, [protocol.to_bytes(np.full(K, C), "<i4")]))
        stats = tmp_path / "srv" / "stats.json"
        for _ in range(100):  # written just after the last result went out
            if stats.exists():
                break
            time.sleep(0.1)
        assert json.loads(stats.read_text())["steps"] == cfg.steps
        thread.join(timeout=1.0)
        assert thread.is_alive(), "the server left before telling agent 1"
        while a1.poll(200):  # what reached agent 1 before it fell silent
            a1.recv()
        a1.send(protocol.encode(protocol.HELLO, 1, 2, {}))
        reply = recv_alive(a1, 1)
        assert reply.kind == protocol.STOP and reply.body["completed"] is True and reply.body["step"] == cfg.steps
        thread.join(timeout=10)
        assert not thread.is_alive() and result.get("code") == 0
        assert any("told agent 1" in r.getMessage() for r in caplog.records)
        events = json.loads((tmp_path / "srv" / "stats.json").read_text())["agent_events"]
        assert [e["event"] for e in events] == ["dead"]  # stats were final before the wait
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


def test_env_server_refuses_a_removed_agent_and_rejoins_a_dead_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="drima.env_server")
    for missing_action, expect in (("remove", protocol.STOP), ("last", protocol.SPEC)):
        run = tmp_path / missing_action
        run.mkdir()
        cfg, server, thread, result = start_server(run, missing_action, steps=200)
        ctx = zmq.Context()
        try:
            a0, a1 = join_agents(ctx, cfg.address)
            a1.close()  # agent 1 dies before its first action
            step = 0
            while not server.seats.in_state(SeatState.DEAD, SeatState.REMOVED):  # agent 0 plays on meanwhile
                assert recv_alive(a0, 0).step == step
                a0.send(protocol.encode(protocol.ACTION, 0, step, [protocol.to_bytes(np.full(K, C), "<i4")]))
                step += 1
            a1 = dealer(ctx, cfg.address, b"1")  # agent 1 restarted
            a1.send(protocol.encode(protocol.HELLO, 1, 0, {}))
            reply = recv_alive(a1, 1)
            assert reply.kind == expect
            if expect == protocol.SPEC:  # READY: the next result carries the current obs and no reward
                a1.send(protocol.encode(protocol.READY, 1, 0, {}))
                first, a0_step = None, -1
                while first is None or a0_step < first.step:  # agent 0 plays on; agent 1 waits for its result
                    for sock, me in ((a0, 0), (a1, 1)):
                        sock.send(protocol.encode(protocol.HEARTBEAT, me, 0, {}))
                        if not sock.poll(10):
                            continue
                        msg = protocol.decode(sock.recv())
                        if msg.kind == protocol.RESULT and me == 0:
                            a0_step = msg.step
                            cooperate = [protocol.to_bytes(np.full(K, C), "<i4")]
                            a0.send(protocol.encode(protocol.ACTION, 0, msg.step, cooperate))
                        elif msg.kind == protocol.RESULT:
                            first = msg
                assert first.kind == protocol.RESULT and first.body[1] == b"" and first.step == a0_step > 0
                # it acts (defects) and is waited for again: agent 0's next reward shows its action
                a1.send(protocol.encode(protocol.ACTION, 1, first.step, [protocol.to_bytes(np.full(K, D), "<i4")]))
                nxt = recv_alive(a0, 0)
                assert nxt.step == first.step + 1
                np.testing.assert_array_equal(protocol.floats(nxt.body[1]), np.zeros(K))  # (C, D) pays 0 to agent 0
                assert protocol.floats(recv_alive(a1, 1).body[1]).tolist() == [18.0] * K  # and agent 1 its reward
        finally:
            server.stop_requested = True
            thread.join(timeout=10)
            ctx.destroy(0)
    logs = caplog.text
    assert "dropped hello from removed agent 1" in logs
    assert "agent 1 is ready: it rejoins at step" in logs


def test_env_server_ends_the_run_when_every_agent_is_gone(tmp_path, caplog):
    """Nobody left to wait for: the server does not race through the steps on substitutes, and
    gives up after startup_timeout_s without any agent acting or rejoining (exit status 3)."""
    caplog.set_level(logging.INFO, logger="drima.env_server")
    cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env", env="pd", n_agents=2, steps=10_000, n_envs=K,
                          run_dir=str(tmp_path / "srv"), action_timeout_s=0.3, startup_timeout_s=1.5,
                          heartbeat_interval_s=INTERVAL, heartbeat_liveness=LIVENESS)
    server = EnvServer(cfg)
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=server.run()))
    thread.start()
    ctx = zmq.Context()
    try:
        for s in join_agents(ctx, cfg.address):
            s.close()  # both agents die before their first action
        t0 = time.monotonic()
        thread.join(timeout=20)
        took = time.monotonic() - t0
        assert result.get("code") == 3
        assert 1.5 < took < 1.5 + LIVENESS * INTERVAL + 1.5, took
        stats = json.loads((tmp_path / "srv" / "stats.json").read_text())
        assert stats["abandoned"] and stats["steps"] < 20  # ~one step per action_timeout_s, not 10,000
        assert "no agent has acted or rejoined" in caplog.text
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


# -- the agent's side: a real agent process against a hand-driven env server ------------------------

def start_agent(tmp_path, **overrides):
    cfg = AgentConfig(agent_id=0, env_address=f"ipc://{tmp_path}/env", link_bind=f"ipc://{tmp_path}/link0",
                      peers={}, run_dir=str(tmp_path / "agent_0"), checkpoint_every=1,
                      **({"heartbeat_interval_s": INTERVAL, "heartbeat_liveness": LIVENESS} | overrides))
    (tmp_path / "agent_0").mkdir(exist_ok=True)
    path = tmp_path / "agent_0" / "config.json"
    save_config(cfg, path)
    log = open(tmp_path / "agent_0" / "log.txt", "ab")
    return cfg, subprocess.Popen([sys.executable, "-m", "drima.agent", "--config", str(path)], stdout=log,
                                 stderr=subprocess.STDOUT)


class FakeEnvServer:
    """A ROUTER socket that speaks the env-server side of the protocol for one agent."""

    def __init__(self, ctx, addr):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(addr)
        spec = make_env("pd", 2, K).agent_spec(0)
        self.spec = spec | {"n_envs": K, "agent_id": 0, "n_agents": 2}
        self.obs = protocol.to_bytes(np.zeros((K, spec["obs_dim"])))
        self.route = b""  # the routing id of the agent's connection (as the env server learns it)

    def recv(self, timeout_s=60.0) -> protocol.Message:
        assert self.sock.poll(int(timeout_s * 1000)), "the agent said nothing"
        self.route, frame = self.sock.recv_multipart()
        return protocol.decode(frame)

    def recv_kind(self, kind, timeout_s=60.0) -> protocol.Message:
        while (msg := self.recv(timeout_s)).kind == protocol.HEARTBEAT:
            pass
        assert msg.kind == kind, msg
        return msg

    def send(self, kind, step, body):
        self.sock.send_multipart([self.route, protocol.encode(kind, protocol.SERVER_ID, step, body)])

    def handshake(self):
        """Every HELLO gets a SPEC over its own connection (a reconnecting agent may have said
        HELLO on sockets it has closed since), until the READY."""
        self.recv_kind(protocol.HELLO)
        while True:
            self.send(protocol.SPEC, 0, self.spec)
            while (msg := self.recv()).kind == protocol.HEARTBEAT:
                pass
            if msg.kind == protocol.READY:
                return
            assert msg.kind == protocol.HELLO, msg

    def result(self, step, reward: bytes, last=False):
        self.send(protocol.RESULT, step, [self.obs, reward, protocol.to_bytes(np.zeros(K)), last, {}])


def play(fake, first_step, n):
    """Results first_step .. first_step+n-1, each answered by an action."""
    for step in range(first_step, first_step + n):
        fake.result(step, b"" if step == first_step else protocol.to_bytes(np.full(K, 2.0)))
        assert fake.recv_kind(protocol.ACTION).step == step


def test_agent_exits_4_with_a_checkpoint_when_the_env_server_goes_silent(tmp_path):
    ctx = zmq.Context()
    fake = FakeEnvServer(ctx, f"ipc://{tmp_path}/env")
    try:
        cfg, agent = start_agent(tmp_path)
        fake.handshake()
        play(fake, 0, 5)
        silent_from = time.monotonic()  # the env server "dies": it sends nothing more
        hb = fake.recv(timeout_s=1.0)  # the agent heartbeats while it waits
        assert hb.kind == protocol.HEARTBEAT
        assert agent.wait(timeout=10) == 4
        took = time.monotonic() - silent_from
        assert took < LIVENESS * INTERVAL + 1.0, took  # the documented bound: liveness * interval + 1 s
        log = (tmp_path / "agent_0" / "log.txt").read_text()
        assert "env server silent for" in log and "missed heartbeats" in log and "exiting with status 4" in log
        ckpt = torch.load(tmp_path / "agent_0" / "checkpoint.pt", weights_only=False)
        assert ckpt["step"] == 4
    finally:
        ctx.destroy(0)


def test_a_restarted_agent_says_hello_with_its_checkpoint_step(tmp_path):
    """The env server restarted after a crash goes on from the furthest step any agent reached,
    which the agents say in their HELLO. An agent restarted from its checkpoint (--restart-failed,
    on_env_loss=exit) must say its checkpoint's step, not 0: else the server may resume behind it
    and the agent learns (and logs) the same steps twice."""
    ctx = zmq.Context()
    fake = FakeEnvServer(ctx, f"ipc://{tmp_path}/env")
    try:
        cfg, agent = start_agent(tmp_path)
        fake.handshake()
        play(fake, 0, 8)
        fake.result(8, protocol.to_bytes(np.full(K, 2.0)), last=True)
        assert agent.wait(timeout=30) == 0
        assert torch.load(tmp_path / "agent_0" / "checkpoint.pt", weights_only=True)["step"] == 8
        cfg, agent = start_agent(tmp_path, resume=True)
        hello = fake.recv_kind(protocol.HELLO)
        assert hello.step == 8
        agent.terminate()
        agent.wait(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
        ctx.destroy(0)


def test_an_agent_waits_for_its_first_result_as_long_as_for_the_start_up(tmp_path):
    """After READY the env server resets every world before the first result, without heartbeats
    (collection with 64 agents x 8 copies took over 2 s on a busy machine, and all 64 agents gave
    the server up at step 0). The first result is waited for startup_timeout_s, not the liveness
    window; from then on silence is judged as before."""
    ctx = zmq.Context()
    fake = FakeEnvServer(ctx, f"ipc://{tmp_path}/env")
    try:
        cfg, agent = start_agent(tmp_path, startup_timeout_s=30.0)
        fake.handshake()
        time.sleep(10 * LIVENESS * INTERVAL)  # ten liveness windows before the first result
        assert agent.poll() is None
        play(fake, 0, 3)
        fake.result(3, protocol.to_bytes(np.full(K, 2.0)), last=True)
        assert agent.wait(timeout=20) == 0
        assert "env server silent" not in (tmp_path / "agent_0" / "log.txt").read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
        ctx.destroy(0)


def test_agent_with_on_env_loss_wait_rejoins_the_env_server(tmp_path):
    ctx = zmq.Context()
    fake = FakeEnvServer(ctx, f"ipc://{tmp_path}/env")
    try:
        cfg, agent = start_agent(tmp_path, on_env_loss="wait", reconnect_timeout_s=20.0)
        fake.handshake()
        play(fake, 0, 5)
        time.sleep(LIVENESS * INTERVAL + 0.5)  # silent long enough to be declared lost
        fake.handshake()  # the agent says HELLO again (on a new socket) and READY
        play(fake, 10, 3)  # rejoined at step 10: the first result has no reward
        fake.result(13, protocol.to_bytes(np.full(K, 2.0)), last=True)
        assert agent.wait(timeout=20) == 0
        log = (tmp_path / "agent_0" / "log.txt").read_text()
        assert "reconnecting for up to 20 s" in log and "reconnected to the env server" in log
        assert torch.load(tmp_path / "agent_0" / "checkpoint.pt", weights_only=False)["step"] == 13
    finally:
        if agent.poll() is None:
            agent.kill()
        ctx.destroy(0)


class SlowSteps:
    """A real env whose reset and one step take `slow_s` (a reset of many worlds on a busy machine)."""

    def __init__(self, env, slow_s: float, slow_step: int):
        self.env, self.slow_s, self.slow_step, self.t = env, slow_s, slow_step, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self):
        time.sleep(self.slow_s)
        return self.env.reset()

    def step(self, actions):
        self.t += 1
        if self.t == self.slow_step:
            time.sleep(self.slow_s)
        return self.env.step(actions)


def test_an_env_server_with_slow_steps_says_so_and_its_agents_wait(tmp_path):
    """Resets of many worlds can outlast the liveness window, and the env server cannot heartbeat
    in the middle of a step. Having timed a slow reset, it sends a HEARTBEAT with busy_s before
    each step; real agent processes then wait out a step 3x longer than their window."""
    cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env", env="pd", n_agents=2, steps=12, n_envs=K,
                          run_dir=str(tmp_path / "srv"), heartbeat_interval_s=INTERVAL, heartbeat_liveness=LIVENESS,
                          startup_timeout_s=60)
    slow_s = 3 * LIVENESS * INTERVAL  # 1.2 s, three liveness windows
    server = EnvServer(cfg, env=SlowSteps(make_env("pd", 2, K), slow_s, slow_step=6))
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=server.run()))
    thread.start()
    try:
        agents = []
        for i in range(2):
            acfg = AgentConfig(agent_id=i, env_address=cfg.address, link_bind=f"ipc://{tmp_path}/link{i}",
                               peers={str(1 - i): f"ipc://{tmp_path}/link{1 - i}"}, run_dir=str(tmp_path / f"a{i}"),
                               heartbeat_interval_s=INTERVAL, heartbeat_liveness=LIVENESS)
            (tmp_path / f"a{i}").mkdir()
            save_config(acfg, tmp_path / f"a{i}" / "config.json")
            agents.append(subprocess.Popen([sys.executable, "-m", "drima.agent", "--config",
                                            str(tmp_path / f"a{i}" / "config.json")],
                                           stdout=open(tmp_path / f"a{i}" / "log.txt", "wb"), stderr=subprocess.STDOUT))
        assert [a.wait(timeout=120) for a in agents] == [0, 0]
        thread.join(timeout=30)
        assert result.get("code") == 0 and server.slowest_env_s >= slow_s
        for i in range(2):
            assert "env server silent" not in (tmp_path / f"a{i}" / "log.txt").read_text()
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        for a in agents:
            if a.poll() is None:
                a.kill()


def test_a_paused_agent_does_not_take_its_own_pause_for_the_env_servers_silence(tmp_path):
    """SIGSTOP an agent that waits for a result, for longer than the liveness window (a straggler,
    a swapped-out host). The env server answers 0.5 s after the agent is continued. Before, the
    poll the agent was stopped in timed out on waking, the silence looked 3 s long, and the agent
    declared the env server lost (exit 4). Now an agent that has not looked at its env link for a
    liveness window knows it was paused, and gives the server a new window, as the env server does
    for its own pauses."""
    import os
    import signal

    ctx = zmq.Context()
    fake = FakeEnvServer(ctx, f"ipc://{tmp_path}/env")
    try:
        cfg, agent = start_agent(tmp_path, heartbeat_interval_s=0.25)  # a 1 s liveness window
        fake.handshake()
        play(fake, 0, 3)  # the agent now waits for result 3
        os.kill(agent.pid, signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(agent.pid, signal.SIGCONT)
        time.sleep(0.5)
        fake.result(3, protocol.to_bytes(np.full(K, 2.0)))
        assert fake.recv_kind(protocol.ACTION, timeout_s=20).step == 3
        fake.result(4, protocol.to_bytes(np.full(K, 2.0)), last=True)
        assert agent.wait(timeout=20) == 0
        log = (tmp_path / "agent_0" / "log.txt").read_text()
        assert "env server silent" not in log
    finally:
        if agent.poll() is None:
            agent.kill()
        ctx.destroy(0)


def test_a_one_off_slow_env_call_is_forgotten(tmp_path):
    """JAX compiling SMAX's first step, or SC2 starting its games, must not stretch the agents'
    patience for the rest of the run: busy_s comes from the recent env calls only."""
    cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env", env="pd", n_agents=2, steps=10, n_envs=K,
                          run_dir=str(tmp_path / "srv"))
    server = EnvServer(cfg, env=SlowSteps(make_env("pd", 2, K), 0.3, slow_step=0))  # only the reset is slow
    try:
        server._timed(server.env.reset)
        assert server.slowest_env_s >= 0.3
        actions = [np.zeros(K, np.int32)] * 2
        for _ in range(ENV_CALL_WINDOW):
            server._timed(server.env.step, actions)
        assert server.slowest_env_s < 0.1
    finally:
        server.sock.close(0)
        server.ctx.term()
