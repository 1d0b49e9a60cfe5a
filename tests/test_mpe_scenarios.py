"""The particle scenarios: PettingZoo contract, rewards, partial views, prey, walls, physics, pictures."""

import numpy as np
import pytest
from mpe2._mpe_utils.core import World
from pettingzoo.test import parallel_api_test, parallel_seed_test
from PIL import Image

from drima.env_server.mpe import SCENARIOS, collection, hunting
from drima.env_server.mpe.render import draw_world, save_gif
from drima.env_server.mpe.world import encode_slots, visible


def hunting_world(**kwargs):
    scenario = hunting.HuntingScenario()
    world = scenario.make_world(**kwargs)
    scenario.reset_world(world, np.random.default_rng(0))
    return scenario, world


def collection_world(**kwargs):
    scenario = collection.CollectionScenario()
    world = scenario.make_world(**kwargs)
    scenario.reset_world(world, np.random.default_rng(0))
    return scenario, world


def place(entity, x, y):
    entity.state.p_pos = np.array([x, y], dtype=float)
    entity.state.p_vel = np.zeros(2)


def hold_still(world):
    for agent in world.agents:
        agent.action.u = np.zeros(2)
        agent.action.c = np.zeros(0)


# --- PettingZoo contract -------------------------------------------------------------------------


@pytest.mark.parametrize("continuous", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda c: hunting.parallel_env(continuous_actions=c),  # CH-I
        lambda c: hunting.parallel_env(n_prey=2, n_attackers=2, n_interceptors=2, continuous_actions=c),
        lambda c: collection.parallel_env(continuous_actions=c),
    ],
    ids=["CH-I", "CH-II", "collection"],
)
def test_parallel_api(make, continuous):
    parallel_api_test(make(continuous), num_cycles=60)


def test_seeded_episodes_replay_exactly_including_the_prey():
    parallel_seed_test(lambda: hunting.parallel_env(), num_cycles=60)
    parallel_seed_test(lambda: collection.parallel_env(), num_cycles=60)


def test_agent_names_roles_and_types():
    env = hunting.parallel_env(n_prey=2, n_attackers=2, n_interceptors=2)
    assert env.possible_agents == ["attacker_0", "attacker_1", "interceptor_0", "interceptor_1"]
    world = env.unwrapped.world
    assert [a.role for a in world.agents] == ["attacker", "attacker", "interceptor", "interceptor"]
    assert [p.role for p in world.scripted] == ["prey", "prey"]
    env = collection.parallel_env()
    world = env.unwrapped.world
    assert env.possible_agents == [f"agent_{i}" for i in range(6)]
    assert [a.type for a in world.agents] == [0, 1, 2, 0, 1, 2]
    assert [f.type for f in world.landmarks] == [0, 1, 2, 0, 1, 2]
    assert set(SCENARIOS) == {"hunting", "collection"}


def test_episode_lengths():
    for env, steps in [(hunting.parallel_env(), 30), (collection.parallel_env(), 50)]:
        env.reset(seed=1)
        for t in range(steps):
            _, _, _, truncated, _ = env.step({a: 0 for a in env.agents})
            assert all(truncated.values()) == (t == steps - 1)


# --- rewards --------------------------------------------------------------------------------------


def test_attacker_touching_prey_gets_the_hit_bonus_under_the_touch_rule():
    scenario, world = hunting_world(capture="touch")
    attacker, far_1, far_2 = world.agents
    prey = world.scripted[0]
    place(prey, 0.0, 0.0)
    place(attacker, 0.1, 0.0)  # 0.1 < 0.075 + 0.05
    place(far_1, 0.9, 0.9)
    place(far_2, -0.9, 0.9)
    expected = -scenario.dist_scale * 0.1 + scenario.hit_bonus
    assert scenario.reward(attacker, world) == pytest.approx(expected)
    assert hunting.step_metrics(world)["hits"] == 1.0


def lone_attacker_on_the_prey(capture="team", partner_at=None):
    """CH-I with the attacker touching the prey at the origin (0.1 away), one interceptor at
    `partner_at` (x, y) or far away, the other far away. Returns scenario, world, attacker."""
    scenario, world = hunting_world(capture=capture)
    attacker, interceptor, other = world.agents
    place(world.scripted[0], 0.0, 0.0)
    place(attacker, 0.1, 0.0)
    place(interceptor, *(partner_at or (0.9, 0.9)))
    place(other, -0.9, 0.9)
    return scenario, world, attacker


