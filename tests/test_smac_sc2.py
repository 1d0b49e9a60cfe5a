"""The StarCraft II (SMAC) adapter against a stand-in for smac.env.StarCraft2Env: StarCraft II
cannot run here. The stand-in has the methods and unit tables the adapter uses and, like SMAC,
rejects an unavailable action with an assertion."""

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from drima.env_server.smac_sc2 import SC2VectorEnv, starcraft2_env_class

N_ALLIES, N_ENEMIES = 3, 2
NO_OP, STOP, MOVE_N, ATTACK = 0, 1, 2, 6


def _unit(x, y, health, shield=0.0):
    return SimpleNamespace(pos=SimpleNamespace(x=x, y=y), health=health, health_max=health, shield=shield,
                           shield_max=shield)


class FakeStarCraft2Env:
    """3 marines against a zealot (50 health + 50 shield) and a marine. An attack action
    (6 + j) deals 10 to enemy j, shield first; each step the enemy marine deals 15 to ally 2.
    Ally 1 starts 12 away from ally 0; ally 2 starts 3 away from ally 0."""

    def __init__(self, map_name, seed=None, **kwargs):
        assert map_name == "fake_3m"
        self.kwargs, self.closed = kwargs, False
        self.reset()

    def get_env_info(self):
        return {"n_agents": N_ALLIES, "n_actions": ATTACK + N_ENEMIES, "state_shape": 5, "obs_shape": 3,
                "episode_limit": 8}

    def reset(self):
        self.t = 0
        self.agents = {0: _unit(5, 5, 45), 1: _unit(5, 17, 45), 2: _unit(8, 5, 45)}
        self.enemies = {0: _unit(9, 9, 50, shield=50), 1: _unit(12, 5, 45)}
        return self.get_obs(), self.get_state()

    def get_obs(self):
        return [np.array([u.health / 45, u.pos.x, u.pos.y]) for _, u in sorted(self.agents.items())]

    def get_state(self):
        return np.array([u.health for u in self.agents.values()] + [u.health + u.shield for u in self.enemies.values()])

    def get_avail_actions(self):
        out = []
        for _, u in sorted(self.agents.items()):
            if u.health <= 0:
                out.append([1] + [0] * (ATTACK - 1 + N_ENEMIES))
            else:
                out.append([0, 1, 1, 1, 1, 1] + [int(e.health > 0) for _, e in sorted(self.enemies.items())])
        return out

    def unit_sight_range(self, agent_id):
        return 9

    def step(self, actions):
        avail = self.get_avail_actions()
        for a_id, a in enumerate(actions):
            assert avail[a_id][a] == 1, f"Agent {a_id} cannot perform action {a}"  # as SMAC does
        for a in actions:
            if a >= ATTACK:
                e = self.enemies[a - ATTACK]
                hit_shield = min(e.shield, 10)
                e.shield -= hit_shield
                e.health = max(0.0, e.health - (10 - hit_shield))
        ally = self.agents[2]
        ally.health = max(0.0, ally.health - 15)
        self.t += 1
        won = all(e.health <= 0 for e in self.enemies.values())
        terminated = won or self.t >= 8 or all(u.health <= 0 for u in self.agents.values())
        return 0.0, terminated, ({"battle_won": won} if terminated else {})

    def close(self):
        self.closed = True


def _env(k=2):
    return SC2VectorEnv("sc2:fake_3m", N_ALLIES, k, seed=0, env_class=FakeStarCraft2Env)


def _acts(*per_agent, k=2):
    return [np.full(k, a, np.int32) for a in per_agent]


def test_spec_observations_masks_state_and_sight_neighbours():
    env = _env()
    assert env.agent_spec(0)["obs_dim"] == 3 and env.agent_spec(0)["action"] == {"type": "discrete", "n": 8}
    obs = env.reset()
    assert len(obs) == N_ALLIES and obs[0].shape == (2, 3) and env.global_state().shape == (2, env.state_dim) == (2, 5)
    assert env.avail_actions()[0][0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1]
    env.step(_acts(STOP, STOP, STOP))
    near = env.in_range(None)  # sight 9: ally 0 and ally 2 (3 apart); ally 1 is 12 away
    assert near[:, :, 0].astype(int).tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0]]
    assert env.in_range(13.0)[:, :, 0].astype(int).tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_rewards_follow_the_smax_formulas_with_shields():
    env = _env()
    env.reset()
    _, r, done = env.step(_acts(ATTACK + 0, ATTACK + 1, STOP))  # 10 off the zealot's shield, 10 off the marine
    g = (10 / 100 + 10 / 45) / N_ENEMIES
    np.testing.assert_allclose(r[:, 0], [g, g, g - 0.5 * 15 / 45], rtol=1e-5)
    np.testing.assert_allclose(env.team_reward(r)[0], g - 0.5 * 15 / 45 / 3, rtol=1e-5)
    assert not done.any()


