"""The average-reward (continuing) form in A2C, DQN and DDPG (PPO's: tests/test_ppo.py): with
`continuing` set, a learner bootstraps through every episode end, a terminal state included.

One state, signal 1 at every step, every step TERMINAL, gamma 0.5: the episodic value is 1 (no
bootstrap), the continuing one 1 + 0.5 V = 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drima.agent.learners import make_learner
from drima.types import transition
from test_truncation import OBS, OPTIONS, K, value

torch.set_num_threads(1)  # a busy 2-core machine: one thread per process


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg"])
@pytest.mark.parametrize("continuing, expected", [(True, 2.0), (False, 1.0)])
def test_continuing_learners_bootstrap_through_terminal_states(algo, continuing, expected):
    learner = make_learner(algo, 1, {"type": "discrete", "n": 2}, OPTIONS[algo] | {"continuing": continuing}, seed=0)
    terminal = np.ones(K, bool)
    for _ in range(400):
        learner.update(transition(OBS, learner.act(OBS), np.ones(K, np.float32), OBS, terminal, ~terminal))
    assert value(algo, learner) == pytest.approx(expected, abs=0.3)


def test_a2c_continuing_with_gamma_1_is_algorithm_1():
    """delta = (r - mubar) + V(s') - V(s) at a terminal step, with V(s') the critic's value of the
    observation the step led to: the critic loss is 0.5 * mean(delta^2)."""
    rng = np.random.default_rng(0)
    obs, nxt = rng.normal(size=(K, 3)).astype(np.float32), rng.normal(size=(K, 3)).astype(np.float32)
    signal = rng.normal(size=K).astype(np.float32)  # the DRI differential reward r~ - mubar
    learner = make_learner("a2c", 3, {"type": "discrete", "n": 2}, {"gamma": 1.0, "continuing": True}, seed=0)
    with torch.no_grad():
        v, v_next = (learner.critic(torch.as_tensor(x)).squeeze(-1).numpy() for x in (obs, nxt))
    loss = learner.update(transition(obs, learner.act(obs), signal, nxt, np.ones(K, bool)))["critic_loss"]
    assert loss == pytest.approx(0.5 * np.mean((signal + v_next - v) ** 2), rel=1e-4)
