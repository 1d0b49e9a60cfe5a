"""VMAS scenarios (`--env vmas:SCENARIO`), on real VMAS: specs and shapes, episode ends (time
limit = truncation with final observations, the scenario's own done = termination), actions
reaching the simulator, positions for range topologies, check_env, and real runs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from drima.env_server.check import check_env
from drima.env_server.envs import default_action_type, default_agents, has_positions, make_env
from helpers import hand_driven_agents, load_summary, run_launch, without_package


def still(env) -> list[np.ndarray]:
    """Every agent's do-nothing action (discrete 0 is VMAS's stay)."""
    k = env.n_envs
    return [np.zeros(k, np.int32) if a["type"] == "discrete" else np.zeros((k, a["dim"]), np.float32)
            for a in env.actions]


def test_specs_and_shapes_of_a_heterogeneous_scenario():
    """simple_speaker_listener: the speaker sees 3 values and moves and talks, the listener sees 11."""
    env = make_env("vmas:simple_speaker_listener", 2, 3, 0, "discrete")
    specs = [env.agent_spec(i) for i in range(2)]
    assert [s["agent_name"] for s in specs] == ["speaker_0", "listener_0"]
    assert [s["obs_dim"] for s in specs] == [3, 11]
    assert [s["action"] for s in specs] == [{"type": "discrete", "n": 27}, {"type": "discrete", "n": 9}]
    assert specs[0]["episode_length"] == 100 and specs[0]["env"] == "vmas:simple_speaker_listener"
    obs = env.reset()
    assert [o.shape for o in obs] == [(3, 3), (3, 11)] and all(o.dtype == np.float32 for o in obs)
    obs, rewards, done = env.step([np.array([0, 5, 26], np.int32), np.array([0, 4, 8], np.int32)])
    assert [o.shape for o in obs] == [(3, 3), (3, 11)] and all(o.dtype == np.float32 for o in obs)
    assert rewards.shape == (2, 3) and rewards.dtype == np.float32 and np.isfinite(rewards).all()
    assert done.shape == (3,) and not done.any()
    cont = make_env("vmas:simple_speaker_listener", 2, 3, 0, "continuous")
    assert [cont.agent_spec(i)["action"] for i in range(2)] == [
        {"type": "continuous", "dim": 5, "low": -1.0, "high": 1.0},  # 2 forces and 3 communication channels
        {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}]


def test_n_agents_comes_from_the_options_or_from_n():
    assert default_agents("vmas:navigation", {}) == 4
    assert default_agents("vmas:navigation", {"n_agents": 3}) == 3
    env = make_env("vmas:navigation", 6, 2)  # --n sets the size of a scenario that takes n_agents
    assert env.n_agents == 6 and len(env.reset()) == 6
    with pytest.raises(ValueError, match=r"has 3 agents .* but --n is 5"):
        make_env("vmas:football", 5, 2)  # football takes no n_agents
    with pytest.raises(ValueError, match=r"has 3 agents .* but --n is 4"):
        make_env("vmas:navigation", 4, 2, options={"n_agents": 3})


def test_the_time_limit_truncates_with_the_final_observation():
    """Agents that stay still see the same observation all episode: the final observation of a
    truncated copy is the first one again, and the obs sent with done is a new episode's."""
    env = make_env("vmas:navigation", 2, 3, 0, "discrete", {"max_steps": 3, "collisions": False})
    first = env.reset()
    for t in range(1, 4):
        obs, _, done = env.step(still(env))
        ends = env.episode_ends()
        if t < 3:
            assert not done.any() and not ends.truncated.any() and ends.final_obs == [None, None]
            np.testing.assert_allclose(obs[0], first[0], atol=1e-6)
    assert done.tolist() == [1.0, 1.0, 1.0]
    assert ends.truncated.all() and not ends.terminated.any() and ends.active.all() and ends.acted.all()
    for i in range(2):
        np.testing.assert_allclose(ends.final_obs[i], first[i], atol=1e-6)
        assert not np.allclose(obs[i], first[i])  # new episodes: new positions
    assert env.pop_task_metrics() == [{"episode_team_return": 0.0, "episode_length": 3.0}] * 3
    obs, _, done = env.step(still(env))
    assert not done.any() and not env.episode_ends().truncated.any()


