"""Cooperative Collection (paper section 4.2, appendix B.2): six agents share out six foods.

Agents and foods come in three types (purple, blue, green), two of each: `agent_i.type = i % 3`,
`food_j.type = j % 3`. Agents collide with each other; foods are markers they can stand on.
Episodes last 50 steps in a walled 2 x 2 arena; each agent sees within VIEW_RADIUS = 1.0 (half the
arena's width: usually a few foods, rarely all of them, so agents must search).

An agent occupies a food when the food's centre lies under its body (within OCCUPY_RADIUS = 0.15,
the agents' radius, as in simple_spread) and no other agent is nearer to it. Two agents at rest
cannot both cover a food's centre without overlapping, and the soft contact force pushes them
apart, so at rest only one agent holds a food and the contest of appendix B.2.3 is physical. (MPE
contacts are soft and explicit, so two agents meeting at speed do overlap for a step; the "nearest
holds it" rule keeps one holder per food even then.) A first version used 0.05: no mode learned to
stay on a food in 80,000 env steps (0.08 foods held per step), the agents hovering about 0.15 from
the nearest one; with 0.15 the same DDPG learners hold about one food per step after 40,000.

Reward per agent per step:

    -DIST_SCALE * (distance to nearest food, any type)            always (DIST_SCALE = 0.1)
    +OCCUPY_REWARD if it occupies any food                        (1)
    +TYPE_MATCH_BONUS more if that food has the agent's own type  (1, so own type pays 2)

Own type paying twice any other food is Table 3 scaled by 1/10. A green and a purple agent next
to a green food: if both push for it, each holds it about half the time, green 0.5 * 2 = 1 and
purple 0.5 * 1 = 0.5 per step (Table 3's (10, 5), the saddle); if purple leaves, green gets 2 and
purple 0 until it reaches another food ((20, 0), the optimum); if green leaves, (0, 1). Purple alone
always prefers to stay (0.5 > 0), which is the saddle that DRI must break.

The shaping term is the same function for every agent (nearest food of any type), and agents
never start on a food, so several agents can rush the same nearest food and deadlock
(appendix B.2.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.utils import EzPickle
from mpe2._mpe_utils.core import Agent, Landmark
from mpe2._mpe_utils.scenario import BaseScenario
from mpe2._mpe_utils.simple_env import make_env
from pettingzoo.utils.conversions import parallel_wrapper_fn

from .world import (
    TYPE_COLOURS,
    ArenaEnv,
    ArenaWorld,
    encode_slots,
    encode_slots_batch,
    one_hot,
    others_index,
    sample_clear_of_both,
    sample_clear_position,
    stacked,
)

VIEW_RADIUS = 1.0
OCCUPY_RADIUS = 0.15
DIST_SCALE = 0.1
OCCUPY_REWARD = 1.0
TYPE_MATCH_BONUS = 1.0

AGENT_SIZE = 0.15
# foods spread out so that agents centred on two neighbouring foods do not touch (2 x 0.15 + margin)
FOOD_SEPARATION = 0.4
FOOD_SPAWN_FRACTION = 0.8  # foods away from the walls, so every side of a food is reachable


class Collector(Agent):
    def __init__(self, type_index: int) -> None:
        super().__init__()
        self.type = type_index


class Food(Landmark):
    def __init__(self, type_index: int, occupy_radius: float) -> None:
        super().__init__()
        self.type = type_index
        self.occupy_radius = occupy_radius


def food_distances(world: ArenaWorld) -> np.ndarray:
    """(n_agents, n_foods) centre distances."""
    return batch_food_distances([world])[0]


def batch_food_distances(worlds: Sequence[ArenaWorld]) -> np.ndarray:
    """(K, n_agents, n_foods) centre distances in each of K worlds."""
    agent_pos, food_pos = stacked(worlds, "agents"), stacked(worlds, "landmarks")
    return np.sqrt(np.sum(np.square(agent_pos[:, :, None, :] - food_pos[:, None, :, :]), axis=-1))


def occupancy(world: ArenaWorld) -> np.ndarray:
    """(n_agents, n_foods) bool: agent i holds food j.

    Holding a food means being within its occupy_radius and nearer to it than every other agent
    (ties go to the lower index). MPE contacts are soft: two agents that meet at speed overlap for
    a step or two before they bounce apart, so this rule keeps "one food, one holder" exact even then.
    """
    return batch_occupancy([world], food_distances(world)[None])[0]


def batch_occupancy(worlds: Sequence[ArenaWorld], dists: np.ndarray) -> np.ndarray:
    """(K, n_agents, n_foods) bool: `occupancy` of each world, given its `batch_food_distances`."""
    radii = np.array([food.occupy_radius for food in worlds[0].landmarks])
    nearest = np.argmin(dists, axis=1)[:, None, :] == np.arange(dists.shape[1])[None, :, None]
    return nearest & (dists <= radii)


class CollectionScenario(BaseScenario):
    def __init__(
        self,
        dist_scale: float = DIST_SCALE,
        occupy_reward: float = OCCUPY_REWARD,
        type_match_bonus: float = TYPE_MATCH_BONUS,
    ) -> None:
        self.dist_scale = dist_scale
        self.occupy_reward = occupy_reward
        self.type_match_bonus = type_match_bonus

    def make_world(
        self,
        n_agents: int = 6,
        n_foods: int = 6,
        n_types: int = 3,
        view_radius: float = VIEW_RADIUS,
        occupy_radius: float = OCCUPY_RADIUS,
        bound: float = 1.0,
    ) -> ArenaWorld:
        assert n_types <= len(TYPE_COLOURS), f"at most {len(TYPE_COLOURS)} types have a colour"
        world = ArenaWorld(bound=bound)
        world.view_radius = view_radius
        world.n_types = n_types
        for i in range(n_agents):
            agent = Collector(i % n_types)
            agent.name = f"agent_{i}"
            agent.size, agent.accel, agent.max_speed = AGENT_SIZE, 3.0, 1.0
            agent.silent = True
            agent.color = np.array(TYPE_COLOURS[agent.type])
            world.agents.append(agent)
        for j in range(n_foods):
            food = Food(j % n_types, occupy_radius)
            food.name = f"food_{j}"
            food.collide, food.movable = False, False
            food.size = occupy_radius  # drawn as the area that counts as occupying it
            food.color = np.array(TYPE_COLOURS[food.type])
            world.landmarks.append(food)
        return world

    def reset_world(self, world: ArenaWorld, np_random: np.random.Generator) -> None:
        world.np_random = np_random
        placed: list[np.ndarray] = []
        for food in world.landmarks:
            food.state.p_pos = sample_clear_position(
                np_random, FOOD_SPAWN_FRACTION * world.bound, placed, FOOD_SEPARATION
            )
            food.state.p_vel = np.zeros(world.dim_p)
            placed.append(food.state.p_pos)
        food_pos = np.array(placed).reshape(-1, 2)
        widest = max((f.occupy_radius for f in world.landmarks), default=0.0)
        agent_pos = np.zeros((0, 2))
        for agent in world.agents:
            # off every food (no free occupancy) and off every other agent (no explosive start)
            pos = sample_clear_of_both(np_random, world.bound, (food_pos, agent.size + widest),
                                       (agent_pos, 2 * agent.size))
            agent.state.p_pos = pos
            agent_pos = np.vstack([agent_pos, pos])
            agent.state.p_vel = np.zeros(world.dim_p)
            agent.state.c = np.zeros(world.dim_c)
            agent.action.u = np.zeros(world.dim_p)
            agent.action.c = np.zeros(world.dim_c)

    def reward(self, agent: Collector, world: ArenaWorld) -> float:
        food_pos = np.array([food.state.p_pos for food in world.landmarks])
        dists = np.sqrt(np.sum(np.square(food_pos - agent.state.p_pos), axis=1))
        rew = -self.dist_scale * float(np.min(dists))
        held = occupancy(world)[world.agents.index(agent)]
        if held.any():
            rew += self.occupy_reward
            if any(food.type == agent.type for food, h in zip(world.landmarks, held, strict=True) if h):
                rew += self.type_match_bonus
        return rew

    def observation(self, agent: Collector, world: ArenaWorld) -> np.ndarray:
        """[own vel, own pos, own type one-hot,
        per food [visible, rel_pos, type one-hot], per other agent [visible, rel_pos, type one-hot]].
        """
        own_pos = agent.state.p_pos
        food_slots = encode_slots(
            own_pos,
            [food.state.p_pos for food in world.landmarks],
            world.view_radius,
            [one_hot(food.type, world.n_types) for food in world.landmarks],
        )
        others = [other for other in world.agents if other is not agent]
        agent_slots = encode_slots(
            own_pos,
            [other.state.p_pos for other in others],
            world.view_radius,
            [one_hot(other.type, world.n_types) for other in others],
        )
        return np.concatenate(
            [agent.state.p_vel, own_pos, one_hot(agent.type, world.n_types), food_slots, agent_slots]
        ).astype(np.float32)

    # The env server's hot path: reward and observation of every agent in K worlds built alike
    # at once. `reward` and `observation` above are the reference; tests check they agree.
    def batch_outcome(self, worlds: Sequence[ArenaWorld]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`reward` of every agent in each world, (n_agents, K) float64, and `step_metrics` of each
        world, from one pass over the food distances."""
        dists = batch_food_distances(worlds)
        held = batch_occupancy(worlds, dists)
        matched = held & same_type(worlds[0])
        rew = -self.dist_scale * dists.min(axis=2)
        rew = rew + self.occupy_reward * held.any(axis=2)
        rew = rew + self.type_match_bonus * matched.any(axis=2)
        return rew.T, metrics_of(dists, held, matched)

    def batch_observations(self, worlds: Sequence[ArenaWorld]) -> np.ndarray:
        """(n_agents, K, obs_dim) float32: `observation` of every agent in each world."""
        w0 = worlds[0]
        pos, vel, food_pos = stacked(worlds, "agents"), stacked(worlds, "agents", "p_vel"), stacked(worlds, "landmarks")
        types = np.eye(w0.n_types)
        agent_types = types[[a.type for a in w0.agents]]  # (n, T)
        food_types = types[[f.type for f in w0.landmarks]]  # (F, T)
        others = others_index(len(w0.agents))
        food_slots = encode_slots_batch(pos, food_pos[:, None], w0.view_radius, food_types)
        agent_slots = encode_slots_batch(pos, pos[:, others], w0.view_radius, agent_types[others])
        own_type = np.broadcast_to(agent_types, pos.shape[:2] + agent_types.shape[-1:])
        obs = np.concatenate([vel, pos, own_type, food_slots, agent_slots], axis=-1)
        return obs.transpose(1, 0, 2).astype(np.float32)

    def benchmark_data(self, agent: Collector, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)

    def step_metrics(self, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)