def test_team_rule_a_lone_attacker_touching_the_prey_scores_nothing():
    # The default rule: touching is not enough without an interceptor next to the prey.
    scenario, world, attacker = lone_attacker_on_the_prey()
    assert world.capture == "team"
    assert scenario.reward(attacker, world) == pytest.approx(-scenario.dist_scale * 0.1)
    assert hunting.step_metrics(world)["hits"] == 0.0
    rewards, metrics = scenario.batch_outcome([world])
    assert rewards[0, 0] == pytest.approx(-scenario.dist_scale * 0.1) and metrics["hits"][0] == 0.0
    # the same world under the first version's rule is a hit
    scenario, world, attacker = lone_attacker_on_the_prey(capture="touch")
    assert scenario.reward(attacker, world) == pytest.approx(-scenario.dist_scale * 0.1 + scenario.hit_bonus)


def test_team_rule_scores_with_an_interceptor_in_range_and_only_then():
    # An interceptor 0.13 from the prey (within PARTNER_RADIUS, not touching: 0.13 > 0.125)
    # makes the attacker's touch a hit; 0.2 away it does not.
    scenario, world, attacker = lone_attacker_on_the_prey(partner_at=(0.0, -0.13))
    assert hunting.PARTNER_RADIUS >= 0.13
    assert scenario.reward(attacker, world) == pytest.approx(-scenario.dist_scale * 0.1 + scenario.hit_bonus)
    metrics = hunting.step_metrics(world)
    assert metrics["hits"] == 1.0 and metrics["interceptor_collisions"] == 0.0
    rewards, batch_metrics = scenario.batch_outcome([world])
    assert rewards[0, 0] == pytest.approx(-scenario.dist_scale * 0.1 + scenario.hit_bonus)
    assert batch_metrics["hits"][0] == 1.0
    scenario, world, attacker = lone_attacker_on_the_prey(partner_at=(0.0, -0.2))
    assert scenario.reward(attacker, world) == pytest.approx(-scenario.dist_scale * 0.1)
    assert hunting.step_metrics(world)["hits"] == 0.0


def test_team_rule_hits_from_range_without_touching_but_not_beyond_it():
    # The attacker's reach is HIT_RANGE (0.35), not touching (0.125); 0.4 away it misses.
    for distance, hit in [(0.3, 1.0), (0.4, 0.0)]:
        scenario, world, attacker = lone_attacker_on_the_prey(partner_at=(0.0, -0.13))
        place(attacker, distance, 0.0)
        assert hunting.step_metrics(world)["hits"] == hit
        assert scenario.reward(attacker, world) == pytest.approx(
            -scenario.dist_scale * distance + hit * scenario.hit_bonus)


def test_team_rule_another_attacker_is_no_partner():
    # CH-II: two attackers on the prey without an interceptor near it score nothing.
    scenario, world = hunting_world(n_prey=2, n_attackers=2, n_interceptors=2)
    a0, a1, i0, i1 = world.agents
    place(world.scripted[0], 0.0, 0.0)
    place(world.scripted[1], 0.9, -0.9)
    place(a0, 0.1, 0.0)
    place(a1, -0.1, 0.0)
    place(i0, 0.9, 0.9)
    place(i1, -0.9, 0.9)
    assert hunting.step_metrics(world)["hits"] == 0.0
    place(i1, 0.0, 0.13)
    assert hunting.step_metrics(world)["hits"] == 2.0  # both attackers hit the blocked prey


def test_unknown_capture_rule_is_refused():
    with pytest.raises(ValueError, match="capture"):
        hunting.HuntingScenario().make_world(capture="tag")


def test_team_rule_spawns_the_prey_clear_of_every_predator():
    for seed in range(20):
        _, world = hunting_world()
        hunting.HuntingScenario().reset_world(world, np.random.default_rng(seed))
        prey = world.scripted[0].state.p_pos
        assert min(np.linalg.norm(a.state.p_pos - prey) for a in world.agents) >= hunting.TEAM_SPAWN_CLEARANCE


