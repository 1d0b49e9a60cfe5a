"""The built-in tasks end episodes at a time limit by truncation, not termination: MPE's
max_cycles and a battle's episode limit are cuts (the observation carries no time), reported with
the observation the episode ended on, so that every learner bootstraps there; a battle whose side
is destroyed is terminal. (SMAX battles: tests/test_smax.py; the learners: tests/test_truncation.py.)"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import zmq

from drima import protocol
from drima.agent.learners import make_learner
from drima.env_server.envs import AgentEpisodes, make_env
from drima.env_server.server import EnvServer, EnvServerConfig
from drima.env_server.smac_sc2 import SC2VectorEnv
from drima.types import transition
from helpers import hand_driven_agents
from test_smac_sc2 import ATTACK, STOP, FakeStarCraft2Env

torch.set_num_threads(1)


def _still(env) -> list[np.ndarray]:
    return [np.zeros(env.n_envs, np.int32) for _ in range(env.n_agents)]  # discrete no-op


@pytest.mark.parametrize("task, length", [("hunting", 30), ("collection", 50)])
def test_mpe_time_limit_is_a_truncation_with_the_final_observation(task, length):
    env = make_env(task, 3, 2, seed=1, options={"n_foods": 3} if task == "collection" else {})
    longer = make_env(task, 3, 2, seed=1, options={"max_cycles": length + 5} | (
        {"n_foods": 3} if task == "collection" else {}))
    assert isinstance(env, AgentEpisodes)
    env.reset(), longer.reset()
    for t in range(length):
        obs, _, done = env.step(_still(env))
        uncut, _, _ = longer.step(_still(longer))
        ends = env.episode_ends()
        assert not ends.terminated.any()  # MPE has no terminal state
        assert ends.truncated.all() == bool(done.all()) == (t == length - 1)
        assert ends.active.all() and ends.acted.all()
    for i in range(3):  # the episode ended where the uncut one was at that step; the new one starts elsewhere
        np.testing.assert_array_equal(ends.final_obs[i], uncut[i])
        assert not np.allclose(obs[i], uncut[i])
    env.step(_still(env))
    assert not env.episode_ends().truncated.any() and env.episode_ends().final_obs == [None] * 3


def test_collection_result_at_max_cycles_says_truncated_and_a2c_bootstraps_from_its_final_obs(tmp_path):
    """The env server (real ZeroMQ sockets) sends, at step max_cycles, truncated with the final
    observation and terminated 0; an A2C learner fed that RESULT as the agent process feeds it
    targets r + gamma * V(final obs), not r."""
    addr = f"ipc://{tmp_path}/env"
    cut_at = 3
    cfg = EnvServerConfig(address=addr, env="collection", n_agents=3, steps=cut_at + 1, n_envs=4,
                          run_dir=str(tmp_path / "srv"), action_timeout_s=30, startup_timeout_s=60,
                          env_options={"n_foods": 3, "max_cycles": cut_at})
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run)
    thread.start()
    ctx = zmq.Context()
    try:
        socks, specs = hand_driven_agents(ctx, addr, 3)
        dim = specs[0]["obs_dim"]
        seen = []
        for step in range(cfg.steps + 1):
            seen.append([protocol.decode_result(protocol.decode(s.recv()).body, 4, dim) for s in socks])
            if step < cfg.steps:
                for i, s in enumerate(socks):
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.full(4, 1), "<i4")]))
        thread.join(timeout=60)
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)
    before, cut = seen[cut_at - 1][0], seen[cut_at][0]
    assert not seen[cut_at - 1][0].truncated.any() and not before.terminated.any()
    assert cut.truncated.all() and not cut.terminated.any() and cut.final_obs is not None
    assert not np.allclose(cut.next_obs(), cut.obs)  # the final observation, not the new episode's first
    # own velocity (obs[0:2]): the agents were pushing -x when cut; the new episode starts at rest
    assert (cut.final_obs[:, 0] < 0).any() and (cut.obs[:, :2] == 0).all()

    gamma = 0.95
    learner = make_learner("a2c", dim, {"type": "discrete", "n": 5}, {"gamma": gamma, "n_steps": 1}, seed=0)
    with torch.no_grad():
        v = learner.critic(torch.as_tensor(before.obs)).squeeze(-1).numpy()
        v_final = learner.critic(torch.as_tensor(cut.final_obs)).squeeze(-1).numpy()
    loss = learner.update(transition(before.obs, np.full(4, 1, np.int32), cut.reward, cut.next_obs(),
                                     cut.terminated, cut.truncated))["critic_loss"]
    expected = 0.5 * np.mean((cut.reward + gamma * v_final - v) ** 2)
    assert loss == pytest.approx(expected, rel=1e-4)
    assert abs(loss - 0.5 * np.mean((cut.reward - v) ** 2)) > 1e-3 * expected  # what a terminal would give


def test_sc2_episode_limit_is_a_truncation_and_a_won_battle_terminal():
    """The SMAC stand-in (tests/test_smac_sc2.py) ends a battle at t = 8 either way."""
    env = SC2VectorEnv("sc2:fake_3m", 3, 2, seed=0, env_class=FakeStarCraft2Env)
    env.reset()
    for t in range(8):  # copy 0 stands still until the limit; copy 1 kills both enemies by step 8
        target = ATTACK + (1 if env.envs[1].enemies[1].health > 0 else 0)
        acts = [np.array([STOP, target], np.int32), np.array([STOP, target], np.int32), np.full(2, STOP, np.int32)]
        obs_before_step = env._obs.copy()
        _, _, done = env.step(acts)
        ends = env.episode_ends()
        if t < 7:
            assert not done.any() and not ends.truncated.any() and not ends.terminated.any()
    assert done.all()
    assert ends.truncated[:, 0].all() and not ends.terminated[:, 0].any()  # copy 0: cut at the limit
    assert ends.terminated[:, 1].all() and not ends.truncated[:, 1].any()  # copy 1: won, terminal
    # the stand-in's obs is (health, x, y): the final one of copy 0 has ally 2 dead (15 a step)
    assert ends.final_obs[2][0, 0] == 0.0 and obs_before_step[0, 2, 0] == 0.0
    assert ends.final_obs[0][0].tolist() == [1.0, 5.0, 5.0]
