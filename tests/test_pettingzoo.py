"""The PettingZoo adapter (`--env pettingzoo:MODULE[:FACTORY]`) and check_env, on tiny envs
written for the tests (tests/tiny_envs.py) and on real PettingZoo / mpe2 envs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from drima.env_server.check import check_env
from drima.env_server.envs import make_env
from drima.env_server.pettingzoo_env import LocalBlock, PettingZooVectorEnv, WorkerBlock
from helpers import hand_driven_agents, load_summary, run_launch

TINY = Path(__file__).parent / "tiny_envs.py"


def tiny(name: str) -> str:
    return f"pettingzoo:{TINY}:{name}"


def test_heterogeneous_spaces_become_each_agents_own_spec_and_actions_are_decoded():
    env = make_env(tiny("Heterogeneous"), 3, 2)
    specs = [env.agent_spec(i) for i in range(3)]
    assert [s["agent_name"] for s in specs] == ["scout", "tank", "medic"]
    assert [s["obs_dim"] for s in specs] == [6, 4, 5]  # Box (2, 3) flattened; Discrete(5) one-hot
    assert specs[0]["action"] == {"type": "discrete", "n": 3}
    assert specs[1]["action"] == {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    obs = env.reset()
    assert [o.shape for o in obs] == [(2, 6), (2, 4), (2, 5)] and all(o.dtype == np.float32 for o in obs)
    np.testing.assert_array_equal(obs[2], [[1, 0, 0, 0, 0]] * 2)
    # scout's 0..2 are the env's 1..3 (Discrete start 1); tank's [-1, 1] is the Box's [0, 10]
    actions = [np.array([0, 2], np.int32), np.array([[-1, -1], [1, 0]], np.float32), np.array([1, 0], np.int32)]
    _, rewards, done = env.step(actions)
    np.testing.assert_allclose(rewards, [[1, 3], [0, 15], [10, 0]])
    assert not done.any()


def test_truncation_is_not_termination_and_the_final_observation_is_kept():
    env = make_env(tiny("Heterogeneous"), 3, 2, options={"max_cycles": 2})
    env.reset()
    still = [np.zeros(2, np.int32), np.zeros((2, 2), np.float32), np.zeros(2, np.int32)]
    env.step(still)
    obs, _, done = env.step(still)  # the time limit: every copy is cut and reset
    ends = env.episode_ends()
    assert done.all() and ends.truncated.all() and not ends.terminated.any()
    np.testing.assert_array_equal(ends.final_obs[1], np.full((2, 4), 2.0))  # tank saw t = 2 when cut
    np.testing.assert_array_equal(obs[1], np.zeros((2, 4)))  # ... and is sent the new episode's first
    # per step: scout 1 (its action 0 is the env's 1), tank 10 (0 is the middle of [0, 10]^2), medic 0
    assert env.pop_task_metrics() == [{"episode_team_return": 22.0, "episode_length": 2.0}] * 2


def test_agents_that_leave_early_step_on_out_of_the_episode():
    env = make_env(tiny("EarlyExit"), 3, 1)
    env.reset()
    played = []
    for t in range(1, 7):
        obs, rewards, done = env.step([np.zeros(1, np.int32)] * 3)
        ends = env.episode_ends()
        played.append(ends.acted[:, 0].tolist())
        if t == 2:  # a terminates; the others go on
            assert ends.terminated[:, 0].tolist() == [True, False, False] and not done[0]
            assert ends.active[:, 0].tolist() == [False, True, True]
        if t == 3:  # a is out: its reward is 0 and its action was not played (EarlyExit asserts that)
            np.testing.assert_array_equal(rewards[:, 0], [0, 1, 1])
        if t == 5:  # c is cut by the time limit: truncated, with its final observation; the copy resets
            assert ends.truncated[:, 0].tolist() == [False, False, True] and done[0]
            np.testing.assert_array_equal(ends.final_obs[2][0], [5, 2])
            np.testing.assert_array_equal(obs[2][0], [0, 2])
            assert ends.active[:, 0].all()
    assert played == [[True] * 3, [True] * 3, [False, True, True], [False, True, True], [False, False, True],
                      [True] * 3]
    assert env.pop_task_metrics() == [{"episode_team_return": 11.0, "episode_length": 5.0}]


def test_copies_are_seeded_apart():
    env = make_env("pettingzoo:mpe2.simple_spread_v3", 3, 2, seed=5, options={"N": 3})
    obs = env.reset()
    assert not np.allclose(obs[0][0], obs[0][1])
    again = make_env("pettingzoo:mpe2.simple_spread_v3", 3, 2, seed=5, options={"N": 3}).reset()
    np.testing.assert_array_equal(obs[0], again[0])


def test_an_aec_env_is_converted_with_pettingzoos_aec_to_parallel():
    env = make_env("pettingzoo:pettingzoo.classic.rps_v2:env", 2, 2)
    assert env.agent_spec(0)["obs_dim"] == 4 and env.agent_spec(0)["action"] == {"type": "discrete", "n": 3}
    env.reset()
    _, rewards, _ = env.step([np.array([0, 1], np.int32), np.array([1, 1], np.int32)])  # rock-paper, paper-paper
    np.testing.assert_array_equal(rewards, [[-1, 0], [1, 0]])


@pytest.mark.parametrize("spec, options", [
    ("pettingzoo:mpe2.simple_spread_v3", {"N": 3}),
    ("pettingzoo:mpe2.simple_tag_v3", {}),
    ("pettingzoo:mpe2.simple_spread_v3", {"continuous_actions": True}),
    ("pettingzoo:pettingzoo.sisl.pursuit_v5", {"max_cycles": 30}),  # Box (7, 7, 3) observations
    (tiny("Heterogeneous"), {}),
    (tiny("EarlyExit"), {}),
    ("collection", {}),  # the built-in envs keep the contract too
    ("pd", {}),
])
def test_real_envs_pass_check_env(spec, options):
    assert check_env(spec, options, steps=40) == []


def test_check_env_takes_a_factory_from_python():
    from tiny_envs import EarlyExit, not_an_env

    assert check_env(EarlyExit) == []
    assert check_env(not_an_env)[0].endswith("returned dict, not a PettingZoo ParallelEnv")


@pytest.mark.parametrize("factory, expected", [
    ("WrongNames", "step 0: agent 'ghost' is not in possible_agents ['a', 'b', 'c']"),
    ("NaNReward", "step 0: agent 'b''s reward is nan, not a finite number"),
    ("BadObservation", "reset: agent 'c''s observation has 3 values, its space 2"),
    ("SilentExit", "step 1: agent 'a' left env.agents with neither terminated nor truncated set"),
    ("MultiDiscreteActions", "agent 'a' has a MultiDiscrete([2 2]) action space: supported are Discrete and Box"),
])
def test_check_env_reports_each_violation_in_one_line(factory, expected):
    problems = check_env(tiny(factory))
    assert problems and all("\n" not in p for p in problems)
    assert expected in problems[0], problems


@pytest.mark.parametrize("env, n, expected", [
    ("pettingzoo:no_such_module_xyz", None,
     "--env pettingzoo:no_such_module_xyz: no module named 'no_such_module_xyz'"),
    (tiny("not_an_env"), None, "the factory returned dict, not a PettingZoo ParallelEnv"),
    ("pettingzoo:mpe2.simple_spread_v3", 4, "has 3 agents (agent_0, agent_1, agent_2), but --n is 4"),
    (tiny("MultiDiscreteActions"), None, "agent 'a' has a MultiDiscrete([2 2]) action space"),
    (tiny("NaNReward"), None, "breaks the env contract: step 0: agent 'b''s reward is nan"),
])
def test_bad_pettingzoo_envs_stop_the_launcher_with_one_line(tmp_path, env, n, expected):
    args = ["--env", env, "--steps", "10"] + (["--n", str(n)] if n else [])
    proc = run_launch(tmp_path / "run", *args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (tmp_path / "run" / "env_server").exists()  # no process was started


def test_a_pettingzoo_env_needs_its_own_action_spaces(tmp_path):
    proc = run_launch(tmp_path / "run", "--env", tiny("EarlyExit"), "--actions", "continuous", timeout=120)
    assert proc.returncode == 2 and "leave --actions auto" in proc.stderr


@pytest.mark.slow
def test_simple_spread_runs_one_process_per_agent(tmp_path):
    run = tmp_path / "run"
    proc = run_launch(run, "--env", "pettingzoo:mpe2.simple_spread_v3", "--env-options", '{"N": 3}',
                      "--topology", "ring", "--steps", "150", "--envs", "4")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert summary["status"] == "completed" and summary["n_agents"] == 3
    assert [summary["agents"][str(i)]["name"] for i in range(3)] == ["agent_0", "agent_1", "agent_2"]
    assert summary["final"]["episode_length"] == 25.0  # mpe2's max_cycles, by truncation
    assert summary["final"]["episodes"] > 0
    for i in range(3):
        assert summary["agents"][str(i)]["final_reward"] is not None


@pytest.mark.slow
def test_continuous_actions_run_with_ddpg(tmp_path):
    run = tmp_path / "run"
    proc = run_launch(run, "--env", "pettingzoo:mpe2.simple_spread_v3",
                      "--env-options", '{"N": 2, "continuous_actions": true}', "--algo", "ddpg", "--steps", "120",
                      "--envs", "2", "--learner", '{"learning_starts": 32, "batch_size": 16}')
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert summary["status"] == "completed"
    rows = (run / "agent_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [r.split(",")[header.index("critic_loss")] for r in rows[1:]]
    assert any(losses), "DDPG never learned from its continuous actions"


@pytest.mark.slow
def test_agents_that_terminate_on_their_own_are_told_and_learn_only_in_the_episode(tmp_path):
    """EarlyExit: a is in 2 of every 5 steps, b in 4, c in 5; each earns 1 per step in the episode.
    An agent's logged reward is its mean over the copies where it took part, so all three log 1.0;
    the env server's team reward per step is 11 / 5."""
    run = tmp_path / "run"
    proc = run_launch(run, "--env", tiny("EarlyExit"), "--steps", "100", "--envs", "2", "--log-every", "10",
                      "--mode", "dri")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert [summary["agents"][str(i)]["name"] for i in range(3)] == ["a", "b", "c"]
    for i in range(3):
        assert summary["agents"][str(i)]["final_reward"] == pytest.approx(1.0)
    assert summary["final"]["episode_team_return"] == pytest.approx(11.0)
    stats = json.loads((run / "env_server" / "stats.json").read_text())
    assert stats["final"]["episode_length"] == pytest.approx(5.0)


