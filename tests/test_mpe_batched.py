"""Golden traces: the batched physics (env_server/mpe/batched.py, the default) against mpe2's own
integration one world at a time (`ArenaWorld.step`, physics="looped"), step by step."""

import copy

import numpy as np
import pytest
from mpe2._mpe_utils.core import Agent, Landmark

from drima.env_server.mpe.batched import make_world_batch
from drima.env_server.mpe.hunting import HuntingScenario, prey_policy
from drima.env_server.mpe.hunting_batch import BATCH_SCRIPTS, batch_prey_policy
from drima.env_server.mpe.vector import MPEVectorEnv
from drima.env_server.mpe.world import ArenaWorld, stacked

TOL = 1e-12
GROUPS = ("agents", "scripted", "landmarks")


def _states(worlds) -> list[np.ndarray]:
    """Every entity's position and velocity, gathered entity by entity (never the batch's arrays)."""
    return [stacked(list(worlds), g, f) for g in GROUPS for f in ("p_pos", "p_vel")]


def _random_actions(rng, env):
    if env.action_type == "discrete":
        return [rng.integers(0, 5, env.n_envs).astype(np.int32) for _ in range(env.n_agents)]
    return [rng.uniform(-1.2, 1.2, (env.n_envs, 2)).astype(np.float32) for _ in range(env.n_agents)]


@pytest.mark.parametrize("k", [1, 8])
@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
@pytest.mark.parametrize("name,n,options", [("collection", 6, {}), ("hunting", 3, {}),
                                             ("hunting", 4, {"n_prey": 2, "n_attackers": 2})])
def test_batched_physics_follows_mpe2_step_by_step_across_resets(name, n, options, action_type, k):
    looped = MPEVectorEnv(name, n, k, seed=7, action_type=action_type, options=options, physics="looped")
    batched = MPEVectorEnv(name, n, k, seed=7, action_type=action_type, options=options)
    rng = np.random.default_rng(1)
    resets = 0
    for t in range(240):  # 8 hunting episodes, 4.8 collection ones
        actions = _random_actions(rng, batched)
        obs_a, rew_a, done_a = looped.step(actions)
        obs_b, rew_b, done_b = batched.step(actions)
        for a, b in zip(_states(looped.worlds), _states(batched.worlds), strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=TOL, err_msg=f"step {t}")
        np.testing.assert_allclose(np.array(obs_b), np.array(obs_a), rtol=0, atol=1e-6)
        np.testing.assert_allclose(rew_b, rew_a, rtol=0, atol=1e-6)
        assert np.array_equal(done_a, done_b)
        resets += int(done_b.any())
    assert resets >= 4
    assert looped.pop_task_metrics() == pytest.approx(batched.pop_task_metrics(), abs=1e-9)


@pytest.mark.parametrize("name,n", [("collection", 6), ("hunting", 3)])
def test_the_traces_exercise_walls_speed_limits_contacts_and_the_wandering_prey(name, n):
    """The golden traces above mean something only if they reach every branch of the physics."""
    env = MPEVectorEnv(name, n, 8, seed=7)
    batch = env.worlds
    reach = batch.contact_reach + np.where(np.eye(len(batch.colliders)), np.inf, 0.0)
    limit = batch.max_speed
    rng = np.random.default_rng(1)
    at_wall = at_max_speed = overlapping = 0
    draws_before = [w.np_random.bit_generator.state for w in batch]
    for _ in range(120):
        env.step(_random_actions(rng, env))
        pos, vel = batch.pos[:, batch.colliders], batch.vel[:, batch.movable]
        at_wall += int((np.abs(batch.pos) >= 1.0).any())
        at_max_speed += int(np.isclose(np.linalg.norm(vel, axis=-1), limit).any())
        dist = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1)
        overlapping += int((dist < reach).any())
    assert at_wall and at_max_speed and overlapping
    if name == "hunting":  # the prey wandered (nobody in view) in some world: a draw from its generator
        assert [w.np_random.bit_generator.state for w in batch] != draws_before


