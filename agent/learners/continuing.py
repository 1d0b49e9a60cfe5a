"""The average-reward (continuing) form of the learners' TD error, the paper's Algorithm 1:

    delta = r~ - mubar + V(s') - V(s)

The signal every learner gets is already the differential reward r~ - mubar (DRI; r - mu in
ind, the team reward minus mu in ctde): mu is the average-reward estimate rho. What makes the
form continuing is that returns run on through episode ends, a terminal state included: the
stream of episodes is one task whose reward per step counts, and -mu is paid at every step
whatever happens. With `continuing` set and gamma 1 a learner computes exactly the delta above;
with gamma < 1 it is the discounted approximation of the same continuing task. The default
(continuing False) is the episodic form: no bootstrap from a terminal state, a truncated episode
bootstrapped from its final observation.
"""

from __future__ import annotations

import numpy as np

from drima.types import Transition


def stops(batch: Transition, continuing: bool) -> np.ndarray:
    """(K,) bool: where the target must not bootstrap from V(next_obs): terminal states, or
    nowhere in the continuing form."""
    return np.zeros_like(batch.terminated) if continuing else batch.terminated


def chain_breaks(batch: Transition, continuing: bool) -> np.ndarray:
    """(K,) bool: where a multi-step return (GAE) must not run on into the next step: every
    episode end, or nowhere in the continuing form."""
    return np.zeros_like(batch.terminated) if continuing else batch.done