@pytest.mark.slow
def test_agents_of_a_pettingzoo_env_learn(tmp_path):
    """Matching: each agent earns 1 when it plays the target it observes; random play earns 1/3."""
    run = tmp_path / "run"
    proc = run_launch(run, "--env", tiny("Matching"), "--steps", "600", "--envs", "8", "--mode", "ind",
                      "--learner", '{"lr_actor": 0.01}')
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert min(summary["agents"][str(i)]["final_reward"] for i in range(2)) > 0.8


def test_the_server_sends_termination_truncation_and_activity(tmp_path):
    """RESULT frames as an agent reads them (drima.protocol.decode_result) for EarlyExit."""
    import threading

    import zmq

    from drima import protocol
    from drima.env_server.server import EnvServer, EnvServerConfig

    addr = f"ipc://{tmp_path}/env"
    cfg = EnvServerConfig(address=addr, env=tiny("EarlyExit"), n_agents=3, steps=6, n_envs=1,
                          run_dir=str(tmp_path / "srv"), action_timeout_s=5)
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run)
    thread.start()
    ctx = zmq.Context()
    try:
        socks, specs = hand_driven_agents(ctx, addr, 3)
        assert all(spec["obs_dim"] == 2 for spec in specs)
        seen = []
        for step in range(cfg.steps + 1):
            results = [protocol.decode_result(protocol.decode(s.recv()).body, 1, 2) for s in socks]
            seen.append(results)
            if step < cfg.steps:
                for i, s in enumerate(socks):
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.zeros(1), "<i4")]))
        thread.join(timeout=30)
        a, b, c = (list(x) for x in zip(*seen, strict=True))
        assert a[2].terminated[0] and not a[2].truncated[0] and not a[2].active[0]  # a terminated at step 2
        assert a[3].reward[0] == 0.0 and not a[3].active[0]  # out of the episode since
        assert c[5].truncated[0] and not c[5].terminated[0]  # c cut at step 5 ...
        np.testing.assert_array_equal(c[5].next_obs()[0], [5, 2])  # ... with its final observation
        np.testing.assert_array_equal(c[5].obs[0], [0, 2])  # and the new episode's first to act on
        assert all(r.active[0] for r in (a[5], b[5], c[5]))  # everyone is back in the new episode
        # b's neighbour mask for step 3 (sent at 4): a had left, c took part
        near = np.frombuffer(b[4].extras["in_range"], np.uint8).reshape(3, 1)
        assert near[:, 0].tolist() == [0, 1, 1]
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


