"""ctde as the paper's -Ctde baseline: the env server sends the team reward (MPE: the mean), the
global state and every agent's played actions; A2C's and PPO's critics read the state (MAPPO),
DDPG's the state and the joint actions (MADDPG); real runs of both on collection."""

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from drima import protocol
from drima.agent.learners import make_learner
from drima.env_server.envs import make_env, team_reward
from drima.env_server.server import EnvServer, EnvServerConfig
from drima.launch.plan import LaunchConfig
from drima.launch.validate import ConfigError, validate
from drima.reference import run_reference
from drima.types import StepInfo, transition
from helpers import load_summary, run_launch
from test_env_server import dealer, recv_non_heartbeat

K = 2


def test_mpe_global_state_is_every_agents_observation_and_team_reward_the_mean():
    env = make_env("collection", 3, K, seed=0, options={"n_foods": 3, "max_cycles": 2})
    obs = env.reset()
    np.testing.assert_array_equal(env.global_state(), np.concatenate(obs, axis=1))
    assert env.state_dim == 3 * obs[0].shape[1] == env.global_state().shape[1]
    moves = [np.full(K, a, np.int32) for a in (1, 2, 3)]
    _, rewards, _ = env.step(moves)
    np.testing.assert_allclose(team_reward(env, rewards), rewards.mean(0))
    assert env.final_global_state() is None  # nothing was cut
    obs, rewards, done = env.step(moves)  # the time limit: every copy is cut and reset
    assert done.all()
    ends = env.episode_ends()
    np.testing.assert_array_equal(env.final_global_state(), np.concatenate(ends.final_obs, axis=1))
    np.testing.assert_array_equal(env.global_state(), np.concatenate(obs, axis=1))  # the new episodes'


def _drive(tmp_path, ctde: bool, steps: int = 4):
    """A real env server on collection (3 agents, 2-step episodes), three hand-driven DEALER agents
    that always play actions 1, 2, 3: their SPECs and every RESULT they got, decoded."""
    addr = f"ipc://{tmp_path}/env"
    cfg = EnvServerConfig(address=addr, env="collection", n_agents=3, steps=steps, n_envs=K,
                          run_dir=str(tmp_path / "srv"), env_options={"n_foods": 3, "max_cycles": 2},
                          share_team_reward=ctde)
    server = EnvServer(cfg)
    thread = threading.Thread(target=server.run)
    thread.start()
    ctx = zmq.Context()
    try:
        agents = [dealer(ctx, addr, str(i).encode()) for i in range(3)]
        specs = []
        for i, s in enumerate(agents):
            s.send(protocol.encode(protocol.HELLO, i, 0, {}))
            specs.append(recv_non_heartbeat(s).body)
            s.send(protocol.encode(protocol.READY, i, 0, {}))
        results = []
        for step in range(steps + 1):
            row = []
            for i, s in enumerate(agents):
                msg = recv_non_heartbeat(s)
                spec = specs[i]
                row.append(protocol.decode_result(msg.body, K, spec["obs_dim"], 5, spec.get("state_dim", 0),
                                                  spec.get("joint_action_dim", 0)))
                if step < steps:
                    s.send(protocol.encode(protocol.ACTION, i, step, [protocol.to_bytes(np.full(K, i + 1), "<i4")]))
            results.append(row)
        thread.join(timeout=30)
        return specs, results
    finally:
        server.stop_requested = True
        thread.join(timeout=10)
        ctx.destroy(0)


def test_env_server_sends_global_state_joint_actions_and_mean_team_reward_in_ctde(tmp_path):
    specs, results = _drive(tmp_path, ctde=True)
    obs_dim = specs[0]["obs_dim"]
    assert [(s["state_dim"], s["joint_action_dim"], s["own_action_at"]) for s in specs] == \
        [(3 * obs_dim, 15, 0), (3 * obs_dim, 15, 5), (3 * obs_dim, 15, 10)]
    played = np.concatenate([np.eye(5)[[a] * K] for a in (1, 2, 3)], axis=1)  # one-hot, agent after agent
    for step, row in enumerate(results):
        every_obs = np.concatenate([r.obs for r in row], axis=1)
        for r in row:  # every agent gets the same state, built from every agent's own observation
            np.testing.assert_array_equal(r.state, every_obs)
            if step == 0:
                assert r.joint_actions is None and "team" not in r.extras
                continue
            np.testing.assert_array_equal(r.joint_actions, played)
            np.testing.assert_allclose(protocol.floats(r.extras["team"]), np.mean([x.reward for x in row], 0),
                                       rtol=1e-6)
        cut = step in (2, 4)  # 2-step episodes: truncated, with the state they ended on
        assert all(r.truncated.all() == cut for r in row)
        if cut:
            final = np.concatenate([r.final_obs for r in row], axis=1)
            np.testing.assert_array_equal(row[0].final_state, final)
            np.testing.assert_array_equal(row[0].next_info().state, final)
            assert not np.array_equal(row[0].info().state, final)  # to act on: the new episode's


