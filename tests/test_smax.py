"""SMAX (jaxmarl) behind the env server: sizes without JAX, the reward split per mode, a battle
placed by hand (observations, action masks, sight neighbourhoods, rewards), per-copy resets, and
short real multi-process runs."""

import csv
import importlib.util
import json

import numpy as np
import pytest

from drima.env_server.smax import MAPS, battle_rewards, static_spec, team_reward
from helpers import drima_processes_for, load_summary, run_launch

needs_jaxmarl = pytest.mark.skipif(importlib.util.find_spec("jaxmarl") is None,
                                   reason='the smax extra is not installed: pip install -e ".[smax]"')


@needs_jaxmarl
def test_map_table_and_sizes_match_jaxmarl():
    from jaxmarl.environments.smax import HeuristicEnemySMAX, map_name_to_scenario
    from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO

    assert set(MAPS) == set(MAP_NAME_TO_SCENARIO)
    for name in ("3m", "2s3z", "5m_vs_6m", "6h_vs_8z"):
        env = HeuristicEnemySMAX(scenario=map_name_to_scenario(name))
        spec = static_spec(f"smax:{name}")
        assert (spec["n_allies"], MAPS[name][1]) == (env.num_allies, env.num_enemies)
        assert (spec["obs_dim"], spec["n_actions"], spec["state_dim"]) == (env.obs_size, env.num_ally_actions,
                                                                          env.state_size)


@needs_jaxmarl
def test_env_options_health_coef_won_bonus_and_jaxmarls_own():
    from drima.env_server.smax import SMAXVectorEnv

    env = SMAXVectorEnv("smax:3m", 3, 2, options={"health_coef": 0.25, "won_bonus": 2.0, "max_steps": 50})
    assert (env.health_coef, env.won_bonus, env.episode_limit) == (0.25, 2.0, 50)
    with pytest.raises(ValueError, match="smax:3m.*no_such_option"):
        SMAXVectorEnv("smax:3m", 3, 2, options={"no_such_option": 1})


def test_reward_split_per_mode():
    """g = mean enemy damage + won bonus for all; ind/dri add the own damage, ctde the allies' mean."""
    ally_before = np.array([[1.0, 1.0, 0.5]])
    ally_after = np.array([[1.0, 0.6, 0.0]])  # ally 1 lost 0.4, ally 2 died (lost 0.5)
    enemy_before, enemy_after = np.array([[1.0, 0.3]]), np.array([[0.8, 0.0]])  # damage 0.2 + 0.3
    r = battle_rewards(ally_before, ally_after, enemy_before, enemy_after, np.array([False]), 0.5, 1.0)
    g = (0.2 + 0.3) / 2
    np.testing.assert_allclose(r[:, 0], [g, g - 0.5 * 0.4, g - 0.5 * 0.5], atol=1e-6)  # ind, dri
    np.testing.assert_allclose(team_reward(r), [g - 0.5 * (0.4 + 0.5) / 3], atol=1e-6)  # ctde
    won = battle_rewards(ally_before, ally_before, enemy_before, enemy_after, np.array([True]), 0.5, 1.0)
    np.testing.assert_allclose(won[:, 0], [g + 1.0] * 3, rtol=1e-6)
    healed = battle_rewards(ally_after, ally_before, enemy_after, enemy_before, np.array([False]), 0.5, 1.0)
    assert (healed == 0).all()  # regrowing shields earn nothing


@pytest.fixture(scope="module")
def env():
    from drima.env_server.envs import make_env

    return make_env("smax:3m", 3, 2, seed=0, final_state=True)  # compiles once (cached on disk afterwards)


def _place(env, health, positions, cooldowns):
    import jax.numpy as jnp

    def edit(s):
        return s.replace(unit_positions=jnp.asarray(positions, jnp.float32),
                         unit_health=jnp.asarray(health, jnp.float32),
                         unit_alive=jnp.asarray(np.asarray(health) > 0),
                         unit_weapon_cooldowns=jnp.asarray(cooldowns, jnp.float32))
    return env.set_battles(edit)


# allies 0-2, enemies 3-5 (enemy 2 dead); marines see 9 and shoot at 5
POSITIONS = [[10, 16], [10, 24], [25, 5], [14, 16], [10, 28.5], [20, 10]]
HEALTH = [45, 45, 45, 45, 45, 0]
COOLDOWNS = [0, 0, 0, 5, 0, 0]  # enemy 0 cannot fire this step, enemy 1 can (at ally 1)
STOP, ATTACK_0 = 4, 5


