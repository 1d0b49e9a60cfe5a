"""K arena worlds stepped as one numpy computation, and the per-world reference it must match.

`MPEVectorEnv` holds its K worlds as a `WorldBatch`: a list of `ArenaWorld`s (scenario code reads
and resets them as before) that also steps them all. Two kinds:

* `BatchedWorlds` (the default) keeps every entity's position and velocity in two (K, E, 2)
  arrays and steps all K worlds at once: action forces, all-pairs contacts, mpe2's
  `integrate_state` (damping, mass, max speed) and the walls, in that order and with the same
  floating-point operations as `ArenaWorld.step`, so the two give the same numbers.
  Each entity's state is a `BoundState`: `p_pos` / `p_vel` are views into those arrays, and
  assigning one (as `reset_world` does) copies into them, so scenario code keeps reading and
  writing `entity.state` unchanged. Unlike mpe2, a velocity array read before a step changes with
  it (mpe2 replaces `p_vel` each step; positions change in place in both).
* `LoopedWorlds` calls `ArenaWorld.step` (mpe2's own integration) on each world in turn: the
  reference for the golden-trace tests and the benchmark's old path.

Scripted entities (the prey) act by their `action_callback`, per world, unless the callback has a
batched form (`ScriptBatch`, e.g. hunting_batch.py) that gives all K worlds' forces at once. Both
draw from each world's own generator, in the same order as `ArenaWorld.step` (scripted entities
in order, then motor noise), so a seeded episode replays exactly on either kind. The batched step
writes neither the entities' `action` nor mpe2's silent `state.c` (nothing reads them here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

import numpy as np
from mpe2._mpe_utils.core import AgentState, EntityState

from .world import ArenaWorld, StateArrays

PHYSICS_KINDS = ("batched", "looped")


class WorldBatch(Protocol):
    """K worlds built alike, stepped together. Indexing and iteration give the `ArenaWorld`s."""

    def __getitem__(self, k: int) -> ArenaWorld: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[ArenaWorld]: ...

    def step(self, agent_force: np.ndarray) -> None:
        """One physics step of every world; agent_force (K, n_agents, 2) is each learner's
        action force, already scaled by its acceleration."""


class ScriptBatch(Protocol):
    """The batched form of a scripted entity's `action_callback`: the action force (K, 2) of
    scripted entity number `slot` in each of the K worlds, the same as the callback's `action.u`."""

    def __call__(self, worlds: BatchedWorlds, slot: int) -> np.ndarray: ...


def make_world_batch(kind: str, worlds: Iterable[ArenaWorld],
                     batch_scripts: Mapping[Callable, ScriptBatch] | None = None) -> WorldBatch:
    """`kind` "batched" (the default everywhere) or "looped" (mpe2's integration, one world at a
    time). `batch_scripts` maps action callbacks to their batched forms (used when batched)."""
    if kind == "batched":
        return BatchedWorlds(worlds, batch_scripts)
    if kind == "looped":
        return LoopedWorlds(worlds)
    raise ValueError(f"MPE physics must be one of {PHYSICS_KINDS}, got {kind!r}")


class LoopedWorlds(list[ArenaWorld]):
    """The reference: each world's own `ArenaWorld.step`, one after the other."""

    def step(self, agent_force: np.ndarray) -> None:
        for world, forces in zip(self, agent_force, strict=True):
            for agent, force in zip(world.agents, forces, strict=True):
                agent.action.u = force
                agent.action.c = np.zeros(world.dim_c)
            world.step()


class BoundState(AgentState):
    """An entity's state held in the batch's arrays: `p_pos` / `p_vel` return views of one row,
    and assigning copies into it (so `reset_world` and tests that place entities work as before).
    An `AgentState` for every entity, so agents keep their `c`."""

    def __init__(self, old: EntityState, pos: np.ndarray, vel: np.ndarray) -> None:
        super().__init__()
        self._pos, self._vel = pos, vel
        for name in ("p_pos", "p_vel", "c"):  # whatever the old state had set
            value = _initialised(old, name)
            if value is not None:
                setattr(self, name, value)

    @property
    def p_pos(self) -> np.ndarray:
        return self._pos

    @p_pos.setter
    def p_pos(self, value: np.ndarray) -> None:
        self._pos[...] = value

    @property
    def p_vel(self) -> np.ndarray:
        return self._vel

    @p_vel.setter
    def p_vel(self, value: np.ndarray) -> None:
        self._vel[...] = value


def _initialised(state: EntityState, name: str) -> np.ndarray | None:
    """The state's field, or None before mpe2's first assignment (its getter asserts); a
    landmark's `EntityState` has no `c` at all."""
    try:
        return getattr(state, name)
    except (AssertionError, AttributeError):
        return None


