"""Names shared by every role: the reward modes and learners the CLI accepts."""

from __future__ import annotations

REWARD_MODES: tuple[str, ...] = ("ind", "dri", "dri-naive", "ctde")
ALGOS: tuple[str, ...] = ("a2c", "dqn", "ddpg")