@needs_jaxmarl
def test_a_battle_placed_by_hand(env):
    health = np.array([HEALTH, HEALTH])
    health[1, 2] = 0  # copy 1: ally 2 is dead
    obs = _place(env, health, [POSITIONS] * 2, [COOLDOWNS] * 2)
    avail = env.avail_actions()
    # ally 0 may attack enemy 0 (4 away) only; ally 1 enemy 1 (4.5 away); ally 2 nobody; dead: stop only
    assert avail[0][0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert avail[1][0].tolist() == [1, 1, 1, 1, 1, 0, 1, 0]
    assert avail[2][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert avail[2][1].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    assert (env.idle_actions() == STOP).all()  # what the env server plays for an absent unit (noop)
    # ally 0 sees ally 1 (8 away) and enemy 0, not ally 2 (18.6), enemy 1 (12.5) or the dead enemy 2
    seen = (obs[0][0][:65].reshape(5, 13) != 0).any(1)
    assert seen.tolist() == [True, False, True, False, False]
    assert obs[0][0][65] == 1.0  # own health fraction
    assert not obs[2][1].any()  # a dead unit observes nothing

    _, rewards, done = env.step([np.full(2, ATTACK_0, np.int32), np.full(2, STOP, np.int32),
                                 np.full(2, STOP, np.int32)])
    assert not done.any()
    g = 9 / 45 / 3  # one marine shot (9 of 45) at enemy 0, over 3 enemies
    np.testing.assert_allclose(rewards, [[g, g], [g - 0.5 * 9 / 45] * 2, [g, g]], rtol=1e-5)  # enemy 1 shot ally 1
    np.testing.assert_allclose(env.team_reward(rewards), [g - 0.5 * 9 / 45 / 3] * 2, rtol=1e-5)
    near = env.in_range(None).astype(int)  # (i, j, copy) by sight range 9: allies 0 and 1 only
    assert near[:, :, 0].tolist() == near[:, :, 1].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    assert env.in_range(20.0)[:, :, 0].astype(int).tolist() == [[0, 1, 1], [1, 0, 0], [1, 0, 0]]
    assert env.in_range(20.0)[:, :, 1].astype(int).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]  # dead: nobody's
    assert env.global_state().shape == (2, 72)


@needs_jaxmarl
def test_battles_end_and_reset_per_copy(env):
    health = np.array([HEALTH, HEALTH])
    health[0, 3:] = 0  # copy 0: every enemy is already dead, the battle is won at the next step
    _place(env, health, [POSITIONS] * 2, [COOLDOWNS] * 2)
    env.pop_task_metrics()
    obs, rewards, done = env.step([np.full(2, STOP, np.int32)] * 3)
    assert done.tolist() == [1.0, 0.0]
    assert env.final_global_state() is None  # a won battle is terminal: nothing to bootstrap from
    np.testing.assert_allclose(rewards[:, 0], [1.0] * 3)  # the won bonus, no damage left to deal
    assert (obs[0][0][65], obs[0][1][65]) == (1.0, 1.0)  # copy 0 starts a new battle; copy 1 goes on
    assert env.avail_actions()[0][0][5:].sum() == 0  # new battle: enemies out of range at the start
    [battle] = env.pop_task_metrics()
    assert battle == {"won": 1.0, "episode_team_return": pytest.approx(3.0), "allies_alive": 3.0,
                      "enemies_alive": 0.0, "episode_length": 1.0}


@needs_jaxmarl
def test_the_episode_limit_is_a_truncation_and_a_won_battle_terminal(env):
    """Copy 0 is won at the next step (terminal); copy 1 is at jaxmarl's max_steps (its step
    counter, checked before the step adds 1) with both sides alive: cut, with the observation it
    ended on, not the new battle's first."""
    import jax.numpy as jnp

    health = np.array([HEALTH, HEALTH])
    health[0, 3:] = 0
    _place(env, health, [POSITIONS] * 2, [COOLDOWNS] * 2)
    at_limit = jnp.array([0, env.episode_limit], jnp.int32)
    env._states = env._states.replace(state=env._states.state.replace(step=at_limit))
    obs, _, done = env.step([np.full(2, STOP, np.int32)] * 3)
    ends = env.episode_ends()
    assert done.tolist() == [1.0, 1.0]
    assert ends.terminated[:, 0].all() and not ends.truncated[:, 0].any()
    assert ends.truncated[:, 1].all() and not ends.terminated[:, 1].any()
    final = ends.final_obs[1][1]  # ally 1 in copy 1, hit by enemy 1 during the step (9 of 45)
    assert final[65] == pytest.approx(36 / 45) and obs[1][1][65] == 1.0  # the new battle starts at full health
    state, ended_on = env.global_state(), env.final_global_state()  # ctde critics bootstrap the cut from it
    np.testing.assert_array_equal(ended_on[0], state[0])  # copy 0 ended in a terminal state: not read
    assert not np.allclose(ended_on[1], state[1])  # copy 1: the battle it was cut in, not the new one
    env.pop_task_metrics()


@needs_jaxmarl
def test_the_in_process_reference_loop_plays_battles_in_ctde():
    """The yardstick loop gives PPO the masks and, in ctde, the global state, as the server does."""
    from drima.reference import run_reference

    out = run_reference("smax:3m", "ppo", "ctde", "range:sight", 3, 40, 0, n_envs=2,
                        learner_overrides={"n_steps": 20, "epochs": 1})
    assert out["env_steps_per_s"] > 0 and 0.0 <= out["won"] <= 1.0 and out["episode_length"] > 0


# -- real processes ----------------------------------------------------------------------------------

def _rows(path):
    return list(csv.DictReader(open(path)))


@needs_jaxmarl
@pytest.mark.slow
def test_smax_3m_dri_run_with_sight_neighbourhoods(tmp_path):
    run_dir = tmp_path / "smax"
    res = run_launch(run_dir, "--env", "smax:3m", "--algo", "ppo", "--mode", "dri", "--topology", "range:sight",
                     "--steps", "120", "--envs", "4", "--log-every", "20", "--learner", '{"n_steps": 40, "epochs": 2}',
                     timeout=400)
    assert res.returncode == 0, res.stderr
    summary = load_summary(run_dir)
    assert summary["status"] == "completed" and summary["n_agents"] == 3 and summary["steps"] == 120
    assert {"won", "episode_team_return", "allies_alive", "enemies_alive"} <= summary["final"].keys()
    config = json.loads((run_dir / "env_server" / "config.json").read_text())
    assert config["range_sight"] and not config["share_team_reward"]
    peers = np.array([float(r["n_peers"]) for i in range(3) for r in _rows(run_dir / f"agent_{i}" / "metrics.csv")])
    assert 0 < peers.mean() < 2  # neighbours come and go as units move and die
    losses = [r["actor_loss"] for r in _rows(run_dir / "agent_0" / "metrics.csv") if r["actor_loss"]]
    assert len(losses) >= 2  # PPO updated (every 40 steps)
    for i in range(3):
        assert (run_dir / f"agent_{i}" / "checkpoint.pt").exists()
    assert (run_dir / "learning_curves.png").exists()
    assert any(r["won"] for r in _rows(run_dir / "env_server" / "metrics.csv"))  # battles ended and were counted
    assert not drima_processes_for(str(run_dir))


@needs_jaxmarl
@pytest.mark.slow
def test_smax_ctde_agents_get_the_team_reward_and_the_global_state(tmp_path):
    run_dir = tmp_path / "ctde"
    res = run_launch(run_dir, "--env", "smax:3m", "--algo", "ppo", "--mode", "ctde", "--steps", "60", "--envs", "2",
                     "--log-every", "20", "--learner", '{"n_steps": 20, "epochs": 1}', timeout=400)
    assert res.returncode == 0, res.stderr
    import torch

    ckpt = torch.load(run_dir / "agent_0" / "checkpoint.pt", weights_only=False)
    assert ckpt["learner"]["critic"]["base.0.weight"].shape == (72,)  # the critic reads the 72-d world state
    assert ckpt["learner"]["actor"]["base.0.weight"].shape == (75,)
    stats = json.loads((run_dir / "env_server" / "stats.json").read_text())
    per_step = stats["env_link_bytes_sent_per_agent_step"][0]
    assert per_step > 2 * (72 + 75) * 4  # obs and state of 2 copies go to every agent, every step