def test_the_scenarios_own_end_is_termination_and_resets_only_that_copy():
    """navigation ends a copy when every agent is on its goal: put copy 0's agents there."""
    env = make_env("vmas:navigation", 2, 3, 0, "discrete", {"max_steps": 50, "collisions": False})
    before = env.reset()
    for agent in env.env.agents:
        agent.set_pos(agent.goal.state.pos[0], batch_index=0)
    obs, rewards, done = env.step(still(env))
    ends = env.episode_ends()
    assert done.tolist() == [1.0, 0.0, 0.0]
    assert ends.terminated[:, 0].all() and not ends.terminated[:, 1:].any() and not ends.truncated.any()
    assert ends.final_obs == [None, None]  # terminal: nothing to bootstrap from
    assert not np.allclose(obs[0][0], before[0][0])  # copy 0: a new episode's first observation
    np.testing.assert_allclose(obs[0][1:], before[0][1:], atol=1e-6)  # the others go on, unmoved
    [episode] = env.pop_task_metrics()
    assert episode["episode_length"] == 1.0 and episode["episode_team_return"] == pytest.approx(rewards[:, 0].sum())
    for _ in range(3):  # the copy that was reset counts its own steps
        env.step(still(env))
    assert env.env.steps.tolist() == [3, 4, 4]


def positions(env) -> np.ndarray:
    return np.stack([a.state.pos.numpy() for a in env.env.agents])  # (n, K, 2)


@pytest.mark.parametrize("action_type, push, moved_axis, sign", [
    ("discrete", np.array([6, 6], np.int32), 0, 1),  # VMAS: 6 = (+x, stay)
    ("discrete", np.array([1, 1], np.int32), 1, -1),  # 1 = (stay, -y)
    ("continuous", np.array([[1.0, 0.0]] * 2, np.float32), 0, 1),
    ("continuous", np.array([[0.0, -0.6]] * 2, np.float32), 1, -1),
])
def test_actions_move_the_agent_in_the_commanded_direction(action_type, push, moved_axis, sign):
    env = make_env("vmas:navigation", 2, 2, 0, action_type, {"collisions": False})
    env.reset()
    start = positions(env)
    for _ in range(5):
        actions = still(env)
        actions[0] = push
        env.step(actions)
    delta = positions(env) - start
    assert (sign * delta[0, :, moved_axis] > 0.05).all(), delta
    np.testing.assert_allclose(delta[0, :, 1 - moved_axis], 0, atol=1e-5)
    np.testing.assert_allclose(delta[1], 0, atol=1e-6)  # agent 1 stayed


def test_continuous_actions_are_rescaled_to_each_agents_bounds():
    # wind_flocking's forces are in [-0.5, 0.5]
    env = make_env("vmas:wind_flocking", 2, 3, 0, "continuous")
    sent = env._to_vmas(0, np.array([[1, -1], [0.5, 0], [-2, 0]], np.float32)).numpy()
    np.testing.assert_allclose(sent, [[0.5, -0.5], [0.25, 0], [-0.5, 0]])  # -2: clipped to -1 first
    # the speaker's communication channels are in [0, 1]: VMAS gets -1 -> 0, 0 -> 0.5, 1 -> 1
    env = make_env("vmas:simple_speaker_listener", 2, 2, 0, "continuous")
    env.reset()
    env.step([np.array([[-1, 1, -1, 0, 1]] * 2, np.float32), np.zeros((2, 2), np.float32)])
    speaker = env.env.agents[0]
    np.testing.assert_allclose(speaker.action.u.numpy(), [[-1, 1]] * 2)
    np.testing.assert_allclose(speaker.action.c.numpy(), [[0, 0.5, 1]] * 2)


def test_positions_give_range_neighbourhoods():
    assert has_positions("vmas:navigation")
    assert default_action_type("vmas:navigation", "ddpg") == "continuous"
    assert default_action_type("vmas:navigation", "a2c") == "discrete"
    env = make_env("vmas:navigation", 4, 5, 0, "discrete")
    env.reset()
    env.step(still(env))
    pos = positions(env)
    dist = np.linalg.norm(pos[:, None] - pos[None, :], axis=-1)  # (n, n, K)
    near = env.in_range(0.8)
    assert near.shape == (4, 4, 5) and near.dtype == bool
    np.testing.assert_array_equal(near, (dist <= 0.8) & ~np.eye(4, dtype=bool)[:, :, None])
    assert near.any() and not near.all()  # this seed has both near and far pairs


