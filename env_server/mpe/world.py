"""What both DRIMA particle scenarios share: a walled arena world and fixed-slot partial views.

`ArenaWorld` is mpe2's `World` with three changes:

* scripted entities (the prey) live in `world.scripted`, not in `world.agents`, so PettingZoo
  only ever sees the learning agents; they still move by `action_callback` and collide;
* collision forces are computed for all pairs at once with numpy (same numbers as mpe2's loop);
* the arena is a square with walls at +-`bound`, so a fleeing prey can be cornered.

Every random draw goes through `world.np_random`, which the scenario's `reset_world` sets to the
env's seeded generator, so a seeded episode replays exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mpe2._mpe_utils.core import Agent, Entity, World
from mpe2._mpe_utils.simple_env import SimpleEnv

# Colours (RGB in [0, 1]) shared by mpe2's pygame renderer and render.py.
ROLE_COLOURS: dict[str, tuple[float, float, float]] = {
    "attacker": (0.20, 0.35, 0.85),
    "interceptor": (0.25, 0.70, 0.30),
    "prey": (0.85, 0.20, 0.20),
}
TYPE_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.55, 0.25, 0.75),  # purple
    (0.20, 0.35, 0.85),  # blue
    (0.25, 0.70, 0.30),  # green
)

Force = np.ndarray | float | None


class ArenaWorld(World):
    """mpe2 World with scripted non-agent entities, vectorised contacts and square walls."""

    def __init__(self, bound: float = 1.0) -> None:
        super().__init__()
        self.dim_c = 0  # every agent is silent
        self.bound = bound
        self.scripted: list[Agent] = []
        # how far an agent sees; scenarios set it, observations zero whatever lies beyond
        self.view_radius: float = np.inf
        # Replaced by the env's seeded generator in reset_world; this default only keeps a bare
        # world (tests, benchmarks) usable and still never touches the global np.random.
        self.np_random: np.random.Generator = np.random.default_rng(0)

    @property
    def entities(self) -> list[Entity]:
        return [*self.agents, *self.scripted, *self.landmarks]

    @property
    def movers(self) -> list[Agent]:
        """Everything that takes actions, in the order of the first slots of `entities`."""
        return [*self.agents, *self.scripted]

    def step(self) -> None:
        for entity in self.scripted:
            if entity.action_callback is not None:
                entity.action = entity.action_callback(entity, self)
        p_force: list[Force] = [None] * len(self.entities)
        p_force = self.apply_action_force(p_force)
        p_force = self.apply_environment_force(p_force)
        self.integrate_state(p_force)
        for agent in self.agents:
            self.update_agent_state(agent)

    def apply_action_force(self, p_force: list[Force]) -> list[Force]:
        # Indices follow `entities`: agents first, then scripted entities.
        for i, mover in enumerate(self.movers):
            if not mover.movable:
                continue
            noise = (
                self.np_random.standard_normal(mover.action.u.shape) * mover.u_noise
                if mover.u_noise
                else 0.0
            )
            p_force[i] = mover.action.u + noise
        return p_force

    def apply_environment_force(self, p_force: list[Force]) -> list[Force]:
        """All-pairs soft contact forces, numerically the same as mpe2's double loop."""
        entities = self.entities
        colliders = [i for i, e in enumerate(entities) if e.collide]
        if len(colliders) < 2:
            return p_force
        pos = np.array([entities[i].state.p_pos for i in colliders], dtype=np.float64)
        size = np.array([entities[i].size for i in colliders], dtype=np.float64)
        delta = pos[:, None, :] - pos[None, :, :]  # delta[a, b] = pos_a - pos_b
        dist = np.sqrt(np.sum(np.square(delta), axis=-1))
        k = self.contact_margin
        penetration = np.logaddexp(0, -(dist - (size[:, None] + size[None, :])) / k) * k
        # mpe2 divides by a zero distance and gets nan; coincident centres (and an entity against
        # itself, on the diagonal) get no push instead.
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(dist[..., None] > 0, delta / dist[..., None], 0.0)
        pair_force = self.contact_force * unit * penetration[..., None]
        total = pair_force.sum(axis=1)
        for row, i in enumerate(colliders):
            if entities[i].movable:
                p_force[i] = total[row] + (0.0 if p_force[i] is None else p_force[i])
        return p_force

    def integrate_state(self, p_force: list[Force]) -> None:
        super().integrate_state(p_force)
        self.apply_walls()

    def apply_walls(self) -> None:
        """Keep every centre inside the square; a wall stops the velocity that pushed out."""
        for entity in self.entities:
            if not entity.movable:
                continue
            pos, vel = entity.state.p_pos, entity.state.p_vel
            outside_low = (pos < -self.bound) & (vel < 0)
            outside_high = (pos > self.bound) & (vel > 0)
            vel[outside_low | outside_high] = 0.0
            np.clip(pos, -self.bound, self.bound, out=pos)