def same_type(world: ArenaWorld) -> np.ndarray:
    """(n_agents, n_foods) bool: agent i and food j have the same type."""
    return np.array([a.type for a in world.agents])[:, None] == np.array([f.type for f in world.landmarks])[None, :]


def step_metrics(world: ArenaWorld) -> dict[str, float]:
    """What happened in one world on the last step.

    foods_occupied: foods with at least one agent on them; type_matches: foods with an agent of
    their own type on them; min_food_distance: each agent's distance to its nearest food, averaged.
    """
    return {name: float(values[0]) for name, values in batch_step_metrics([world]).items()}


def batch_step_metrics(worlds: Sequence[ArenaWorld]) -> dict[str, np.ndarray]:
    """`step_metrics` of each of K worlds, as (K,) arrays."""
    dists = batch_food_distances(worlds)
    held = batch_occupancy(worlds, dists)
    return metrics_of(dists, held, held & same_type(worlds[0]))


def metrics_of(dists: np.ndarray, held: np.ndarray, matched: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics from (K, n_agents, n_foods) distances, occupancy and type-matched occupancy."""
    return {
        "foods_occupied": np.sum(held.any(axis=1), axis=-1).astype(np.float64),
        "type_matches": np.sum(matched.any(axis=1), axis=-1).astype(np.float64),
        "min_food_distance": np.mean(dists.min(axis=2), axis=-1),
    }


class raw_env(ArenaEnv, EzPickle):
    def __init__(
        self,
        n_agents: int = 6,
        n_foods: int = 6,
        n_types: int = 3,
        max_cycles: int = 50,
        continuous_actions: bool = False,
        render_mode: str | None = None,
        view_radius: float = VIEW_RADIUS,
        occupy_radius: float = OCCUPY_RADIUS,
        dist_scale: float = DIST_SCALE,
        occupy_reward: float = OCCUPY_REWARD,
        type_match_bonus: float = TYPE_MATCH_BONUS,
    ) -> None:
        EzPickle.__init__(
            self,
            n_agents=n_agents,
            n_foods=n_foods,
            n_types=n_types,
            max_cycles=max_cycles,
            continuous_actions=continuous_actions,
            render_mode=render_mode,
            view_radius=view_radius,
            occupy_radius=occupy_radius,
            dist_scale=dist_scale,
            occupy_reward=occupy_reward,
            type_match_bonus=type_match_bonus,
        )
        scenario = CollectionScenario(dist_scale, occupy_reward, type_match_bonus)
        world = scenario.make_world(n_agents, n_foods, n_types, view_radius, occupy_radius)
        ArenaEnv.__init__(
            self,
            name="cooperative_collection_v0",
            scenario=scenario,
            world=world,
            max_cycles=max_cycles,
            render_mode=render_mode,
            continuous_actions=continuous_actions,
        )


env = make_env(raw_env)
parallel_env = parallel_wrapper_fn(env)
