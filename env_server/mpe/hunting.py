"""Cooperative Hunting (paper section 4.2, appendix B.2): slow predators chase a fast scripted prey.

CH-I is 1 prey, 1 attacker, 2 interceptors; CH-II is 2 prey, 2 attackers, 2 interceptors.
Episodes last 30 steps in a walled 2 x 2 arena. Only the predators are PettingZoo agents, in the
order attackers then interceptors (`attacker_0`, `interceptor_0`, `interceptor_1`); the prey lives
in `world.scripted` and flees by rule (`prey_policy`).

Reward per predator per step:

    -DIST_SCALE * (distance to nearest prey)                      every predator
    +HIT_BONUS for each prey it hits                              attacker
    -COLLISION_PENALTY for each prey it touches                   interceptor

with DIST_SCALE = 0.1, HIT_BONUS = 10, COLLISION_PENALTY = 1 (touch: centres closer than the sum
of radii, 0.075 + 0.05). What counts as a hit is the capture rule, `capture` (`is_hit`):

* "team" (the default): the attacker's centre within HIT_RANGE = 0.35 of the prey's and an
  interceptor's within PARTNER_RADIUS = 0.14 of it; the prey spawns 0.5 clear of every predator.
  A hit needs an interceptor blocking the prey. Scripted CH-I predators, 400 episodes
  (benchmarks/hunting_scripted.py): a lone attacker (interceptors idle) hits in 2.8 % of
  episodes, all three chasing in 31 %, interceptors closing in on the prey's flanks in 60 %.
* "touch" (the first version): every attacker-prey touch is a hit. A lone attacker hits in a
  quarter of the episodes, so the task did not ask for the interceptors.

How these numbers make the saddle of Table 2 ((approach, approach) = (15, -5) is the optimum,
(attacker approaches, interceptor avoids) = (5, 0) the saddle), measured under "touch" (under
"team" an interceptor that hangs back leaves the attacker without hits altogether). Over 400 CH-I
episodes with scripted predators, discrete actions; the attacker runs at where the prey is heading:

    interceptors                 hits/ep  touches/ep (both)  attacker  each interceptor  sum
    stay where they spawn         0.47      0.06              +2.9        -3.8           -4.7
    hang back 0.3 from the prey   0.78      0.55              +5.8        -2.5           +0.9
    run at the prey (blocking)    1.02      2.04              +8.3        -3.0           +2.4

* The distance term is worth the same whether an interceptor hangs back or blocks (about -2 per
  episode either way), so touches decide: blocking costs each interceptor ~0.75 extra touches,
  -0.75 at COLLISION_PENALTY = 1. Alone, an interceptor prefers to hang back: near, not touching.
* Blocked, the prey is trapped more often: +0.25 hits, +2.5 for the attacker, which outweighs
  the two interceptors' -1.5. The group is better off at blocking (+2.4 > +0.9), no interceptor is.
* The window is COLLISION_PENALTY between ~0.15 (below, blocking pays the interceptor itself: no
  dilemma) and ~2 (above, blocking costs more than it brings the group). 1 sits in the middle.
* Under "touch", a lone chaser catches the faster prey mainly when it pins it in a corner late in
  the episode (first hit in ~24% of episodes, typically after step 15).

Predators see within VIEW_RADIUS = 1.5 (three quarters of the arena's width: the prey is in view
at most spawns, so a learner gets a signal, but a far corner can still hide it). The prey sees
predators only within PREY_VIEW_RADIUS = 0.6, so interceptors can circle round outside its view.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gymnasium.utils import EzPickle
from mpe2._mpe_utils.core import Action, Agent
from mpe2._mpe_utils.scenario import BaseScenario
from mpe2._mpe_utils.simple_env import make_env
from pettingzoo.utils.conversions import parallel_wrapper_fn

from .world import (
    ROLE_COLOURS,
    ArenaEnv,
    ArenaWorld,
    encode_slots,
    encode_slots_batch,
    is_touching,
    others_index,
    sample_clear_position,
    stacked,
)

VIEW_RADIUS = 1.5
PREY_VIEW_RADIUS = 0.6
DIST_SCALE = 0.1
HIT_BONUS = 10.0
COLLISION_PENALTY = 1.0
# Capture rules (`capture`): "team" (the default) and "touch" (the first version, kept as an option).
#   team:  the attacker hits while its centre is within HIT_RANGE of the prey's (its firepower's
#          reach) and an interceptor's centre is within PARTNER_RADIUS of the prey's (close
#          enough to block it: 0.015 short of touching it); the prey spawns at least
#          TEAM_SPAWN_CLEARANCE from every predator.
#   touch: the attacker hits whenever its body touches the prey's; the prey spawns just clear of
#          touching (TOUCH_SPAWN_CLEARANCE).
CAPTURE_RULES = ("team", "touch")
HIT_RANGE = 0.35
PARTNER_RADIUS = 0.14
TEAM_SPAWN_CLEARANCE = 0.5
TOUCH_SPAWN_CLEARANCE = 0.075 + 0.05 + 0.05  # touching distance plus a gap: no free hit at spawn

# Prey rule: a wall starts to repel WALL_MARGIN from it; WALL_WEIGHT > 1 makes a heading straight
# into an adjacent wall lose to a slide along it; WANDER_STRENGTH is the idle thrust (fraction).
WALL_MARGIN = 0.3
WALL_WEIGHT = 1.5
CENTRE_PULL = 0.05  # breaks ties (e.g. which way to slide along a wall) towards open space
WANDER_STRENGTH = 0.3
N_HEADINGS = 32
HEADINGS = np.stack(
    [np.cos(np.arange(N_HEADINGS) * 2 * np.pi / N_HEADINGS),
     np.sin(np.arange(N_HEADINGS) * 2 * np.pi / N_HEADINGS)],
    axis=1,
)


class Predator(Agent):
    def __init__(self, role: str) -> None:
        super().__init__()
        assert role in ("attacker", "interceptor"), f"unknown predator role {role!r}"
        self.role = role


class Prey(Agent):
    def __init__(self, view_radius: float) -> None:
        super().__init__()
        self.role = "prey"
        self.view_radius = view_radius


def choose_heading(pos: np.ndarray, wish: np.ndarray, bound: float) -> np.ndarray:
    """The unit heading closest to `wish` that does not run into a near wall.

    Scores each of N_HEADINGS candidates by its alignment with `wish`, minus WALL_WEIGHT times how
    far it points into each wall times how close that wall is. A flight straight at a wall thus
    becomes a slide along it, and only a corner can trap the prey.
    """
    closeness = np.clip((np.abs(pos) - (bound - WALL_MARGIN)) / WALL_MARGIN, 0.0, 1.0)
    outward = np.maximum(HEADINGS * np.sign(pos), 0.0)  # (N_HEADINGS, 2)
    score = HEADINGS @ wish - WALL_WEIGHT * (outward @ closeness) - CENTRE_PULL * (HEADINGS @ pos)
    return HEADINGS[int(np.argmax(score))]


def prey_policy(prey: Prey, world: ArenaWorld) -> Action:
    """Flee visible predators, sliding along walls; wander a little when none is in view.

    The flight wish is the sum of unit vectors away from the predators in view, each weighted by
    1 / distance, so the nearest threat counts most. Random draws come from `world.np_random`
    only, so the prey is deterministic given the env's seed.
    """
    away = np.zeros(world.dim_p)
    for predator in world.agents:
        offset = prey.state.p_pos - predator.state.p_pos
        dist = float(np.sqrt(np.dot(offset, offset)))
        if 0.0 < dist <= prey.view_radius:
            away += offset / dist**2  # (offset / dist) * (1 / dist)
    away_norm = float(np.sqrt(np.dot(away, away)))
    if away_norm > 0.0:
        thrust, wish = 1.0, away / away_norm
    else:
        angle = world.np_random.uniform(0.0, 2.0 * np.pi)
        thrust, wish = WANDER_STRENGTH, np.array([np.cos(angle), np.sin(angle)])
    action = Action()
    action.u = thrust * prey.accel * choose_heading(prey.state.p_pos, wish, world.bound)
    action.c = np.zeros(world.dim_c)
    return action


class HuntingScenario(BaseScenario):
    def __init__(
        self,
        dist_scale: float = DIST_SCALE,
        hit_bonus: float = HIT_BONUS,
        collision_penalty: float = COLLISION_PENALTY,
    ) -> None:
        self.dist_scale = dist_scale
        self.hit_bonus = hit_bonus
        self.collision_penalty = collision_penalty

    def make_world(
        self,
        n_prey: int = 1,
        n_attackers: int = 1,
        n_interceptors: int = 2,
        view_radius: float = VIEW_RADIUS,
        prey_view_radius: float = PREY_VIEW_RADIUS,
        bound: float = 1.0,
        capture: str = "team",
        hit_range: float = HIT_RANGE,
        partner_radius: float = PARTNER_RADIUS,
    ) -> ArenaWorld:
        """`capture` "team" or "touch" (CAPTURE_RULES); `hit_range` and `partner_radius` are the
        "team" rule's distances (ignored under "touch")."""
        assert n_prey >= 1 and n_attackers >= 1, "hunting needs at least one prey and one attacker"
        if capture not in CAPTURE_RULES:
            raise ValueError(f"hunting capture must be one of {CAPTURE_RULES}, got {capture!r}")
        if capture == "team" and n_interceptors < 1:
            raise ValueError('hunting capture "team" needs an interceptor (use capture "touch" without one)')
        world = ArenaWorld(bound=bound)
        world.view_radius = view_radius
        world.capture = capture
        # the "team" rule's distances; None under "touch", where a touch is a hit
        team = capture == "team"
        world.hit_range = float(hit_range) if team else None
        world.partner_radius = float(partner_radius) if team else None
        world.spawn_clearance = TEAM_SPAWN_CLEARANCE if team else TOUCH_SPAWN_CLEARANCE
        roles = ["attacker"] * n_attackers + ["interceptor"] * n_interceptors
        role_counts = {"attacker": 0, "interceptor": 0}
        for role in roles:
            predator = Predator(role)
            predator.name = f"{role}_{role_counts[role]}"
            role_counts[role] += 1
            # simple_tag's adversary: slower than the prey and bigger
            predator.size, predator.accel, predator.max_speed = 0.075, 3.0, 1.0
            predator.silent = True
            predator.color = np.array(ROLE_COLOURS[role])
            world.agents.append(predator)
        for i in range(n_prey):
            prey = Prey(prey_view_radius)
            prey.name = f"prey_{i}"
            prey.size, prey.accel, prey.max_speed = 0.05, 4.0, 1.3
            prey.silent = True
            prey.action_callback = prey_policy
            prey.color = np.array(ROLE_COLOURS["prey"])
            world.scripted.append(prey)
        return world

    def reset_world(self, world: ArenaWorld, np_random: np.random.Generator) -> None:
        world.np_random = np_random
        for predator in world.agents:
            predator.state.p_pos = np_random.uniform(-world.bound, world.bound, world.dim_p)
        predator_pos = [p.state.p_pos for p in world.agents]
        for prey in world.scripted:
            # no episode starts with a free hit ("touch") or a prey already in reach ("team")
            prey.state.p_pos = sample_clear_position(
                np_random, world.bound, predator_pos, world.spawn_clearance
            )
        for mover in world.movers:
            mover.state.p_vel = np.zeros(world.dim_p)
            mover.state.c = np.zeros(world.dim_c)
            mover.action.u = np.zeros(world.dim_p)
            mover.action.c = np.zeros(world.dim_c)

    def reward(self, agent: Predator, world: ArenaWorld) -> float:
        offsets = np.array([prey.state.p_pos for prey in world.scripted]) - agent.state.p_pos
        rew = -self.dist_scale * float(np.min(np.sqrt(np.sum(np.square(offsets), axis=1))))
        if agent.role == "attacker":
            rew += self.hit_bonus * sum(is_hit(agent, prey, world) for prey in world.scripted)
        else:
            rew -= self.collision_penalty * sum(is_touching(agent, prey) for prey in world.scripted)
        return rew

    def observation(self, agent: Predator, world: ArenaWorld) -> np.ndarray:
        """[own vel, own pos, role one-hot (attacker, interceptor),
        per prey [visible, rel_pos, rel_vel], per other predator [visible, rel_pos, is_attacker]].
        """
        own_pos, own_vel = agent.state.p_pos, agent.state.p_vel
        role = [1.0, 0.0] if agent.role == "attacker" else [0.0, 1.0]
        prey_slots = encode_slots(
            own_pos,
            [prey.state.p_pos for prey in world.scripted],
            world.view_radius,
            [prey.state.p_vel - own_vel for prey in world.scripted],
        )
        others = [other for other in world.agents if other is not agent]
        predator_slots = encode_slots(
            own_pos,
            [other.state.p_pos for other in others],
            world.view_radius,
            [[1.0 if other.role == "attacker" else 0.0] for other in others],
        )
        return np.concatenate([own_vel, own_pos, role, prey_slots, predator_slots]).astype(
            np.float32
        )

    # The env server's hot path: reward and observation of every predator in K worlds built
    # alike at once. `reward` and `observation` above are the reference; tests check they agree.
    def batch_outcome(self, worlds: Sequence[ArenaWorld]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`reward` of every predator in each world, (n_predators, K) float64, and `step_metrics`
        of each world, from one pass over the prey contacts."""
        dists, touching = prey_contacts(worlds)
        scoring = captures(dists, touching, worlds[0])
        attacker = np.array([a.role == "attacker" for a in worlds[0].agents])
        rew = -self.dist_scale * dists.min(axis=2)
        rew = rew + np.where(attacker, self.hit_bonus * scoring.sum(axis=2),
                             -self.collision_penalty * touching.sum(axis=2))
        return rew.T, metrics_of(dists, touching, scoring, attacker)

    def batch_observations(self, worlds: Sequence[ArenaWorld]) -> np.ndarray:
        """(n_predators, K, obs_dim) float32: `observation` of every predator in each world."""
        w0 = worlds[0]
        pos, vel = stacked(worlds, "agents"), stacked(worlds, "agents", "p_vel")
        prey_pos, prey_vel = stacked(worlds, "scripted"), stacked(worlds, "scripted", "p_vel")
        attacker = np.array([[1.0 if a.role == "attacker" else 0.0] for a in w0.agents])  # (n, 1)
        role = np.broadcast_to(np.concatenate([attacker, 1.0 - attacker], axis=1), pos.shape)
        others = others_index(len(w0.agents))
        prey_slots = encode_slots_batch(pos, prey_pos[:, None], w0.view_radius,
                                        prey_vel[:, None] - vel[:, :, None])
        predator_slots = encode_slots_batch(pos, pos[:, others], w0.view_radius, attacker[others])
        obs = np.concatenate([vel, pos, role, prey_slots, predator_slots], axis=-1)
        return obs.transpose(1, 0, 2).astype(np.float32)

    def benchmark_data(self, agent: Predator, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)

    def step_metrics(self, world: ArenaWorld) -> dict[str, float]:
        return step_metrics(world)


def prey_contacts(worlds: Sequence[ArenaWorld]) -> tuple[np.ndarray, np.ndarray]:
    """(K, n_predators, n_prey) centre distances, and whether the bodies touch (`is_touching`)."""
    w0 = worlds[0]
    offsets = stacked(worlds, "agents")[:, :, None, :] - stacked(worlds, "scripted")[:, None, :, :]
    dists = np.sqrt(np.sum(np.square(offsets), axis=-1))
    reach = np.array([a.size for a in w0.agents])[:, None] + np.array([p.size for p in w0.scripted])[None, :]
    return dists, dists < reach


def is_hit(attacker: Predator, prey: Prey, world: ArenaWorld) -> bool:
    """The attacker hits the prey: under "touch", their bodies touch; under "team", the attacker's
    centre is within `world.hit_range` of the prey's and an interceptor's within
    `world.partner_radius` (boundaries count)."""
    if world.capture == "touch":
        return is_touching(attacker, prey)

    def dist(agent: Predator) -> float:
        offset = agent.state.p_pos - prey.state.p_pos
        return float(np.sqrt(np.dot(offset, offset)))

    return dist(attacker) <= world.hit_range and any(
        dist(other) <= world.partner_radius for other in world.agents if other.role == "interceptor"
    )


def captures(dists: np.ndarray, touching: np.ndarray, world: ArenaWorld) -> np.ndarray:
    """(K, n_predators, n_prey): which predator-prey pairs would score a hit (`is_hit`) were that
    predator an attacker, from `prey_contacts` of K worlds built like `world`."""
    if world.capture == "touch":
        return touching
    interceptor = np.array([a.role == "interceptor" for a in world.agents])
    blocked = (dists[:, interceptor] <= world.partner_radius).any(axis=1, keepdims=True)  # (K, 1, n_prey)
    return (dists <= world.hit_range) & blocked


def step_metrics(world: ArenaWorld) -> dict[str, float]:
    """What happened in one world on the last step.

    hits: attacker-prey pairs that score under the world's capture rule (`is_hit`);
    interceptor_collisions: interceptor-prey contacts; min_prey_distance: the closest any
    predator is to any prey (centre to centre).
    """
    return {name: float(values[0]) for name, values in batch_step_metrics([world]).items()}


def batch_step_metrics(worlds: Sequence[ArenaWorld]) -> dict[str, np.ndarray]:
    """`step_metrics` of each of K worlds, as (K,) arrays."""
    dists, touching = prey_contacts(worlds)
    scoring = captures(dists, touching, worlds[0])
    return metrics_of(dists, touching, scoring, np.array([a.role == "attacker" for a in worlds[0].agents]))


def metrics_of(dists: np.ndarray, touching: np.ndarray, scoring: np.ndarray,
               attacker: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics from (K, n_predators, n_prey) distances, contacts and scoring pairs
    (`captures`), and which predators attack."""
    return {
        "hits": scoring[:, attacker].sum(axis=(1, 2)).astype(np.float64),
        "interceptor_collisions": touching[:, ~attacker].sum(axis=(1, 2)).astype(np.float64),
        "min_prey_distance": dists.min(axis=(1, 2)),
    }


class raw_env(ArenaEnv, EzPickle):
    def __init__(
        self,
        n_prey: int = 1,
        n_attackers: int = 1,
        n_interceptors: int = 2,
        max_cycles: int = 30,
        continuous_actions: bool = False,
        render_mode: str | None = None,
        view_radius: float = VIEW_RADIUS,
        prey_view_radius: float = PREY_VIEW_RADIUS,
        dist_scale: float = DIST_SCALE,
        hit_bonus: float = HIT_BONUS,
        collision_penalty: float = COLLISION_PENALTY,
        capture: str = "team",
        hit_range: float = HIT_RANGE,
        partner_radius: float = PARTNER_RADIUS,
    ) -> None:
        EzPickle.__init__(
            self,
            n_prey=n_prey,
            n_attackers=n_attackers,
            n_interceptors=n_interceptors,
            max_cycles=max_cycles,
            continuous_actions=continuous_actions,
            render_mode=render_mode,
            view_radius=view_radius,
            prey_view_radius=prey_view_radius,
            dist_scale=dist_scale,
            hit_bonus=hit_bonus,
            collision_penalty=collision_penalty,
            capture=capture,
            hit_range=hit_range,
            partner_radius=partner_radius,
        )
        scenario = HuntingScenario(dist_scale, hit_bonus, collision_penalty)
        world = scenario.make_world(
            n_prey, n_attackers, n_interceptors, view_radius, prey_view_radius,
            capture=capture, hit_range=hit_range, partner_radius=partner_radius,
        )
        ArenaEnv.__init__(
            self,
            name="cooperative_hunting_v0",
            scenario=scenario,
            world=world,
            max_cycles=max_cycles,
            render_mode=render_mode,
            continuous_actions=continuous_actions,
        )


env = make_env(raw_env)
parallel_env = parallel_wrapper_fn(env)
