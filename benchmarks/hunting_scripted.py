#!/usr/bin/env python
"""Scripted predators for Cooperative Hunting: what a team can do by rule, to check whether the
task asks for the cooperation the paper describes ("the predator group needs to learn cooperative
strategies to hit prey"; the fidelity issue asks that a lone chaser hit in under 5 % of CH-I
episodes and an attacker with blocking interceptors in most).

Each policy maps every world's state to one unit-scale force per predator (continuous actions),
for all worlds at once; the worlds step with mpe2's own per-world physics. `hit_rate` plays one
episode per world and counts the episodes in which an attacker touched a prey at least once.

    python benchmarks/hunting_scripted.py [--episodes 400] [--out benchmarks/results/hunting_scripted.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drima.env_server.mpe.hunting import HuntingScenario, batch_step_metrics
from drima.env_server.mpe.world import stacked

# (pos (K, n, 2), vel (K, n, 2), prey_pos (K, m, 2), prey_vel (K, m, 2), attacker (n,) bool) -> (K, n, 2)
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

LEAD_S = 0.3  # the attacker runs at where the prey will be this far ahead
BLOCK_DISTANCE = 0.35  # blocking interceptors aim this far beyond the prey, on its escape side
BLOCK_ANGLE = np.deg2rad(50.0)  # ... one each side of the attacker-prey line


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.where(norm > 1e-9, v / np.maximum(norm, 1e-9), 0.0)


def _nearest_prey(pos: np.ndarray, prey_pos: np.ndarray, prey_vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, n, 2) position and velocity of each predator's nearest prey."""
    dist = np.linalg.norm(pos[:, :, None] - prey_pos[:, None], axis=-1)  # (K, n, m)
    nearest = dist.argmin(axis=2)
    k = np.arange(pos.shape[0])[:, None]
    return prey_pos[k, nearest], prey_vel[k, nearest]


def chase(pos, vel, prey_pos, prey_vel, attacker) -> np.ndarray:
    """Every predator runs at where its nearest prey is heading."""
    target, target_vel = _nearest_prey(pos, prey_pos, prey_vel)
    return _unit(target + LEAD_S * target_vel - pos)


def stay(pos, vel, prey_pos, prey_vel, attacker) -> np.ndarray:
    """No force: the predator drifts to a stop where it spawned."""
    return np.zeros_like(pos)


def block(pos, vel, prey_pos, prey_vel, attacker) -> np.ndarray:
    """Interceptors run to the prey's escape side: points BLOCK_DISTANCE beyond the prey, at
    +-BLOCK_ANGLE from the line from the (first) attacker through the prey, so the prey fleeing
    the attacker runs towards them. Attackers chase."""
    target, _ = _nearest_prey(pos, prey_pos, prey_vel)
    first_attacker = pos[:, int(np.flatnonzero(attacker)[0])][:, None]  # (K, 1, 2)
    escape = _unit(target - first_attacker)  # (K, n, 2)
    sides = np.where(np.arange(pos.shape[1]) % 2 == 0, 1.0, -1.0)[None, :, None] * BLOCK_ANGLE
    cos, sin = np.cos(sides), np.sin(sides)
    rotated = np.concatenate([cos * escape[..., :1] - sin * escape[..., 1:],
                              sin * escape[..., :1] + cos * escape[..., 1:]], axis=-1)
    goal = target + BLOCK_DISTANCE * rotated
    forces = _unit(goal - pos)
    return np.where(attacker[None, :, None], chase(pos, vel, prey_pos, prey_vel, attacker), forces)


POLICIES: dict[str, Policy] = {"chase": chase, "stay": stay, "block": block}


def hit_rate(options: dict, interceptors: str, episodes: int = 400, seed: int = 0,
             attackers: str = "chase", episode_length: int = 30) -> dict[str, float]:
    """Plays `episodes` CH episodes with these `make_world` options (mpe2's own per-world physics):
    attackers by `attackers`, interceptors by `interceptors` (POLICIES names). Returns the share
    of episodes with at least one hit, hits and interceptor touches per episode."""
    scenario = HuntingScenario()
    worlds = [scenario.make_world(**options) for _ in range(episodes)]
    for k, world in enumerate(worlds):
        scenario.reset_world(world, np.random.default_rng([seed, k]))
    attacker = np.array([a.role == "attacker" for a in worlds[0].agents])
    policy_a, policy_i = POLICIES[attackers], POLICIES[interceptors]
    hit = np.zeros(episodes, bool)
    hits = touches = 0.0
    for _ in range(episode_length):
        pos, vel = stacked(worlds, "agents"), stacked(worlds, "agents", "p_vel")
        prey_pos, prey_vel = stacked(worlds, "scripted"), stacked(worlds, "scripted", "p_vel")
        forces = np.where(attacker[None, :, None], policy_a(pos, vel, prey_pos, prey_vel, attacker),
                          policy_i(pos, vel, prey_pos, prey_vel, attacker))
        for k, world in enumerate(worlds):
            for i, agent in enumerate(world.agents):
                agent.action.u = forces[k, i] * agent.accel
                agent.action.c = np.zeros(world.dim_c)
            world.step()
        metrics = batch_step_metrics(worlds)
        hit |= metrics["hits"] > 0
        hits += metrics["hits"].sum()
        touches += metrics["interceptor_collisions"].sum()
    return {"episodes_with_a_hit": float(hit.mean()), "hits_per_episode": hits / episodes,
            "interceptor_touches_per_episode": touches / episodes}


TEAMS = [("stay", "a lone attacker (the interceptors stay where they spawn)"),
         ("chase", "all three chase (from the same side)"),
         ("block", "interceptors run to the prey's escape side")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    a = p.parse_args()
    t0 = time.monotonic()
    lines = ["| interceptors | episodes with a hit | hits / episode | interceptor touches / episode |",
             "|---|---|---|---|"]
    for name, what in TEAMS:
        r = hit_rate({}, name, episodes=a.episodes)
        lines.append(f"| {what} | {r['episodes_with_a_hit']:.1%} | {r['hits_per_episode']:.2f} | "
                     f"{r['interceptor_touches_per_episode']:.2f} |")
    command = f"python benchmarks/hunting_scripted.py --episodes {a.episodes}"
    text = "\n".join([f"CH-I with its default options, {a.episodes} episodes of 30 steps, scripted predators "
                      f"(`{command}`, {time.monotonic() - t0:.0f} s):",
                      "", *lines, ""])
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