def visible(agent_pos: np.ndarray, other_pos: np.ndarray, radius: float) -> bool:
    """Whether `other_pos` lies within `radius` of `agent_pos` (the boundary counts as seen)."""
    offset = np.asarray(other_pos) - np.asarray(agent_pos)
    return bool(np.dot(offset, offset) <= radius * radius)


def encode_slots(
    observer_pos: np.ndarray,
    positions: Sequence[np.ndarray] | np.ndarray,
    radius: float,
    extras: Sequence[np.ndarray] | np.ndarray | None = None,
) -> np.ndarray:
    """Fixed-order slots `[visible, rel_x, rel_y, *extra]`, all zeros for an unseen entity.

    One slot per entity, in the order given (not sorted by distance), so the size never changes
    and a slot always means the same entity. Returns a flat float64 array.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    n = len(positions)
    extras = np.zeros((n, 0)) if extras is None else np.asarray(extras, np.float64).reshape(n, -1)
    return encode_slots_batch(np.asarray(observer_pos, dtype=np.float64), positions, radius, extras)


def encode_slots_batch(observer_pos: np.ndarray, positions: np.ndarray, radius: float,
                       extras: np.ndarray) -> np.ndarray:
    """`encode_slots` for many observers at once, broadcast over leading axes.

    observer_pos (..., 2), positions (..., m, 2), extras (..., m, e) -> (..., m * (3 + e)).
    """
    rel = positions - observer_pos[..., None, :]
    lead = rel.shape[:-1]  # (..., m)
    seen = np.sum(np.square(rel), axis=-1) <= radius * radius
    slots = np.concatenate(
        [np.ones(lead + (1,)), rel, np.broadcast_to(extras, lead + extras.shape[-1:])], axis=-1
    )
    slots[~seen] = 0.0
    return slots.reshape(lead[:-1] + (-1,))


class StateArrays:
    """Base of K worlds whose entity states live in shared (K, E, 2) arrays (batched.BatchedWorlds):
    `stacked` slices them instead of gathering entity by entity. A base class, not a runtime
    Protocol: `stacked` runs a few times per env step, and a Protocol isinstance costs ~20 us."""

    def stacked(self, group: str, field: str = "p_pos") -> np.ndarray:
        raise NotImplementedError


def stacked(worlds: Sequence[World], group: str, field: str = "p_pos") -> np.ndarray:
    """(K, m, 2): the `field` ("p_pos" or "p_vel") of every entity of `group` ("agents",
    "scripted" or "landmarks") in each of K worlds built alike."""
    if isinstance(worlds, StateArrays):
        return worlds.stacked(group, field)
    rows = [[getattr(e.state, field) for e in getattr(w, group)] for w in worlds]
    return np.array(rows, dtype=np.float64).reshape(len(worlds), -1, 2)


def others_index(n: int) -> np.ndarray:
    """(n, n - 1): row i lists every agent but i, in order (the order of the "other" slots)."""
    return np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.intp).reshape(n, n - 1)


def one_hot(index: int, size: int) -> np.ndarray:
    vec = np.zeros(size)
    vec[index] = 1.0
    return vec


def sample_clear_position(
    np_random: np.random.Generator,
    bound: float,
    avoid: Sequence[np.ndarray],
    min_distance: float,
    max_tries: int = 100,
) -> np.ndarray:
    """A uniform point in the square at least `min_distance` from every point in `avoid`.

    Rejection sampling; after `max_tries` the last draw is kept, so a crowded arena degrades to
    an overlapping start (collision forces separate it) instead of hanging. Each try checks every
    point in one numpy call: with 64 agents a Python loop over them made resets 86 % of a step.
    """
    others = np.asarray(avoid, dtype=float).reshape(-1, 2)
    for _ in range(max_tries):
        pos = np_random.uniform(-bound, bound, 2)
        if is_clear(pos, others, min_distance):
            break
    return pos


def sample_clear_of_both(
    np_random: np.random.Generator,
    bound: float,
    first: tuple[np.ndarray, float],
    then: tuple[np.ndarray, float],
    max_tries: int = 100,
) -> np.ndarray:
    """What this loop returns, and with the same draws from `np_random`:

        for _ in range(max_tries):
            pos = sample_clear_position(np_random, bound, *first, max_tries)
            if is_clear(pos, *then):
                break

    (`first`, `then`: points (n, 2) and a minimum distance). The draws are made and checked in
    blocks as arrays, then the generator is set back and advanced by exactly the draws the loop
    makes, so that every later draw is the same as with the loop. In a crowded arena (64 agents)
    the loop made thousands of checks per agent: resets were 70 % of collection's env step."""
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, not {max_tries}")
    (near, near_distance), (far, far_distance) = first, then
    state = np_random.bit_generator.state
    drawn = inner = outer = 0
    size = 16  # blocks grow: most spots are found in a few draws, a crowded arena needs thousands
    while True:
        block = np_random.uniform(-bound, bound, (size, 2))
        clear_first = _clear_rows(block, near, near_distance).tolist()
        clear_then = _clear_rows(block, far, far_distance).tolist()
        for i, (ok_first, ok_then) in enumerate(zip(clear_first, clear_then, strict=True)):
            inner += 1
            if ok_first or inner == max_tries:  # the inner loop's result
                inner, outer = 0, outer + 1
                if ok_then or outer == max_tries:  # the outer loop's
                    np_random.bit_generator.state = state
                    np_random.uniform(-bound, bound, (drawn + i + 1, 2))  # the draws the loop made, no more
                    return block[i]
        drawn += size
        size = min(4 * size, 1024)


