"""MPE scenarios in the runtime: the vectorised env adapter, range neighbourhoods, and short real
multi-process runs of hunting and collection (ctde: tests/test_ctde.py)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from drima.env_server.envs import make_env
from drima.launch.defaults import RUN_DEFAULTS
from drima.launch.render import render_run
from helpers import drima_processes_for, load_summary, run_launch


def _place(env, k, positions):
    for agent, pos in zip(env.worlds[k].agents, positions, strict=True):
        agent.state.p_pos = np.array(pos, float)
        agent.state.p_vel = np.zeros(2)


def _still(env):
    return [np.zeros(env.n_envs, np.int32) for _ in range(env.n_agents)]  # discrete no-op


def test_in_range_follows_the_agents_as_they_move():
    env = make_env("collection", 3, 2, seed=0, options={"n_foods": 3})
    env.reset()
    _place(env, 0, [(0, 0), (0.5, 0), (-0.9, -0.9)])
    _place(env, 1, [(0, 0), (0.9, 0.9), (0.1, 0)])
    env.step(_still(env))
    near = env.in_range(0.6)  # (n, n, K)
    assert near[:, :, 0].astype(int).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert near[:, :, 1].astype(int).tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]
    _place(env, 0, [(0, 0), (0.5, 0), (0.1, 0.1)])  # agent 2 walks in, copy 1 unchanged
    _place(env, 1, [(0, 0), (0.9, 0.9), (0.1, 0)])
    env.step(_still(env))
    assert env.in_range(0.6)[:, :, 0].astype(int).tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]
    assert env.in_range(0.6)[:, :, 1].astype(int).tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]
    assert not env.in_range(0.01).any()


def test_episodes_end_together_and_report_task_metrics():
    env = make_env("hunting", 3, 4, seed=1)
    env.reset()
    dones = [env.step(_still(env))[2] for _ in range(60)]
    assert [i for i, d in enumerate(dones) if d.any()] == [29, 59]
    assert all(d.all() for d in dones if d.any())
    episodes = env.pop_task_metrics()
    assert len(episodes) == 2 and env.pop_task_metrics() == []
    assert set(episodes[0]) == {"hits", "interceptor_collisions", "min_prey_distance", "episode_team_return"}


def test_continuous_actions_move_agents_the_way_they_push():
    env = make_env("collection", 2, 1, seed=0, action_type="continuous", options={"n_foods": 2})
    env.reset()
    _place(env, 0, [(-0.5, 0), (0.5, 0)])
    for _ in range(5):
        env.step([np.array([[1.0, 0.0]], np.float32), np.array([[0.0, -1.0]], np.float32)])
    a, b = (agent.state.p_pos for agent in env.worlds[0].agents)
    assert a[0] > -0.3 and abs(a[1]) < 1e-9
    assert b[1] < -0.2 and abs(b[0] - 0.5) < 1e-9


def test_wrong_agent_count_and_unknown_option_are_clear_errors():
    with pytest.raises(ValueError, match="has 3 learning agents, but --n is 4"):
        make_env("hunting", 4, 2)
    with pytest.raises(ValueError, match="unexpected keyword argument 'speed'"):
        make_env("hunting", 3, 2, options={"speed": 2})


# -- real processes ------------------------------------------------------------------------------

def _agent_rows(run_dir, i):
    return list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))


@pytest.mark.slow
def test_hunting_with_a_range_topology_runs_and_neighbour_sets_follow_positions(tmp_path):
    run_dir = tmp_path / "hunt"
    res = run_launch(run_dir, "--env", "hunting", "--algo", "ddpg", "--mode", "dri", "--topology", "range:0.6",
                     "--steps", "300", "--log-every", "10", "--render")
    assert res.returncode == 0, res.stderr
    summary = load_summary(run_dir)
    assert summary["n_agents"] == 3 and summary["steps"] == 300
    assert summary["final"]["episodes"] >= 1
    assert {"hits", "interceptor_collisions", "episode_team_return"} <= summary["final"].keys()
    peers = np.array([float(r["n_peers"]) for i in range(3) for r in _agent_rows(run_dir, i)])
    # the mean number of in-range neighbours changes as the predators move: neither always 0 nor always 2
    assert 0 < peers.mean() < 2 and peers.std() > 0
    stats = json.loads((run_dir / "agent_0" / "stats.json").read_text())
    # out-of-range peers did not even send their scalars: fewer than both peers at every step came in
    assert stats["link"]["ignored_out_of_range"] == 0 and 0 < stats["link"]["recv_scalars"] < 0.95 * 2 * 300
    config = json.loads((run_dir / "env_server" / "config.json").read_text())
    assert config["range_radius"] == 0.6 and config["action_type"] == "continuous"
    assert not drima_processes_for(str(run_dir))
    with Image.open(run_dir / "episode.gif") as gif:  # --render: one 30-step episode with the learned policies
        assert gif.n_frames > 20 and gif.size == (360, 360)  # (PIL merges identical frames)


def test_render_refuses_a_run_without_checkpoints(tmp_path):
    (tmp_path / "launch.json").write_text(json.dumps({"env": "hunting", "n": 3}))
    with pytest.raises(ValueError, match="checkpoint.pt: missing"):
        render_run(tmp_path, tmp_path / "x.gif")


@pytest.mark.slow
def test_collection_quick_start_command_runs_and_writes_its_files(tmp_path):
    """The README's quick start, shortened, with its output: the env's default learner, and a last
    line that says what was learned (first 10 % of steps against the last 10 %)."""
    run_dir = tmp_path / "collect"
    res = subprocess.run([sys.executable, "-m", "drima.launch", "--topology", "ring", "--n", "6", "--env",
                          "collection", "--steps", "500", "--log-every", "25", "--run-dir", str(run_dir)],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["n_agents"] == 6
    assert summary["algo"] == RUN_DEFAULTS["collection"].algo
    first, final = summary["first"], summary["final"]
    learned = res.stdout.splitlines()[-1:]  # the last line of the output
    assert learned == [f"learned: team reward per step {first['mean_team_reward']:.3f} over the first 10 % of "
                       f"steps -> {final['mean_team_reward']:.3f} over the last 10 %; group reward per episode "
                       f"{first['episode_team_return']:.1f} -> {final['episode_team_return']:.1f}"], res.stdout
    assert {"foods_occupied", "type_matches", "episode_team_return"} <= summary["final"].keys()
    assert (run_dir / "learning_curves.png").exists()
    for i in range(6):
        assert int(_agent_rows(run_dir, i)[-1]["step"]) == 500
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
