"""Names shared by every role: the reward modes and learners the CLI accepts, and what a learner
is told beside an observation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REWARD_MODES: tuple[str, ...] = ("ind", "dri", "dri-naive", "ctde")
ALGOS: tuple[str, ...] = ("a2c", "dqn", "ddpg", "ppo")


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the env server sends beside an observation, for the learners that use it (PPO);
    the others ignore it."""

    avail: np.ndarray | None = None
    """(K, n_actions) bool: the actions allowed at this observation (SMAX, SC2); None = all"""
    state: np.ndarray | None = None
    """(K, state_dim) float32: the global state at this observation (ctde critics)"""