def test_env_server_sends_no_state_or_joint_actions_outside_ctde(tmp_path):
    specs, results = _drive(tmp_path, ctde=False, steps=2)
    assert "state_dim" not in specs[0] and "joint_action_dim" not in specs[0]
    extras = {name for row in results for r in row for name in r.extras}
    assert not extras & {"state", "final_state", "joint_actions", "team"}


def test_ctde_without_a_global_state_is_a_one_line_error(tmp_path):
    class Stateless:  # a VectorEnv with no global_state (HasGlobalState)
        n_agents, n_envs = 2, 1

        def agent_spec(self, agent):
            return {"obs_dim": 1, "action": {"type": "discrete", "n": 2}}

    cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env", env="stateless", n_agents=2, steps=1, n_envs=1,
                          run_dir=str(tmp_path / "srv"), share_team_reward=True)
    with pytest.raises(ValueError, match="--mode ctde and --global-state need a global state .* --env stateless "
                                         "has none"):
        EnvServer(cfg, env=Stateless())
    for extra in ({"mode": "ctde"}, {"mode": "dri", "global_state": True}):
        with pytest.raises(ConfigError, match="--mode ctde and --global-state need a global state"):
            validate(LaunchConfig(env="pettingzoo:tiny_envs:Matching", algo="a2c", n=2, steps=10,
                                  run_dir=str(tmp_path / "run"), **extra))
    with pytest.raises(ConfigError, match="--global-state: dqn has no critic"):  # it would be sent for nothing
        validate(LaunchConfig(env="collection", algo="dqn", global_state=True, run_dir=str(tmp_path / "run")))


def _first_layer(net: torch.nn.Module) -> int:
    return next(m for m in net.modules() if isinstance(m, torch.nn.Linear)).in_features


def test_ctde_critics_read_the_global_state_and_the_joint_actions():
    ctde = {"joint_action_dim": 6, "own_action_at": 2}  # 3 agents with 2-d forces; this one is agent 1
    a2c = make_learner("a2c", 10, {"type": "discrete", "n": 5}, {}, 0, state_dim=30, env_spec=ctde)
    assert (_first_layer(a2c.actor), _first_layer(a2c.critic)) == (10, 30)
    assert _first_layer(make_learner("a2c", 10, {"type": "discrete", "n": 5}, {}, 0).critic) == 10
    cont = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    ddpg = make_learner("ddpg", 10, cont, {}, 0, state_dim=30, env_spec=ctde)
    assert (_first_layer(ddpg.actor), _first_layer(ddpg.critic)) == (10, 36)
    assert _first_layer(make_learner("ddpg", 10, cont, {}, 0).critic) == 12
    ppo = make_learner("ppo", 10, {"type": "discrete", "n": 5}, {}, 0, state_dim=30, env_spec=ctde)
    assert _first_layer(ppo.critic) == 30
    with pytest.raises(ValueError, match="A2C critic takes the global state"):
        a2c.update(transition(np.zeros((K, 10), np.float32), np.zeros(K, np.int32), np.zeros(K), np.zeros((K, 10)),
                              np.zeros(K)))