def _clear_rows(points: np.ndarray, others: np.ndarray, min_distance: float) -> np.ndarray:
    """(m,) bool: is_clear for each row of `points` (m, 2), with is_clear's own arithmetic."""
    others = np.asarray(others, dtype=float).reshape(-1, 2)
    offsets = others[None] - points[:, None]
    return (np.sqrt(offsets[..., 0] * offsets[..., 0] + offsets[..., 1] * offsets[..., 1]) >= min_distance).all(1)


def is_clear(pos: np.ndarray, others: np.ndarray, min_distance: float) -> bool:
    """`pos` is at least `min_distance` from every row of `others` (n, 2); true for none."""
    offsets = others - pos  # the sum spelled out: np.sum's wrapper cost a fifth of a reset at n=64 (21 -> 16.7 ms/step)
    return bool((np.sqrt(offsets[:, 0] * offsets[:, 0] + offsets[:, 1] * offsets[:, 1]) >= min_distance).all())


def is_touching(entity_a: Entity, entity_b: Entity) -> bool:
    """Bodies overlap: centre distance below the sum of radii (mpe2's simple_tag rule)."""
    offset = entity_a.state.p_pos - entity_b.state.p_pos
    return bool(np.sqrt(np.dot(offset, offset)) < entity_a.size + entity_b.size)


class ArenaEnv(SimpleEnv):
    """mpe2's SimpleEnv with a per-instance name and a PIL picture for `rgb_array` renders."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # mpe2 writes the name into the class-level dict shared by every SimpleEnv; copy first.
        self.metadata = {**SimpleEnv.metadata, "name": name}

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            from .render import draw_world  # PIL only; keeps pygame out of rgb_array renders

            return np.asarray(draw_world(self.world))
        return super().render()