def test_unavailable_actions_are_replaced_and_dead_units_are_nobodys_neighbour():
    env = _env()
    env.reset()
    for _ in range(3):  # ally 2 takes 15 a step: dead after 3
        env.step(_acts(STOP, STOP, STOP))
    assert env.avail_actions()[2][0].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert not env.in_range(None)[:, 2].any() and not env.in_range(None)[2].any()
    _, r, _ = env.step(_acts(NO_OP, STOP, STOP))  # no-op for the living ally 0, stop for the dead ally 2
    assert env.replaced_actions == 2 * 2  # both replaced in both copies; the stand-in would have asserted
    assert r[2, 0] == pytest.approx(0.0)  # dead: no group damage this step, no own term


def test_the_env_server_plays_stop_or_allowed_random_actions_for_an_absent_unit(tmp_path):
    """missing_action noop / random for battles: stop (no-op when dead), or uniform over what is allowed;
    the stand-in asserts like SMAC, so a forbidden substitute would fail the step."""
    from drima.env_server.server import EnvServer, EnvServerConfig

    for missing in ("noop", "random"):
        env = _env()
        cfg = EnvServerConfig(address=f"ipc://{tmp_path}/env-{missing}", env="sc2:fake_3m", n_agents=N_ALLIES, steps=1,
                              n_envs=2, run_dir=str(tmp_path / missing), missing_action=missing)
        server = EnvServer(cfg, env=env)
        try:
            env.reset()
            for _ in range(3):  # ally 2 dies
                env.step(_acts(STOP, STOP, STOP))
            subs = [server._substitute(i, np.full(2, MOVE_N, np.int32)) for i in range(N_ALLIES)]
            if missing == "noop":
                assert [s.tolist() for s in subs] == [[STOP, STOP], [STOP, STOP], [NO_OP, NO_OP]]
            for i, s in enumerate(subs):
                assert (env.avail_actions()[i][np.arange(2), s] == 1).all()
            env.step(subs)
            assert env.replaced_actions == 0
        finally:
            server.sock.close()
            server.ctx.term()


def test_a_won_battle_resets_that_copy_and_reports_it():
    env = _env(k=1)
    env.reset()
    total, steps, done = 0.0, 0, np.zeros(1)
    while not done[0]:  # allies 0 and 1 deal 20 a step: the marine (45) falls in 3 steps, the zealot (100) in 5
        target = ATTACK + (1 if env.envs[0].enemies[1].health > 0 else 0)
        _, r, done = env.step(_acts(target, target, STOP, k=1))
        total += r.sum()
        steps += 1
    assert steps == 8
    [battle] = env.pop_task_metrics()
    assert battle["won"] == 1.0 and battle["enemies_alive"] == 0.0 and battle["episode_length"] == steps
    assert battle["episode_team_return"] == pytest.approx(total)
    assert env.envs[0].t == 0 and env.envs[0].enemies[1].health == 45  # the copy started a new battle
    env.close()
    assert env.envs[0].closed


def test_a_battle_cut_at_the_episode_limit_keeps_the_global_state_it_ended_on():
    """ctde critics bootstrap a cut battle from the state it ended on (ally 2 fallen), not from
    the new battle's first state (everyone back at full health)."""
    env = _env(k=1)
    env.reset()
    for t in range(1, 9):  # nobody attacks: the battle runs to the episode limit, both sides alive
        env.step(_acts(STOP, STOP, STOP, k=1))
        if t < 8:
            assert env.final_global_state() is None
    assert env.episode_ends().truncated[:, 0].all()
    assert env.final_global_state()[0].tolist() == [45, 45, 0, 100, 45]
    assert env.global_state()[0].tolist() == [45, 45, 45, 100, 45]


def test_pypi_smac3_is_detected_with_a_clear_error(tmp_path, monkeypatch):
    """PyPI's `smac` is SMAC3, a hyper-parameter optimiser; the adapter must not mistake it for SMAC."""
    fake = tmp_path / "smac"
    (fake / "facade").mkdir(parents=True)
    (fake / "__init__.py").write_text("version = '2.3.1'\n")
    (fake / "facade" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "smac" or m.startswith("smac.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ValueError, match="SMAC3, the hyper-parameter optimiser.*pip uninstall smac"):
        starcraft2_env_class()


def test_missing_smac_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ValueError, match="github.com/oxwhirl/smac"):
        starcraft2_env_class()
