"""One agent's learning step, with no sockets: the part the agent process and the
in-process reference loop share."""

from __future__ import annotations

import numpy as np

from drima.types import StepInfo, transition

from .dri import ReshapedReward, reshape_reward, update_mu
from .learners import Learner, TracksEpisodes


class AgentCore:
    """A learner plus its average-reward estimate `mu` and its reward mode."""

    def __init__(self, learner: Learner, mode: str, mu_step_size: float, mu: float = 0.0):
        self.learner = learner
        self.mode = mode
        self.mu_step_size = mu_step_size
        self.mu = mu

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        return self.learner.act(obs, info=info, greedy=greedy)

    def observe(self, starts: np.ndarray) -> None:
        """Evaluation: a step's outcome without learning from it (a recurrent policy still needs
        to know where episodes begin). starts: (K,) bool."""
        if isinstance(self.learner, TracksEpisodes):
            self.learner.episode_ends(starts)

    def learn(self, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
              terminated: np.ndarray, neighbour_rewards: np.ndarray, neighbour_mus: np.ndarray,
              in_range: np.ndarray | None = None, team_reward: np.ndarray | None = None,
              next_info: StepInfo | None = None, truncated: np.ndarray | None = None,
              active: np.ndarray | None = None,
              info: StepInfo | None = None) -> tuple[ReshapedReward, dict[str, float]]:
        """DRI signal from the mu that was published for this step, then the mu update
        from the original reward (Remark 2), then one learner update.

        terminated / truncated: (K,) how this agent's episode ended at this step (next_obs is the
        final observation where it was truncated); active: (K,) bool, where the agent took part
        in the step (default everywhere): mu and the learner see only those copies. `info` and
        `next_info`: what the env server sent with obs and next_obs (masks, global state, joint actions).
        In ctde mode the agent learns from `team_reward` (sent by the env server: MPE and battles the
        mean of every agent's reward, other envs the sum) and its mu tracks that instead of its own reward."""
        if self.mode == "ctde":
            if team_reward is None:
                raise ValueError("ctde mode needs the team reward from the env server")
            reward = team_reward
        reshaped = reshape_reward(self.mode, reward, self.mu, neighbour_rewards, neighbour_mus, in_range)
        batch = transition(obs, actions, reshaped.signal, next_obs, terminated, truncated, active, next_info, info)
        if batch.active.any():
            self.mu = update_mu(self.mu, reward[batch.active], self.mu_step_size)
        info = self.learner.update(batch)
        return reshaped, info