def test_interceptor_touching_prey_gets_the_penalty():
    scenario, world = hunting_world()
    attacker, interceptor, other = world.agents
    prey = world.scripted[0]
    place(prey, 0.0, 0.0)
    place(interceptor, 0.0, -0.1)
    place(attacker, 0.9, 0.9)
    place(other, -0.9, 0.9)
    expected = -scenario.dist_scale * 0.1 - scenario.collision_penalty
    assert scenario.reward(interceptor, world) == pytest.approx(expected)
    metrics = hunting.step_metrics(world)
    assert metrics["interceptor_collisions"] == 1.0 and metrics["hits"] == 0.0
    assert metrics["min_prey_distance"] == pytest.approx(0.1)


def test_predator_not_touching_gets_exactly_the_distance_term():
    scenario, world = hunting_world(n_prey=2, n_attackers=1, n_interceptors=1)
    attacker, interceptor = world.agents
    place(world.scripted[0], 0.5, 0.0)
    place(world.scripted[1], -0.9, -0.9)
    place(attacker, 0.2, 0.4)  # distance 0.5 to the nearest prey
    place(interceptor, 0.5, 0.3)  # distance 0.3, not touching (0.125)
    assert scenario.reward(attacker, world) == -scenario.dist_scale * 0.5
    assert scenario.reward(interceptor, world) == pytest.approx(-scenario.dist_scale * 0.3, abs=1e-15)


def test_collection_own_type_food_pays_more_than_another_type():
    scenario, world = collection_world()
    for j, food in enumerate(world.landmarks):
        place(food, -0.8 + 0.3 * j, 0.8)
    for i, agent in enumerate(world.agents):
        place(agent, -0.8 + 0.3 * i, -0.8)
    own, other = world.agents[0], world.agents[1]  # types 0 and 1
    place(own, *world.landmarks[0].state.p_pos)  # food type 0
    place(other, *world.landmarks[3].state.p_pos)  # food type 0
    r_own, r_other = scenario.reward(own, world), scenario.reward(other, world)
    assert r_own == pytest.approx(scenario.occupy_reward + scenario.type_match_bonus)
    assert r_other == pytest.approx(scenario.occupy_reward)
    assert r_own > r_other
    metrics = collection.step_metrics(world)
    assert metrics["foods_occupied"] == 2.0 and metrics["type_matches"] == 1.0


def test_collection_no_reward_just_outside_the_occupy_radius():
    scenario, world = collection_world()
    for j, food in enumerate(world.landmarks):
        place(food, -0.8 + 0.3 * j, 0.8)
    agent = world.agents[0]
    radius = world.landmarks[0].occupy_radius
    x, y = world.landmarks[0].state.p_pos
    place(agent, x - radius - 1e-3, y)  # food 0 is the leftmost: no other food is nearer
    assert scenario.reward(agent, world) == pytest.approx(-scenario.dist_scale * (radius + 1e-3))
    place(agent, x - radius + 1e-3, y)
    assert scenario.reward(agent, world) > 0


def test_two_agents_pushing_for_one_food_cannot_both_occupy_it():
    # Soft MPE contacts let two agents meeting at speed overlap for a step; a food still has one holder.
    scenario, world = collection_world()
    for j, food in enumerate(world.landmarks):
        place(food, -0.8 + 0.3 * j, 0.8)
    food = world.landmarks[0]
    place(food, 0.0, 0.0)
    left, right = world.agents[0], world.agents[1]
    for i, agent in enumerate(world.agents[2:]):
        place(agent, -0.8 + 0.3 * i, -0.8)
    place(left, food.state.p_pos[0] - 0.6, food.state.p_pos[1] - 0.3)
    place(right, food.state.p_pos[0] + 0.6, food.state.p_pos[1] - 0.3)
    hold_still(world)
    for _ in range(40):
        for agent in (left, right):  # full thrust at the food centre
            offset = food.state.p_pos - agent.state.p_pos
            agent.action.u = offset / np.linalg.norm(offset) * agent.accel
        world.step()
        assert collection.occupancy(world)[:, 0].sum() <= 1


