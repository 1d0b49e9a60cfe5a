"""The Differential Reward Interaction rule (Eqn. 2 of the paper) as pure functions.

For agent i with live neighbours N^-i (N^i = N^-i plus i):

    rbar_N   = mean(r^j, j in N^i)           includes i
    rbar_Nmi = mean(r^j, j in N^-i)          excludes i
    mubar    = mean(mu^j, j in N^i)          includes i
    conflict = sgn(r^i - mubar) != sgn(rbar_Nmi - mubar)      (sgn(0) = 0)
    signal   = rbar_N - mubar  if conflict  else  r^i - mubar

`signal` is the differential reward that replaces ``r - mu`` in the learner's TD error.
Everything is vectorised over the K environment copies of one step; ``mu`` is one scalar per
agent (its average-reward estimate), updated from the ORIGINAL reward (Remark 2).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ReshapedReward(NamedTuple):
    signal: np.ndarray  # (K,) differential reward the learner uses
    conflict: np.ndarray  # (K,) bool, True where the DRI trigger fired


def reshape_reward(
    mode: str,
    reward: np.ndarray,
    mu: float,
    neighbour_rewards: np.ndarray,
    neighbour_mus: np.ndarray,
) -> ReshapedReward:
    """Learning signal for one agent at one step.

    reward: (K,) own rewards; mu: own average-reward estimate;
    neighbour_rewards: (m, K) rewards of the m live neighbours (m may be 0);
    neighbour_mus: (m,) their estimates. With no live neighbour the agent learns
    independently at this step (signal = r - mu) in every mode.
    """
    reward = np.asarray(reward, dtype=np.float64)
    neighbour_rewards = np.asarray(neighbour_rewards, dtype=np.float64).reshape(-1, reward.shape[0])
    neighbour_mus = np.asarray(neighbour_mus, dtype=np.float64).reshape(-1)
    m = neighbour_rewards.shape[0]
    if neighbour_mus.shape[0] != m:
        raise ValueError(f"{m} neighbour rewards but {neighbour_mus.shape[0]} neighbour mus")
    no_conflict = np.zeros(reward.shape, dtype=bool)
    if mode == "ind" or m == 0:
        if mode not in ("ind", "dri", "dri-naive"):
            raise ValueError(f"unknown reward mode {mode!r}")
        return ReshapedReward(reward - mu, no_conflict)
    mubar = (mu + neighbour_mus.sum()) / (m + 1)
    rbar_n = (reward + neighbour_rewards.sum(axis=0)) / (m + 1)
    if mode == "dri-naive":
        return ReshapedReward(rbar_n - mubar, no_conflict)
    if mode != "dri":
        raise ValueError(f"unknown reward mode {mode!r}")
    rbar_nmi = neighbour_rewards.mean(axis=0)
    conflict = np.sign(reward - mubar) != np.sign(rbar_nmi - mubar)
    signal = np.where(conflict, rbar_n - mubar, reward - mubar)
    return ReshapedReward(signal, conflict)


def update_mu(mu: float, reward: np.ndarray, step_size: float) -> float:
    """mu <- mu + alpha * (r - mu), from the original reward, averaged over the K copies."""
    return float(mu + step_size * (float(np.mean(reward)) - mu))