class BatchedWorlds(list[ArenaWorld], StateArrays):
    """K worlds built alike whose physics is one numpy computation over (K, E, 2) arrays.

    Entities are in `ArenaWorld.entities` order: agents, scripted, landmarks.
    """

    def __init__(self, worlds: Iterable[ArenaWorld],
                 batch_scripts: Mapping[Callable, ScriptBatch] | None = None) -> None:
        super().__init__(worlds)
        w0 = self[0]
        entities = w0.entities
        if any(len(w.agents) != len(w0.agents) or len(w.entities) != len(entities) for w in self):
            raise ValueError("batched MPE physics needs K worlds built alike (the same entities in each)")
        self.groups = _group_slices(w0)
        self.pos = np.zeros((len(self), len(entities), w0.dim_p))
        self.vel = np.zeros_like(self.pos)
        for k, world in enumerate(self):
            for e, entity in enumerate(world.entities):
                entity.state = BoundState(entity.state, self.pos[k, e], self.vel[k, e])
        self.dt, self.damping, self.bound = w0.dt, w0.damping, w0.bound
        self.contact_force, self.contact_margin = w0.contact_force, w0.contact_margin
        self.movable = np.flatnonzero([e.movable for e in entities])
        self.colliders = np.flatnonzero([e.collide for e in entities])
        size = np.array([e.size for e in entities], dtype=np.float64)[self.colliders]
        self.contact_reach = size[:, None] + size[None, :]
        self.mass = np.array([e.mass for e in entities], dtype=np.float64)[self.movable, None]
        self.max_speed = np.array([np.inf if e.max_speed is None else e.max_speed for e in entities])[self.movable]
        movers = w0.movers
        # motor noise: movable movers with a u_noise, drawn per world in mover order
        self.noisy = [(i, m.u_noise) for i, m in enumerate(movers) if m.movable and m.u_noise]
        self.n_agents, self.n_movers = len(w0.agents), len(movers)
        self.scripts = [_batch_form(self, s, batch_scripts or {}) for s in range(len(w0.scripted))]

    def stacked(self, group: str, field: str = "p_pos") -> np.ndarray:
        """(K, m, 2) copy of `field` ("p_pos" or "p_vel") of `group` ("agents", "scripted",
        "landmarks"): what `world.stacked` gathers entity by entity."""
        arrays = {"p_pos": self.pos, "p_vel": self.vel}
        return arrays[field][:, self.groups[group]].copy()

    def step(self, agent_force: np.ndarray) -> None:
        force = np.zeros_like(self.pos)
        force[:, : self.n_agents] = agent_force
        for slot, batch_form in enumerate(self.scripts):
            force[:, self.n_agents + slot] = self._scripted_action(slot, batch_form)
        if self.noisy:
            force[:, : self.n_movers] += self._motor_noise()
        if len(self.colliders) >= 2:
            force[:, self.colliders] = self._contact_forces() + force[:, self.colliders]
        self._integrate(force)

    def _scripted_action(self, slot: int, batch_form: ScriptBatch | None) -> np.ndarray:
        """(K, 2) action force of scripted entity `slot`: its batched form, or its callback per world."""
        if batch_form is not None:
            return batch_form(self, slot)
        forces = np.empty((len(self), self.pos.shape[-1]))
        for k, world in enumerate(self):
            entity = world.scripted[slot]
            if entity.action_callback is not None:
                entity.action = entity.action_callback(entity, world)
            forces[k] = entity.action.u
        return forces

    def _motor_noise(self) -> np.ndarray:
        noise = np.zeros((len(self), self.n_movers, self.pos.shape[-1]))
        for k, world in enumerate(self):
            for i, scale in self.noisy:
                noise[k, i] = world.np_random.standard_normal(self.pos.shape[-1]) * scale
        return noise

    def _contact_forces(self) -> np.ndarray:
        """(K, C, 2): `ArenaWorld.apply_environment_force`'s sums, for every world at once."""
        pos = self.pos[:, self.colliders]
        delta = pos[:, :, None, :] - pos[:, None, :, :]
        dist = np.sqrt(np.sum(np.square(delta), axis=-1))
        k = self.contact_margin
        penetration = np.logaddexp(0, -(dist - self.contact_reach) / k) * k
        with np.errstate(divide="ignore", invalid="ignore"):
            unit = np.where(dist[..., None] > 0, delta / dist[..., None], 0.0)
        return (self.contact_force * unit * penetration[..., None]).sum(axis=2)

    def _integrate(self, force: np.ndarray) -> None:
        """mpe2's `World.integrate_state`, then `ArenaWorld.apply_walls`, written in place."""
        movable = self.movable
        pos, vel = self.pos[:, movable], self.vel[:, movable]
        pos += vel * self.dt
        vel = vel * (1 - self.damping)
        vel += (force[:, movable] / self.mass) * self.dt
        speed = np.sqrt(np.square(vel[..., 0]) + np.square(vel[..., 1]))
        fast = speed > self.max_speed
        if fast.any():
            limit = np.broadcast_to(self.max_speed, fast.shape)[fast]
            vel[fast] = vel[fast] / speed[fast][:, None] * limit[:, None]
        outside = ((pos < -self.bound) & (vel < 0)) | ((pos > self.bound) & (vel > 0))
        vel[outside] = 0.0
        np.clip(pos, -self.bound, self.bound, out=pos)
        self.pos[:, movable], self.vel[:, movable] = pos, vel


def _group_slices(world: ArenaWorld) -> dict[str, slice]:
    n_agents, n_scripted = len(world.agents), len(world.scripted)
    return {"agents": slice(0, n_agents), "scripted": slice(n_agents, n_agents + n_scripted),
            "landmarks": slice(n_agents + n_scripted, None)}


def _batch_form(worlds: BatchedWorlds, slot: int, batch_scripts: Mapping[Callable, ScriptBatch]) -> ScriptBatch | None:
    """The batched form of scripted entity `slot`'s callback, if it has one and every world uses it."""
    callbacks = {world.scripted[slot].action_callback for world in worlds}
    callback = callbacks.pop() if len(callbacks) == 1 else None
    return batch_scripts.get(callback) if callback is not None else None