def test_hunting_reward_saddle_constants_favour_the_group():
    # HIT_BONUS > COLLISION_PENALTY: an interceptor's touch that buys a hit pays for the group.
    scenario = hunting.HuntingScenario()
    assert scenario.hit_bonus > scenario.collision_penalty > 0


# --- observations ---------------------------------------------------------------------------------


def test_hunting_entity_out_of_view_has_an_all_zero_slot():
    scenario, world = hunting_world()
    attacker, interceptor_0, interceptor_1 = world.agents
    prey = world.scripted[0]
    place(attacker, 0.0, 0.0)
    place(prey, 0.5, 0.0)
    place(interceptor_0, 0.0, 0.5)
    place(interceptor_1, -0.5, 0.0)
    seen = scenario.observation(attacker, world)
    assert seen.shape == (6 + 5 + 2 * 4,) and seen.dtype == np.float32
    assert seen[6] == 1.0 and seen[7:9] == pytest.approx([0.5, 0.0])
    assert list(seen[11:15]) == pytest.approx([1.0, 0.0, 0.5, 0.0])  # interceptor_0, not attacker
    attacker.state.p_pos = np.array([1.0, 1.0])
    place(prey, -1.0, -1.0)  # 2.83 away, beyond any view radius below 2.8
    hidden = scenario.observation(attacker, world)
    assert hidden.shape == seen.shape
    assert np.all(hidden[6:11] == 0.0)


def test_collection_entity_out_of_view_has_an_all_zero_slot():
    scenario, world = collection_world()
    agent = world.agents[0]
    obs = scenario.observation(agent, world)
    assert obs.shape == (7 + 6 * 6 + 5 * 6,)
    place(agent, -1.0, -1.0)
    place(world.landmarks[2], 1.0, 1.0)
    place(world.agents[4], 1.0, 0.9)
    far = scenario.observation(agent, world)
    assert far.shape == obs.shape
    food_2 = far[7 + 2 * 6 : 7 + 3 * 6]
    agent_4 = far[7 + 36 + 3 * 6 : 7 + 36 + 4 * 6]  # others skip self: agent_4 is slot 3
    assert np.all(food_2 == 0.0) and np.all(agent_4 == 0.0)
    place(world.landmarks[2], -0.9, -0.9)
    near = scenario.observation(agent, world)[7 + 2 * 6 : 7 + 3 * 6]
    assert list(near) == pytest.approx([1.0, 0.1, 0.1, 0.0, 0.0, 1.0])  # food_2 is type 2


def test_slots_keep_their_order_and_visibility_boundary():
    slots = encode_slots(np.zeros(2), [[0.9, 0.0], [0.1, 0.0], [2.0, 0.0]], 1.0, [[7.0], [8.0], [9.0]])
    assert list(slots) == [1.0, 0.9, 0.0, 7.0, 1.0, 0.1, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0]
    assert visible(np.zeros(2), np.array([1.0, 0.0]), 1.0)
    assert not visible(np.zeros(2), np.array([1.0, 0.01]), 1.0)


# --- prey, walls, physics -------------------------------------------------------------------------


def test_prey_flees_a_predator_in_view():
    _, world = hunting_world()
    attacker, interceptor_0, interceptor_1 = world.agents
    prey = world.scripted[0]
    place(prey, 0.0, 0.0)
    place(attacker, -0.3, 0.0)  # within the prey's 0.6 view
    place(interceptor_0, -0.9, 0.9)
    place(interceptor_1, -0.9, -0.9)
    hold_still(world)
    before = np.linalg.norm(prey.state.p_pos - attacker.state.p_pos)
    for _ in range(5):
        world.step()
    after = np.linalg.norm(prey.state.p_pos - attacker.state.p_pos)
    assert after > before + 0.2
    assert prey.state.p_pos[0] > 0.2  # it ran right, away from the predator


