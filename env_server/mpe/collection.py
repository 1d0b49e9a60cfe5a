"""Cooperative Collection (paper section 4.2, appendix B.2): six agents share out six foods.

Agents and foods come in three types (purple, blue, green), two of each: `agent_i.type = i % 3`,
`food_j.type = j % 3`. Agents collide with each other; foods are markers they can stand on.
Episodes last 50 steps in a walled 2 x 2 arena; each agent sees within VIEW_RADIUS = 1.0 (half the
arena's width: usually a few foods, rarely all of them, so agents must search).

An agent occupies a food when its centre is within OCCUPY_RADIUS = 0.05 of the food's centre and
no other agent is nearer to it. Agents have radius 0.15 (as in simple_spread), so two agents on one
food would have to overlap by 0.2; the soft contact force there (100 * 0.2 = 20) is over six times
an agent's full thrust (3), so at rest only one agent fits on a food and the contest of appendix
B.2.3 is physical. (MPE contacts are soft and explicit, so two agents meeting at speed do overlap
for a step; the "nearest holds it" rule keeps one holder per food even then.)

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
    one_hot,
    sample_clear_position,
)

VIEW_RADIUS = 1.0
OCCUPY_RADIUS = 0.05
DIST_SCALE = 0.1
OCCUPY_REWARD = 1.0
TYPE_MATCH_BONUS = 1.0

AGENT_SIZE = 0.15
# foods spread out so that an agent holding one never blocks another
FOOD_SEPARATION = 2 * AGENT_SIZE + 2 * OCCUPY_RADIUS
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
    agent_pos = np.array([agent.state.p_pos for agent in world.agents])
    food_pos = np.array([food.state.p_pos for food in world.landmarks])
    return np.sqrt(np.sum(np.square(agent_pos[:, None, :] - food_pos[None, :, :]), axis=-1))


def occupancy(world: ArenaWorld) -> np.ndarray:
    """(n_agents, n_foods) bool: agent i holds food j.

    Holding a food means being within its occupy_radius and nearer to it than every other agent
    (ties go to the lower index). MPE contacts are soft: two agents that meet at speed overlap for
    a step or two before they bounce apart, so this rule keeps "one food, one holder" exact even then.
    """
    dists = food_distances(world)
    radii = np.array([food.occupy_radius for food in world.landmarks])
    nearest = np.zeros_like(dists, dtype=bool)
    nearest[np.argmin(dists, axis=0), np.arange(dists.shape[1])] = True
    return nearest & (dists <= radii[None, :])


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
        food_pos = list(placed)
        agent_pos: list[np.ndarray] = []
        for agent in world.agents:
            # off every food (no free occupancy) and off every other agent (no explosive start)
            for _ in range(100):
                pos = sample_clear_position(
                    np_random, world.bound, food_pos, agent.size + OCCUPY_RADIUS
                )
                if all(np.linalg.norm(pos - other) >= 2 * agent.size for other in agent_pos):
                    break
            agent.state.p_pos = pos
            agent_pos.append(pos)
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
            if any(food.type == agent.type for food, h in zip(world.landmarks, held) if h):
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

    def benchmark_data(self, agent: Collector, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)

    def step_metrics(self, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)


def step_metrics(world: ArenaWorld) -> dict[str, float]:
    """What happened in one world on the last step.

    foods_occupied: foods with at least one agent on them; type_matches: foods with an agent of
    their own type on them; min_food_distance: each agent's distance to its nearest food, averaged.
    """
    occupied = occupancy(world)
    same_type = np.array([a.type for a in world.agents])[:, None] == np.array(
        [f.type for f in world.landmarks]
    )[None, :]
    return {
        "foods_occupied": float(np.sum(occupied.any(axis=0))),
        "type_matches": float(np.sum((occupied & same_type).any(axis=0))),
        "min_food_distance": float(np.mean(food_distances(world).min(axis=1))),
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