@pytest.mark.parametrize("spec, options", [
    ("vmas:navigation", {}),
    ("vmas:simple_speaker_listener", {}),
    ("vmas:balance", {"max_steps": 20}),
])
def test_real_scenarios_pass_check_env(spec, options):
    assert check_env(spec, options, steps=60, n_envs=3) == []


@pytest.mark.parametrize("spec, options, expected", [
    ("vmas:nope", {}, "no VMAS scenario 'nope'"),
    ("vmas:", {}, "expected vmas:SCENARIO"),
    ("vmas:navigation", {"n_agent": 3}, "takes no env option n_agent"),
    ("vmas:navigation", {"max_steps": 0}, "max_steps must be an integer >= 1"),
    ("vmas:navigation", {"seed": 1}, "set by the runtime"),
])
def test_bad_specs_and_options_are_one_line_errors(spec, options, expected):
    with pytest.raises(ValueError, match=expected):
        make_env(spec, 4, 2, options=options)


def test_the_launcher_says_in_one_line_that_vmas_is_missing(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "drima.launch", "--env", "vmas:navigation", "--steps", "10",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          env=without_package(tmp_path, "vmas"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'drima-launch: error: --env vmas:navigation needs the vmas package: pip install -e ".[vmas]"']


def test_the_server_sends_truncation_with_the_final_observation(tmp_path):
    """RESULT frames as an agent reads them, for agents that stay still under a 3-step limit."""
    import threading

    import zmq

    from drima import protocol
    from drima.env_server.server import EnvServer, EnvServerConfig

    addr = f"ipc://{tmp_path}/env"
    cfg = EnvServerConfig(address=addr, env="vmas:navigation", n_agents=2, steps=4, n_envs=2,
                          run_dir=str(tmp_path / "srv"), action_timeout_s=5, startup_timeout_s=30, range_radius=10.0,
                          env_options={"max_steps": 3, "collisions": False})
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run)
    thread.start()
    ctx = zmq.Context()
    try:
        socks, specs = hand_driven_agents(ctx, addr, 2)
        assert all(spec["obs_dim"] == 6 for spec in specs)  # no lidar without collisions
        seen = []
        for step in range(cfg.steps + 1):
            seen.append([protocol.decode_result(protocol.decode(s.recv()).body, 2, 6) for s in socks])
            if step < cfg.steps:
                for i, s in enumerate(socks):
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.zeros(2), "<i4")]))
        thread.join(timeout=30)
        first, cut = seen[0][1], seen[3][1]
        assert not seen[2][1].truncated.any() and cut.truncated.all() and not cut.terminated.any()
        np.testing.assert_allclose(cut.next_obs(), first.obs, atol=1e-6)  # the observation it ended on
        assert not np.allclose(cut.obs, first.obs)  # ... and the new episode's first to act on
        near = np.frombuffer(cut.extras["in_range"], np.uint8).reshape(2, 2)  # range:10: everyone is near
        assert near.tolist() == [[1, 1], [0, 0]]
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


@pytest.mark.slow
def test_a_vmas_run_has_one_process_per_agent(tmp_path):
    run = tmp_path / "run"
    proc = run_launch(run, "--env", "vmas:navigation", "--n", "3", "--steps", "100", "--envs", "8",
                      "--env-options", '{"max_steps": 25}', "--log-every", "25")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = load_summary(run)
    assert summary["status"] == "completed" and summary["n_agents"] == 3
    assert [summary["agents"][str(i)]["name"] for i in range(3)] == ["agent_0", "agent_1", "agent_2"]
    assert summary["final"]["episodes"] == 8 and summary["final"]["episode_length"] == 25.0
    assert summary["env_steps"] == 800


@pytest.mark.slow
def test_ddpg_acts_with_continuous_forces_among_neighbours_in_range(tmp_path):
    run = tmp_path / "run"
    proc = run_launch(run, "--env", "vmas:navigation", "--n", "3", "--algo", "ddpg", "--topology", "range:0.5",
                      "--steps", "120", "--envs", "4", "--learner", '{"learning_starts": 32, "batch_size": 16}')
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert load_summary(run)["status"] == "completed"
    rows = (run / "agent_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert any(r.split(",")[header.index("critic_loss")] for r in rows[1:]), "DDPG never learned"