def test_nothing_leaves_the_arena():
    env = hunting.parallel_env(continuous_actions=True)
    env.reset(seed=3)
    world = env.unwrapped.world
    for _ in range(30):
        # every predator flat out to the top right: they must stop at the walls
        env.step({a: np.array([0.0, 0.0, 1.0, 0.0, 1.0], dtype=np.float32) for a in env.agents})
        for entity in world.entities:
            assert np.all(np.abs(entity.state.p_pos) <= world.bound)
    # pressed against each other, each predator still ends on a wall
    assert all(np.isclose(a.state.p_pos, world.bound).any() for a in world.agents)
    env = collection.parallel_env()
    env.reset(seed=4)
    world = env.unwrapped.world
    for _ in range(50):
        env.step({a: 3 for a in env.agents})  # all flat out downwards, into each other
        for entity in world.entities:
            assert np.all(np.abs(entity.state.p_pos) <= world.bound)


def test_vectorised_collisions_equal_the_mpe2_loop():
    _, world = collection_world()  # agents collide, foods do not: both branches
    rng = np.random.default_rng(7)
    for entity in world.entities:
        entity.state.p_pos = rng.uniform(-0.3, 0.3, 2)  # crowded: many contacts
    _, hunt = hunting_world(n_prey=2, n_attackers=2, n_interceptors=2)
    for entity in hunt.entities:
        entity.state.p_pos = rng.uniform(-0.2, 0.2, 2)
    hunt.scripted[1].movable = False  # an immovable collider gets no force
    checked = 0
    for w in (world, hunt):
        n = len(w.entities)
        starts = [None if i % 2 else rng.normal(size=2) for i in range(n)]
        ours = w.apply_environment_force(list(starts))
        theirs = World.apply_environment_force(w, list(starts))
        for mine, ref in zip(ours, theirs, strict=True):
            assert (mine is None) == (ref is None)
            if ref is not None:
                np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-9)
                checked += int(np.linalg.norm(ref) > 1.0)
    assert checked >= 4  # the comparison saw real contact forces


@pytest.mark.parametrize("task", ["CH-I", "CH-II", "CH-I touch", "CH-II touch", "collection"])
def test_batched_rewards_observations_and_metrics_equal_the_per_agent_ones(task):
    # The env server uses the batch_* forms on K worlds; the per-agent ones are the reference.
    rng = np.random.default_rng(3)
    if task == "collection":
        made = [collection_world() for _ in range(5)]
    else:
        two = task.startswith("CH-II")
        capture = "touch" if task.endswith("touch") else "team"
        made = [hunting_world(n_prey=1 + two, n_attackers=1 + two, capture=capture) for _ in range(5)]
    scenario, worlds = made[0][0], [w for _, w in made]
    for k, w in enumerate(worlds):
        for entity in w.entities:
            entity.state.p_pos = rng.uniform(-1, 1, 2)
            entity.state.p_vel = rng.normal(size=2)
        targets = w.landmarks if task == "collection" else w.scripted
        # on top of a food or prey (occupied, a hit or a collision), and one agent far out of view
        w.agents[k % len(w.agents)].state.p_pos = targets[0].state.p_pos + rng.uniform(-0.03, 0.03, 2)
        w.agents[-1].state.p_pos = -np.sign(targets[-1].state.p_pos) * 0.99 if k % 2 else w.agents[-1].state.p_pos
        if task != "collection" and k % 2 == 0:  # a blocking interceptor beside an attacker: a "team" hit
            w.agents[0].state.p_pos = targets[0].state.p_pos + np.array([0.2, 0.0])
            w.agents[-2].state.p_pos = targets[0].state.p_pos + np.array([0.0, 0.1])
    rewards, metrics = scenario.batch_outcome(worlds)
    observations = scenario.batch_observations(worlds)
    assert rewards.shape == (len(worlds[0].agents), len(worlds))
    for k, w in enumerate(worlds):
        for i, agent in enumerate(w.agents):
            assert rewards[i, k] == pytest.approx(scenario.reward(agent, w), abs=1e-12)
            np.testing.assert_array_equal(observations[i, k], scenario.observation(agent, w))
    touched = 0.0
    for name, values in metrics.items():
        reference = [scenario.step_metrics(w)[name] for w in worlds]
        np.testing.assert_allclose(values, reference, rtol=1e-12)
        touched += sum(reference) if name in ("foods_occupied", "hits", "interceptor_collisions") else 0
    assert touched >= 3  # the worlds had contacts, so the bonus and penalty branches were compared
    if task != "collection":
        assert metrics["hits"].sum() >= 1 and metrics["interceptor_collisions"].sum() >= 1
    hidden = sum(not visible(a.state.p_pos, e.state.p_pos, w.view_radius)
                 for w in worlds for a in w.agents for e in w.entities)
    assert observations.dtype == np.float32 and hidden > 0  # masked slots were compared too