def _odd_world(seed: int) -> ArenaWorld:
    """Entities of every kind the physics distinguishes: a colliding agent with a speed limit, a
    ghost agent (no collisions, no limit, heavier), a movable colliding landmark, a fixed one."""
    world = ArenaWorld(bound=0.8)
    solid, ghost = Agent(), Agent()
    solid.size, solid.max_speed = 0.2, 0.7
    ghost.collide, ghost.initial_mass = False, 3.0
    pushed, fixed = Landmark(), Landmark()
    pushed.movable, pushed.size, fixed.size = True, 0.25, 0.3
    world.agents, world.landmarks = [solid, ghost], [pushed, fixed]
    rng = np.random.default_rng(seed)
    for entity in world.entities:
        entity.state.p_pos = rng.uniform(-0.3, 0.3, 2)  # crowded: contacts from the first step
        entity.state.p_vel = np.zeros(2)
    for agent in world.agents:
        agent.action.u, agent.action.c = np.zeros(2), np.zeros(0)
        agent.u_noise = 0.3  # motor noise: drawn from each world's own generator
    world.np_random = np.random.default_rng([seed, 99])
    return world


def test_every_kind_of_entity_and_motor_noise_match_mpe2():
    looped = make_world_batch("looped", [_odd_world(s) for s in range(5)])
    batched = make_world_batch("batched", [_odd_world(s) for s in range(5)])
    rng = np.random.default_rng(3)
    for t in range(200):
        force = rng.uniform(-6, 6, (5, 2, 2))
        looped.step(force)
        batched.step(force)
        for a, b in zip(_states(looped), _states(batched), strict=True):
            np.testing.assert_allclose(b, a, rtol=0, atol=TOL, err_msg=f"step {t}")
    fixed = stacked(list(batched), "landmarks")[:, 1]
    assert np.array_equal(fixed, stacked([_odd_world(s) for s in range(5)], "landmarks")[:, 1])


def test_batched_prey_rule_equals_the_callback_in_every_situation():
    """Prey in the open, against walls and in corners, with predators near, far and none in view;
    the wander angles come from the same generators in the same order."""
    scenario = HuntingScenario()
    worlds = [scenario.make_world(n_prey=2, n_attackers=2) for _ in range(400)]
    rng = np.random.default_rng(5)
    for k, world in enumerate(worlds):
        scenario.reset_world(world, np.random.default_rng([1, k]))
        for prey in world.scripted:  # a third in a corner region, the rest anywhere
            corner = rng.choice([-1.0, 1.0], 2) * rng.uniform(0.7, 1.0, 2)
            prey.state.p_pos = corner if k % 3 == 0 else rng.uniform(-1, 1, 2)
    generators = [copy.deepcopy(w.np_random) for w in worlds]
    before = [copy.deepcopy(g) for g in generators]
    reference = np.array([[prey_policy(prey, w).u for prey in w.scripted] for w in worlds])
    drawn = [w.np_random.bit_generator.state for w in worlds]
    batch = make_world_batch("batched", worlds, BATCH_SCRIPTS)  # the same states, now in arrays
    for world, generator in zip(batch, generators, strict=True):
        world.np_random = generator  # rewound to before the reference's draws
    got = np.stack([batch_prey_policy(batch, slot) for slot in range(2)], axis=1)
    np.testing.assert_allclose(got, reference, rtol=0, atol=TOL)
    assert [w.np_random.bit_generator.state for w in batch] == drawn
    assert sum(a != b.bit_generator.state for a, b in zip(drawn, before, strict=True)) > 0  # some wandered


def test_assigning_a_state_moves_the_entity_in_the_batch():
    """reset_world and tests place entities by assignment; the batch must see it."""
    env = MPEVectorEnv("collection", 2, 2, seed=0, options={"n_foods": 2})
    agent = env.worlds[1].agents[0]
    agent.state.p_pos = np.array([0.5, -0.5])
    agent.state.p_vel = np.array([0.1, 0.0])
    assert env.worlds.pos[1, 0].tolist() == [0.5, -0.5]
    env.step([np.zeros(2, np.int32), np.zeros(2, np.int32)])
    assert agent.state.p_pos[0] == pytest.approx(0.51) and agent.state.p_pos is env.worlds[1].agents[0].state.p_pos


def test_seeded_batched_runs_replay_exactly():
    runs = []
    for _ in range(2):
        env = MPEVectorEnv("hunting", 3, 4, seed=11)
        rng = np.random.default_rng(2)
        runs.append([env.step(_random_actions(rng, env))[0] for _ in range(70)])
    for a, b in zip(*runs, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_unknown_physics_and_unlike_worlds_are_clear_errors():
    with pytest.raises(ValueError, match="MPE physics must be one of"):
        MPEVectorEnv("hunting", 3, 2, physics="gpu")
    scenario = HuntingScenario()
    with pytest.raises(ValueError, match="needs K worlds built alike"):
        make_world_batch("batched", [scenario.make_world(), scenario.make_world(n_prey=2)])
