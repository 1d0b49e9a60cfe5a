#!/usr/bin/env python
"""Scripted predators for Cooperative Hunting: what a team can do by rule, to check whether the
task asks for the cooperation the paper describes ("the predator group needs to learn cooperative
strategies to hit prey"; the fidelity issue asks that a lone chaser hit in under 5 % of CH-I
episodes and an attacker with blocking interceptors in most).

Each policy maps every world's state to one unit-scale force per predator (continuous actions),
for all worlds at once; the worlds step with the env server's batched physics (the same numbers
as mpe2's per-world physics: tests/test_mpe_batched.py). `hit_rate` plays one episode per world
and counts the episodes with at least one hit under the scenario's capture rule ("team", the
default, or "touch", the first version), and each role's return from the scenario's own rewards.

    python benchmarks/hunting_scripted.py [--episodes 400] [--seed 0] [--out benchmarks/results/hunting_scripted.md]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drima.env_server.mpe.batched import make_world_batch
from drima.env_server.mpe.hunting import HuntingScenario
from drima.env_server.mpe.hunting_batch import BATCH_SCRIPTS
from drima.env_server.mpe.world import stacked

# (pos (K, n, 2), vel (K, n, 2), prey_pos (K, m, 2), prey_vel (K, m, 2), attacker (n,) bool) -> (K, n, 2)
Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]

LEAD_S = 0.3  # the attacker runs at where the prey will be this far ahead
BLOCK_DISTANCE = 0.35  # blocking interceptors aim this far beyond the prey, on its escape side
BLOCK_ANGLE = np.deg2rad(50.0)  # ... one each side of the attacker-prey line
# pincer: interceptors aim at points on the prey's flanks, PINCER_ANGLE each side of the
# attacker-prey line, PINCER_CLOSING times the attacker's distance from the prey away from it
# (clipped to PINCER_NEAREST..PINCER_FARTHEST), so they close in as the attacker does
PINCER_ANGLE = np.deg2rad(70.0)
PINCER_CLOSING = 0.8
PINCER_NEAREST, PINCER_FARTHEST = 0.13, 0.6


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


def _flank_goals(pos, prey_pos, prey_vel, attacker, angle: float, distance) -> tuple[np.ndarray, np.ndarray]:
    """(K, n, 2) points `distance` from each predator's nearest prey, at +-`angle` (alternating by
    predator) from the line from the first attacker through that prey, and (K, n, 1) how far
    that attacker is from the prey."""
    target, _ = _nearest_prey(pos, prey_pos, prey_vel)
    first_attacker = pos[:, int(np.flatnonzero(attacker)[0])][:, None]  # (K, 1, 2)
    escape = _unit(target - first_attacker)  # (K, n, 2)
    gap = np.linalg.norm(target - first_attacker, axis=-1, keepdims=True)
    sides = np.where(np.arange(pos.shape[1]) % 2 == 0, 1.0, -1.0)[None, :, None] * angle
    cos, sin = np.cos(sides), np.sin(sides)
    rotated = np.concatenate([cos * escape[..., :1] - sin * escape[..., 1:],
                              sin * escape[..., :1] + cos * escape[..., 1:]], axis=-1)
    distance = distance(gap) if callable(distance) else distance
    return target + distance * rotated, gap


def block(pos, vel, prey_pos, prey_vel, attacker) -> np.ndarray:
    """Interceptors run to the prey's escape side: points BLOCK_DISTANCE beyond the prey, at
    +-BLOCK_ANGLE from the line from the (first) attacker through the prey, so the prey fleeing
    the attacker runs towards them. Attackers chase."""
    goal, _ = _flank_goals(pos, prey_pos, prey_vel, attacker, BLOCK_ANGLE, BLOCK_DISTANCE)
    forces = _unit(goal - pos)
    return np.where(attacker[None, :, None], chase(pos, vel, prey_pos, prey_vel, attacker), forces)


def pincer(pos, vel, prey_pos, prey_vel, attacker) -> np.ndarray:
    """Interceptors take the prey's flanks (PINCER_ANGLE each side of the attacker-prey line) and
    close in as the attacker does, to PINCER_NEAREST from the prey when the attacker is on it.
    Attackers chase."""
    goal, _ = _flank_goals(pos, prey_pos, prey_vel, attacker, PINCER_ANGLE,
                           lambda gap: np.clip(PINCER_CLOSING * gap, PINCER_NEAREST, PINCER_FARTHEST))
    forces = _unit(goal - pos)
    return np.where(attacker[None, :, None], chase(pos, vel, prey_pos, prey_vel, attacker), forces)


POLICIES: dict[str, Policy] = {"chase": chase, "stay": stay, "block": block, "pincer": pincer}


def hit_rate(options: dict, interceptors: str, episodes: int = 400, seed: int = 0,
             attackers: str = "chase", episode_length: int = 30) -> dict[str, float]:
    """Plays `episodes` CH episodes with these `make_world` options: attackers by `attackers`,
    interceptors by `interceptors` (POLICIES names). Returns the share of episodes with at least
    one hit, hits and interceptor touches per episode, and the mean episode return of an
    attacker, of an interceptor and of the group (the sum over predators)."""
    scenario = HuntingScenario()
    worlds = [scenario.make_world(**options) for _ in range(episodes)]
    for k, world in enumerate(worlds):
        scenario.reset_world(world, np.random.default_rng([seed, k]))
    worlds = make_world_batch("batched", worlds, BATCH_SCRIPTS)
    attacker = np.array([a.role == "attacker" for a in worlds[0].agents])
    accel = np.array([a.accel for a in worlds[0].agents])[None, :, None]
    policy_a, policy_i = POLICIES[attackers], POLICIES[interceptors]
    hit = np.zeros(episodes, bool)
    hits = touches = 0.0
    returns = np.zeros(len(attacker))
    for _ in range(episode_length):
        pos, vel = stacked(worlds, "agents"), stacked(worlds, "agents", "p_vel")
        prey_pos, prey_vel = stacked(worlds, "scripted"), stacked(worlds, "scripted", "p_vel")
        forces = np.where(attacker[None, :, None], policy_a(pos, vel, prey_pos, prey_vel, attacker),
                          policy_i(pos, vel, prey_pos, prey_vel, attacker))
        worlds.step(forces * accel)
        rewards, metrics = scenario.batch_outcome(worlds)
        returns += rewards.sum(axis=1)
        hit |= metrics["hits"] > 0
        hits += metrics["hits"].sum()
        touches += metrics["interceptor_collisions"].sum()
    returns /= episodes
    return {"episodes_with_a_hit": float(hit.mean()), "hits_per_episode": hits / episodes,
            "interceptor_touches_per_episode": touches / episodes,
            "attacker_return": float(returns[attacker].mean()),
            "interceptor_return": float(returns[~attacker].mean()) if (~attacker).any() else float("nan"),
            "group_return": float(returns.sum())}


TEAMS = [("stay", "the attacker(s) alone (the interceptors stay where they spawn)"),
         ("chase", "all chase (from the same side)"),
         ("block", "interceptors run to the prey's escape side, 0.35 beyond it"),
         ("pincer", "interceptors take the prey's flanks and close in with the attacker")]
# (title, make_world options); CH-II's interceptor policies act per predator as in CH-I
TASKS = [("CH-I, capture \"team\" (the default)", {}),
         ("CH-I, capture \"touch\" (the first version: `--env-options '{\"capture\": \"touch\"}'`)",
          {"capture": "touch"}),
         ("CH-II (`--prey 2 --attackers 2 --interceptors 2`), capture \"team\"",
          {"n_prey": 2, "n_attackers": 2}),
         ("CH-II, capture \"touch\"", {"n_prey": 2, "n_attackers": 2, "capture": "touch"})]


def table(options: dict, episodes: int, seed: int = 0) -> list[str]:
    lines = ["| interceptors | episodes with a hit | hits / episode | interceptor touches / episode "
             "| return: attacker | an interceptor | group |",
             "|---|---|---|---|---|---|---|"]
    for name, what in TEAMS:
        r = hit_rate(options, name, episodes=episodes, seed=seed)
        lines.append(f"| {what} | {r['episodes_with_a_hit']:.1%} | {r['hits_per_episode']:.2f} | "
                     f"{r['interceptor_touches_per_episode']:.2f} | {r['attacker_return']:+.1f} | "
                     f"{r['interceptor_return']:+.1f} | {r['group_return']:+.1f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--episodes", type=int, default=400)
    p.add_argument("--seed", type=int, default=0, help="episode k starts from default_rng([seed, k])")
    p.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    a = p.parse_args()
    t0 = time.monotonic()
    parts = []
    for title, options in TASKS:
        parts += [f"{title}:", "", *table(options, a.episodes, a.seed), ""]
    command = f"python benchmarks/hunting_scripted.py --episodes {a.episodes}" + (f" --seed {a.seed}" if a.seed else "")
    text = "\n".join([f"{a.episodes} episodes of 30 steps per row, scripted predators "
                      f"(`{command}`, {time.monotonic() - t0:.0f} s):", "", *parts])
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
