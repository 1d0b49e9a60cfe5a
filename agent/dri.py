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

from drima.types import REWARD_MODES


class ReshapedReward(NamedTuple):
    signal: np.ndarray  # (K,) differential reward the learner uses
    conflict: np.ndarray  # (K,) bool, True where the DRI trigger fired


def reshape_reward(
    mode: str,
    reward: np.ndarray,
    mu: float,
    neighbour_rewards: np.ndarray,
    neighbour_mus: np.ndarray,
    in_range: np.ndarray | None = None,
) -> ReshapedReward:
    """Learning signal for one agent at one step.

    reward: (K,) own rewards; mu: own average-reward estimate;
    neighbour_rewards: (m, K) rewards of the m live neighbours (m may be 0);
    neighbour_mus: (m,) their estimates;
    in_range: optional (m, K) bool, which neighbour counts in which environment copy (range
    topologies: the neighbourhood differs per copy). Where an agent has no neighbour in a copy
    it learns independently there (signal = r - mu), in every mode.
    `ind` and `ctde` use the reward they are given as it is (in ctde it is the team reward).
    """
    if mode not in REWARD_MODES:
        raise ValueError(f"unknown reward mode {mode!r}; choose from {REWARD_MODES}")
    reward = np.asarray(reward, dtype=np.float64)
    neighbour_rewards = np.asarray(neighbour_rewards, dtype=np.float64).reshape(-1, reward.shape[0])
    neighbour_mus = np.asarray(neighbour_mus, dtype=np.float64).reshape(-1)
    m = neighbour_rewards.shape[0]
    if neighbour_mus.shape[0] != m:
        raise ValueError(f"{m} neighbour rewards but {neighbour_mus.shape[0]} neighbour mus")
    alone = ReshapedReward(reward - mu, np.zeros(reward.shape, dtype=bool))
    if mode in ("ind", "ctde") or m == 0:
        return alone
    if in_range is None:
        weight = np.ones_like(neighbour_rewards)
    else:
        weight = np.asarray(in_range, dtype=np.float64).reshape(m, reward.shape[0])
    count = weight.sum(axis=0)  # (K,) neighbours that count in each copy
    has_nbrs = count > 0
    mubar = (mu + weight.T @ neighbour_mus) / (count + 1)
    nbr_sum = (weight * neighbour_rewards).sum(axis=0)
    rbar_n = (reward + nbr_sum) / (count + 1)
    if mode == "dri-naive":
        return ReshapedReward(np.where(has_nbrs, rbar_n - mubar, alone.signal), alone.conflict)
    rbar_nmi = nbr_sum / np.maximum(count, 1)
    conflict = has_nbrs & (np.sign(reward - mubar) != np.sign(rbar_nmi - mubar))
    signal = np.where(conflict, rbar_n - mubar, np.where(has_nbrs, reward - mubar, alone.signal))
    return ReshapedReward(signal, conflict)


def update_mu(mu: float, reward: np.ndarray, step_size: float) -> float:
    """mu <- mu + alpha * (r - mu), from the original reward, averaged over the K copies."""
    return float(mu + step_size * (float(np.mean(reward)) - mu))
