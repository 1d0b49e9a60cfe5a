"""One agent's learning step, with no sockets: the part the agent process and the
in-process reference loop share."""

from __future__ import annotations

import numpy as np

from .dri import ReshapedReward, reshape_reward, update_mu
from .learners import Learner


class AgentCore:
    """A learner plus its average-reward estimate `mu` and its reward mode."""

    def __init__(self, learner: Learner, mode: str, mu_step_size: float, mu: float = 0.0):
        self.learner = learner
        self.mode = mode
        self.mu_step_size = mu_step_size
        self.mu = mu

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.learner.act(obs)

    def learn(self, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
              done: np.ndarray, neighbour_rewards: np.ndarray, neighbour_mus: np.ndarray
              ) -> tuple[ReshapedReward, dict[str, float]]:
        """DRI signal from the mu that was published for this step, then the mu update
        from the original reward (Remark 2), then one learner update."""
        reshaped = reshape_reward(self.mode, reward, self.mu, neighbour_rewards, neighbour_mus)
        self.mu = update_mu(self.mu, reward, self.mu_step_size)
        info = self.learner.update(obs, actions, reshaped.signal.astype(np.float32), next_obs, done)
        return reshaped, info
