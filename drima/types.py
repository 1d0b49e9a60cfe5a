"""Type aliases shared by every role."""

from __future__ import annotations

from typing import Literal

AgentId = int
Step = int
RewardMode = Literal["ind", "dri", "dri-naive"]
REWARD_MODES: tuple[str, ...] = ("ind", "dri", "dri-naive")
ALGOS: tuple[str, ...] = ("a2c", "dqn", "ddpg")