def test_ddpg_ctde_learns_each_step_once_the_others_next_actions_have_come():
    """A step enters the replay buffer one step late, with the joint actions played at t+1 as the
    next ones (where the episode was cut: those of t)."""
    cont = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    ddpg = make_learner("ddpg", 3, cont, {"learning_starts": 100}, 0, state_dim=4,
                        env_spec={"joint_action_dim": 4, "own_action_at": 0})
    joints = [np.full((K, 4), float(t), np.float32) for t in range(4)]
    cut = [np.array([False, False]), np.array([False, True]), np.array([False, False]), np.array([False, False])]
    for t in range(4):
        info = StepInfo(state=np.full((K, 4), t, np.float32))
        nxt = StepInfo(state=np.full((K, 4), t + 1, np.float32), joint_actions=joints[t])
        ddpg.update(transition(np.zeros((K, 3), np.float32), np.zeros((K, 2), np.float32), np.full(K, t),
                               np.zeros((K, 3), np.float32), np.zeros(K), truncated=cut[t], info=info, next_info=nxt))
        assert ddpg.buffer.size == K * t
    extra = ddpg.buffer.extras
    np.testing.assert_array_equal(ddpg.buffer.signal[:6], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(extra["state"][:6, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(extra["joint"][:6, 0], [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(extra["next_joint"][:6, 0], [1, 1, 2, 1, 3, 3])  # copy 1 was cut at t = 1


def test_ppo_a2c_and_ddpg_run_ctde_on_mpe_in_process():
    """The reference loop builds learners from the env's spec as the agent processes do: the state
    path works for PPO (its critic unchanged since SMAX), A2C and DDPG on an MPE env."""
    for algo, options in (("ppo", {"n_steps": 10}), ("a2c", {}), ("ddpg", {"learning_starts": 32})):
        out = run_reference("collection", algo, "ctde", "ring", 3, 30, 0, n_envs=2, learner_overrides=options,
                            env_options={"n_foods": 3})
        assert np.isfinite(out["mean_team_reward"])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ddpg", "a2c"])
def test_collection_ctde_runs_with_centralised_critics(tmp_path, algo):
    """drima-launch --env collection --n 3 --mode ctde --algo ALGO --steps 200 completes; each agent's
    saved critic takes the global state (and, DDPG, every agent's action), and drima-render (--render)
    loads it; mu tracks the team reward,
    the mean over agents (the env server's team_reward column is the sum). With distance terms only,
    every reward is negative, so the sum of 3 is far from the mean."""
    run_dir = tmp_path / algo
    res = run_launch(run_dir, "--env", "collection", "--n", "3", "--mode", "ctde", "--algo", algo, "--steps", "200",
                     "--log-every", "20", "--mu-step-size", "0.2", "--render", "--env-options",
                     '{"occupy_reward": 0.0, "type_match_bonus": 0.0}')
    assert res.returncode == 0, res.stderr
    assert load_summary(run_dir)["status"] == "completed"
    assert (run_dir / "episode.gif").exists()  # drima-render rebuilt the centralised critics to load them
    env_rows = list(csv.DictReader(open(run_dir / "env_server" / "metrics.csv")))
    team_sum = np.mean([float(r["team_reward"]) for r in env_rows[-3:]])
    for i in range(3):
        state = torch.load(run_dir / f"agent_{i}" / "checkpoint.pt", weights_only=True)["learner"]
        first = next(v for k, v in state["critic"].items() if k.endswith("weight"))
        obs_dim = state["actor"][next(k for k in state["actor"] if k.endswith("weight"))].shape[1]
        assert first.shape[1] == 3 * obs_dim + (6 if algo == "ddpg" else 0)
        rows = list(csv.DictReader(open(run_dir / f"agent_{i}" / "metrics.csv")))
        assert float(rows[-1]["n_peers"]) == 0  # no neighbour links in ctde
        mu = np.mean([float(r["mu"]) for r in rows[-3:]])
        assert abs(mu - team_sum / 3) < 0.25 * abs(mu - team_sum), (mu, team_sum)


LEARNERS = Path(__file__).parent / "tiny_learners.py"


@pytest.mark.parametrize("actions, ahead", [("continuous", "--act-ahead"), ("discrete", "--no-act-ahead")])
def test_every_piece_of_a_ctde_transition_belongs_to_the_same_step(tmp_path, actions, ahead):
    """Real agent processes (Recorder learners, which save every Transition) on collection with
    3-step episodes, acting ahead and not: in each update, the global state at obs holds this
    agent's obs in its own slot, the one at next_obs its next_obs (the final one where the episode
    was cut), the joint actions are every agent's actions of that same step, and update t+1 starts
    where update t ended (the new episode's first state where t was cut)."""
    n, k, steps, cycles = 3, 2, 10, 3
    proc = run_launch(tmp_path / "run", "--env", "collection", "--n", str(n), "--steps", str(steps), "--envs", str(k),
                      "--mode", "ctde", "--algo", f"{LEARNERS}:Recorder", "--actions", actions,
                      "--learner", json.dumps({"log_dir": str(tmp_path)}), "--log-every", "5", ahead,
                      "--env-options", json.dumps({"n_foods": 3, "max_cycles": cycles}))
    assert proc.returncode == 0, proc.stderr
    rec = [[dict(np.load(tmp_path / f"agent_{i}_{t}.npz")) for t in range(steps)] for i in range(n)]
    assert not (tmp_path / f"agent_0_{steps}.npz").exists()
    obs_dim = rec[0][0]["obs"].shape[1]
    width = 2 if actions == "continuous" else 5
    for t in range(steps):
        played = np.concatenate([r[t]["actions"].reshape(k, -1) if actions == "continuous"
                                 else np.eye(5, dtype=np.float32)[r[t]["actions"]] for r in rec], axis=1)
        for i in range(n):
            b = rec[i][t]
            own = slice(i * obs_dim, (i + 1) * obs_dim)
            np.testing.assert_array_equal(b["info_state"][:, own], b["obs"])
            np.testing.assert_array_equal(b["next_info_state"][:, own], b["next_obs"])
            np.testing.assert_allclose(b["next_info_joint_actions"], played)  # a_1..a_n of step t, own at i
            np.testing.assert_array_equal(b["next_info_joint_actions"][:, i * width:(i + 1) * width],
                                          played[:, i * width:(i + 1) * width])
            assert b["truncated"].all() == ((t + 1) % cycles == 0) and not b["terminated"].any()
            np.testing.assert_array_equal(b["info_state"], rec[0][t]["info_state"])  # one state for all
            np.testing.assert_allclose(b["signal"], rec[0][t]["signal"])  # one team reward for all (mu alike)
            if t + 1 < steps:
                after = rec[i][t + 1]
                if b["truncated"].any():  # a new episode: its first state, not the one this one ended on
                    assert not np.array_equal(after["info_state"], b["next_info_state"])
                else:
                    np.testing.assert_array_equal(after["info_state"], b["next_info_state"])
                    np.testing.assert_array_equal(after["obs"], b["next_obs"])


def test_ddpg_ctde_target_scores_the_next_state_with_the_others_next_actions_and_its_own_target_action():
    """MADDPG's target y = s + gamma (1 - d) Q'(x', a'_1..pi'(o'_i)..a'_n): the critic target sees
    the next global state, the others' next actions from the buffer, and in this agent's own slot
    (here agent 1 of 3, actions 2-d) the target actor's action at its own next observation."""
    cont = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
    ddpg = make_learner("ddpg", 3, cont, {"gamma": 0.5}, 0, state_dim=4,
                        env_spec={"joint_action_dim": 6, "own_action_at": 2})
    seen = []

    def critic_target(z: np.ndarray) -> np.ndarray:  # the target networks run in numpy (no gradient)
        seen.append(z)
        return z.sum(-1, keepdims=True)

    ddpg.critic_target_forward = critic_target
    ddpg.actor_target_forward = lambda o: o[:, :2]  # pi'(o') = tanh(o'[:2])
    o2 = np.array([[0.1, 0.2, 9.0], [0.3, 0.4, 9.0]], np.float32)
    x2 = np.arange(8.0, dtype=np.float32).reshape(2, 4)
    a2 = np.arange(12.0, dtype=np.float32).reshape(2, 6) / 10
    s, d = np.array([1.0, 2.0], np.float32), np.array([0.0, 1.0], np.float32)
    target = ddpg._targets(o2, s, d, x2, a2)
    own = np.tanh(o2[:, :2])
    expected_in = np.concatenate([x2, a2[:, :2], own, a2[:, 4:]], -1)
    np.testing.assert_allclose(seen[0], expected_in, rtol=1e-6)
    np.testing.assert_allclose(target, s + 0.5 * (1 - d) * expected_in.sum(-1), rtol=1e-6)


def test_global_state_gives_an_own_reward_learner_the_state_and_joint_actions(tmp_path):
    """--global-state in ind mode (real agent processes, Recorder learners): every update carries
    the global state (this agent's obs in its own slot) and the step's joint actions, as in ctde,
    but the signal is each agent's own reward, not one team reward; the summary says so."""
    n, k, steps = 3, 2, 6
    proc = run_launch(tmp_path / "run", "--env", "collection", "--n", str(n), "--steps", str(steps), "--envs", str(k),
                      "--mode", "ind", "--global-state", "--algo", f"{LEARNERS}:Recorder",
                      "--learner", json.dumps({"log_dir": str(tmp_path)}), "--log-every", "3",
                      "--env-options", json.dumps({"n_foods": 3, "max_cycles": 4}))
    assert proc.returncode == 0, proc.stderr
    rec = [[dict(np.load(tmp_path / f"agent_{i}_{t}.npz")) for t in range(steps)] for i in range(n)]
    obs_dim = rec[0][0]["obs"].shape[1]
    for t in range(steps):
        for i in range(n):
            b = rec[i][t]
            np.testing.assert_array_equal(b["info_state"][:, i * obs_dim:(i + 1) * obs_dim], b["obs"])
            assert b["next_info_joint_actions"].shape == (k, n * 5)
    signals = np.array([[rec[i][t]["signal"] for t in range(steps)] for i in range(n)])  # (n, steps, K)
    assert not np.allclose(signals[0], signals[1]) or not np.allclose(signals[1], signals[2])  # own rewards differ
    assert load_summary(tmp_path / "run")["global_state"] is True