# --- pictures -------------------------------------------------------------------------------------


def test_draw_world_and_save_gif(tmp_path):
    _, world = hunting_world()
    image = draw_world(world, size_px=160)
    assert image.size == (160, 160)
    colours = {c for _, c in image.getcolors(maxcolors=100_000)}
    assert (255, 228, 228) in colours  # the prey's view disc
    _, cworld = collection_world()
    frames = [draw_world(cworld, size_px=120)]
    place(cworld.agents[0], 0.0, 0.0)
    frames.append(np.asarray(draw_world(cworld, size_px=120)))
    path = tmp_path / "episode.gif"
    save_gif(frames, path, fps=5)
    with Image.open(path) as gif:
        assert gif.size == (120, 120) and gif.n_frames == 2
    env = hunting.parallel_env(render_mode="rgb_array")
    env.reset(seed=0)
    assert env.render().shape == (400, 400, 3)


def test_a_clear_spot_keeps_its_distance_from_every_point_and_from_none():
    from drima.env_server.mpe.world import is_clear, sample_clear_position

    others = np.array([[0.0, 0.0], [0.5, 0.0]])
    assert is_clear(np.array([0.25, 0.3]), others, 0.3)
    assert not is_clear(np.array([0.25, 0.1]), others, 0.3)  # 0.27 from both
    assert is_clear(np.array([0.0, 0.0]), np.zeros((0, 2)), 1.0)  # nothing to avoid
    rng = np.random.default_rng(0)
    spots = np.array([sample_clear_position(rng, 1.0, list(others), 0.4) for _ in range(300)])
    assert np.abs(spots).max() <= 1.0
    assert np.linalg.norm(spots[:, None] - others[None], axis=-1).min() >= 0.4


def test_a_spot_clear_of_both_is_the_nested_loops_spot_with_the_same_draws():
    """sample_clear_of_both draws in blocks; it must return what the two nested rejection loops it
    replaces return, and leave the generator where they leave it (so seeded resets are unchanged),
    in open arenas and in crowded ones where the loops run out of tries."""
    from drima.env_server.mpe.world import is_clear, sample_clear_of_both, sample_clear_position

    def loops(rng, bound, first, then, tries):
        for _ in range(tries):
            pos = sample_clear_position(rng, bound, *first, tries)
            if is_clear(pos, then[0], then[1]):
                break
        return pos

    cases = np.random.default_rng(7)
    crowded = 0
    for _ in range(400):
        bound = float(cases.uniform(0.3, 1.5))
        first = (cases.uniform(-bound, bound, (int(cases.integers(0, 80)), 2)), float(cases.uniform(0, 0.5)))
        then = (cases.uniform(-bound, bound, (int(cases.integers(0, 80)), 2)), float(cases.uniform(0, 0.5)))
        tries = int(cases.choice([1, 2, 100]))
        seed = int(cases.integers(2**31))
        a, b = np.random.default_rng(seed), np.random.default_rng(seed)
        expected = loops(a, bound, first, then, tries)
        np.testing.assert_array_equal(sample_clear_of_both(b, bound, first, then, tries), expected)
        assert a.random() == b.random()  # the next draw too: the same number of draws were made
        crowded += not is_clear(expected, *then)
    assert crowded > 20  # the loops ran out of tries in some of these


def test_collection_resets_place_agents_off_the_food_and_apart_where_there_is_room():
    env = collection.parallel_env(n_agents=6)
    for seed in range(5):
        env.reset(seed=seed)
        world = env.unwrapped.world
        food = np.array([f.state.p_pos for f in world.landmarks])
        agents = np.array([a.state.p_pos for a in world.agents])
        size = world.agents[0].size
        assert np.linalg.norm(agents[:, None] - food[None], axis=-1).min() >= size + collection.OCCUPY_RADIUS
        apart = np.linalg.norm(agents[:, None] - agents[None], axis=-1) + np.eye(len(agents)) * 9
        assert apart.min() >= 2 * size
