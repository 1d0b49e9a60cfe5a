"""Names shared by every role: the reward modes and built-in learners the CLI accepts, and what
a learner is given: its spec at start, what the env server sends beside an observation, and one
step's transition to learn from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

REWARD_MODES: tuple[str, ...] = ("ind", "dri", "dri-naive", "ctde")
ALGOS: tuple[str, ...] = ("a2c", "dqn", "ddpg", "ppo")
"""the built-in learners; `--algo MODULE:CLASS` loads any other (see agent/learners)"""


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What the env server sends beside an observation, for the learners that use it (PPO);
    the others ignore it."""

    avail: np.ndarray | None = None
    """(K, n_actions) bool: the actions allowed at this observation (SMAX, SC2, PettingZoo action
    masks); None = all"""
    state: np.ndarray | None = None
    """(K, state_dim) float32: the global state at this observation (ctde critics). In a
    Transition's next_info, the rows of truncated copies hold the state their episode ended on,
    where the env provides it (MPE), as next_obs holds the final observation."""
    joint_actions: np.ndarray | None = None
    """(K, joint_action_dim) float32: the actions every agent played at the step that led to this
    observation, in agent order, discrete ones one-hot (ctde: MADDPG's centralised critic)"""

    def ended_on(self, truncated: np.ndarray, final_state: np.ndarray) -> StepInfo:
        """This info as the transition that led to it sees it: in the rows of truncated copies
        ((K,) bool), the global state their episode ended on (`final_state`, (K, state_dim))."""
        return StepInfo(self.avail, np.where(truncated[:, None], final_state, self.state), self.joint_actions)


@dataclass(frozen=True, slots=True)
class LearnerSpec:
    """What one agent's learner is built for, from the env server's spec of that agent."""

    obs_dim: int
    """length of the (flattened, float32) observation"""
    action: dict[str, Any]
    """{"type": "discrete", "n": N} or {"type": "continuous", "dim": D, "low": -1.0, "high": 1.0}
    (the env server rescales [-1, 1] to a PettingZoo Box's or a VMAS agent's own bounds)"""
    state_dim: int = 0
    """> 0: the env server sends the global state in StepInfo.state (ctde: MPE, matrix games, SMAX,
    SC2, PettingZoo envs with state())"""
    joint_action_dim: int = 0
    """> 0: the env server sends every agent's played actions in StepInfo.joint_actions (ctde)"""
    own_action_at: int = 0
    """where this agent's own action starts in the joint action vector"""
    env: dict[str, Any] = field(default_factory=dict)
    """the env server's whole spec of this agent: env name, agent_name, n_envs, episode_length, ..."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One agent's step in K environment copies: what it saw, did and got, as a learner needs it.

    An episode can end two ways, and learners must tell them apart: `terminated` (a terminal
    state: nothing follows, no value after it) and `truncated` (cut, e.g. by a time limit: the
    episode could have gone on, so bootstrap from V(next_obs)). Where a copy's episode ended,
    `next_obs` is the observation it ended on (the env server sends it for truncated copies),
    not the first observation of the next episode.
    """

    obs: np.ndarray
    """(K, obs_dim) float32: the observation acted on"""
    actions: np.ndarray
    """(K,) int32 (discrete) or (K, dim) float32 (continuous): the actions sent"""
    signal: np.ndarray
    """(K,) float32: the learning signal, the DRI differential reward (r - mu in ind; in ctde from
    the team reward)"""
    next_obs: np.ndarray
    """(K, obs_dim) float32: the observation the action led to (the final one where the episode ended)"""
    terminated: np.ndarray
    """(K,) bool: next_obs is terminal"""
    truncated: np.ndarray
    """(K,) bool: the episode was cut at next_obs (a time limit): not a terminal state"""
    active: np.ndarray
    """(K,) bool: the agent was in the episode and its action was played. Where False (it had
    terminated before the others, or its action was not played) there is nothing to learn."""
    next_info: StepInfo | None = None
    """action masks, global state and joint actions sent with the next observation"""
    info: StepInfo | None = None
    """what was sent with `obs` (the global state the critic of a ctde learner reads)"""

    @property
    def done(self) -> np.ndarray:
        """(K,) bool: the agent's episode ended at this step, either way."""
        return self.terminated | self.truncated


def transition(obs: np.ndarray, actions: np.ndarray, signal: np.ndarray, next_obs: np.ndarray,
               terminated: np.ndarray, truncated: np.ndarray | None = None, active: np.ndarray | None = None,
               next_info: StepInfo | None = None, info: StepInfo | None = None) -> Transition:
    """A Transition from arrays of any float/bool dtype; truncated and active default to none
    truncated and all active."""
    k = len(signal)
    return Transition(obs, actions, np.asarray(signal, np.float32), next_obs, np.asarray(terminated, bool),
                      np.zeros(k, bool) if truncated is None else np.asarray(truncated, bool),
                      np.ones(k, bool) if active is None else np.asarray(active, bool), next_info, info)
