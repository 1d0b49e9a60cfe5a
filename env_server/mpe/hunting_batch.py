"""The prey's rule (hunting.prey_policy) for all K worlds at once: the prey is Cooperative Hunting's
largest cost once the physics is batched (one Python call per prey per world per step).

This mirrors `prey_policy` and `choose_heading` operation for operation; the golden-trace tests
(tests/test_mpe_batched.py) step hunting with this form and with the per-world callback and
require the same trajectories, so a change to the rule in hunting.py that is not made here fails
them. Removing the entry from BATCH_SCRIPTS falls back to the per-world callback.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .batched import BatchedWorlds, ScriptBatch
from .hunting import CENTRE_PULL, HEADINGS, WALL_MARGIN, WALL_WEIGHT, WANDER_STRENGTH, prey_policy


def batch_prey_policy(worlds: BatchedWorlds, slot: int) -> np.ndarray:
    """(K, 2) action force of prey number `slot` in each world: `prey_policy(prey, world).u`."""
    prey = worlds[0].scripted[slot]  # worlds are built alike: same view radius and accel
    n = worlds.n_agents
    prey_pos = worlds.pos[:, n + slot]  # (K, 2)
    offset = prey_pos[:, None, :] - worlds.pos[:, :n]  # (K, n_predators, 2)
    dist = np.sqrt(np.sum(offset * offset, axis=-1))
    seen = (dist > 0.0) & (dist <= prey.view_radius)
    with np.errstate(divide="ignore", invalid="ignore"):
        away = np.where(seen[..., None], offset / (dist**2)[..., None], 0.0).sum(axis=1)
    away_norm = np.sqrt(np.sum(away * away, axis=-1))
    fleeing = away_norm > 0.0
    thrust = np.where(fleeing, 1.0, WANDER_STRENGTH)
    with np.errstate(divide="ignore", invalid="ignore"):
        wish = away / away_norm[:, None]
    for k in np.flatnonzero(~fleeing):  # wander: one draw from that world's generator, as prey_policy
        angle = worlds[k].np_random.uniform(0.0, 2.0 * np.pi)
        wish[k] = (np.cos(angle), np.sin(angle))
    return (thrust * prey.accel)[:, None] * batch_choose_heading(prey_pos, wish, worlds.bound)


def batch_choose_heading(pos: np.ndarray, wish: np.ndarray, bound: float) -> np.ndarray:
    """`hunting.choose_heading` for (K, 2) positions and wishes: (K, 2) unit headings."""
    closeness = np.clip((np.abs(pos) - (bound - WALL_MARGIN)) / WALL_MARGIN, 0.0, 1.0)  # (K, 2)
    outward = np.maximum(HEADINGS[None] * np.sign(pos)[:, None], 0.0)  # (K, N_HEADINGS, 2)
    score = (wish @ HEADINGS.T - WALL_WEIGHT * np.einsum("khd,kd->kh", outward, closeness)
             - CENTRE_PULL * (pos @ HEADINGS.T))
    return HEADINGS[np.argmax(score, axis=1)]


# action callback -> its batched form, for BatchedWorlds
BATCH_SCRIPTS: dict[Callable, ScriptBatch] = {prey_policy: batch_prey_policy}