def test_env_workers_step_the_same_copies_as_one_process():
    """--env-workers 2: the env server steps copies 0-2 itself while a worker process steps 3-4, at
    once; the very same run as one process."""
    spec, options = "pettingzoo:mpe2.simple_spread_v3", {"N": 3, "max_cycles": 4}
    one = PettingZooVectorEnv(spec, 3, 5, seed=3, options=options)
    two = PettingZooVectorEnv(spec, 3, 5, seed=3, options=options, workers=2)
    try:
        assert two.splits[0].tolist() == [0, 1, 2] and len(two.blocks) == 2
        assert isinstance(two.blocks[0], LocalBlock) and isinstance(two.blocks[1], WorkerBlock)
        for a, b in zip(one.reset(), two.reset(), strict=True):
            np.testing.assert_array_equal(a, b)
        rng = np.random.default_rng(0)
        for _ in range(6):  # across an episode end (max_cycles 4): truncation and reset in both
            actions = [rng.integers(0, 5, 5).astype(np.int32) for _ in range(3)]
            (obs1, r1, d1), (obs2, r2, d2) = one.step(actions), two.step(actions)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(d1, d2)
            for a, b in zip(obs1, obs2, strict=True):
                np.testing.assert_array_equal(a, b)
            e1, e2 = one.episode_ends(), two.episode_ends()
            np.testing.assert_array_equal(e1.truncated, e2.truncated)
            for f1, f2 in zip(e1.final_obs, e2.final_obs, strict=True):
                assert (f1 is None) == (f2 is None)
                if f1 is not None:
                    np.testing.assert_array_equal(f1[e1.truncated[0]], f2[e2.truncated[0]])
        assert len(one.pop_task_metrics()) == len(two.pop_task_metrics()) == 5
    finally:
        two.close()
    assert not two.blocks[1].proc.is_alive()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_truncated_copys_final_global_state_is_the_state_it_ended_on(workers):
    """ctde critics bootstrap a cut episode from the state it ended on, not the next episode's.
    mpe2's state() is every agent's observation side by side, so at the time limit (max_cycles 3)
    it must equal the agents' final observations; in the episode, there is no final state."""
    spec, options = "pettingzoo:mpe2.simple_spread_v3", {"N": 3, "max_cycles": 3}
    env = PettingZooVectorEnv(spec, 3, 4, seed=5, options=options, workers=workers)
    try:
        env.reset()
        rng = np.random.default_rng(0)
        for t in range(1, 4):
            env.step([rng.integers(0, 5, 4).astype(np.int32) for _ in range(3)])
            if t < 3:
                assert env.final_global_state() is None
        ends = env.episode_ends()
        assert ends.truncated.all()
        ended_on = np.concatenate([ends.final_obs[i] for i in range(3)], axis=1)
        final, now = env.final_global_state(), env.global_state()
        np.testing.assert_allclose(final, ended_on, rtol=1e-6)
        assert final.shape == now.shape == (4, env.state_dim)
        assert not np.allclose(final, now)  # the copies were reset: today's state is a new episode's
    finally:
        env.close()


def test_a_broken_env_in_a_worker_is_a_one_line_error():
    """Copy 1 (seed 1) is the worker's; only it breaks the contract."""
    with pytest.raises(ValueError, match="agent 'b''s reward is nan"):
        env = PettingZooVectorEnv(tiny("NaNReward"), 3, 2, seed=0, options={"only_seed": 1}, workers=2)
        try:
            env.reset()
            env.step([np.zeros(2, np.int32)] * 3)
        finally:
            env.close()
