"""Every built-in learner tells a time limit from a terminal state, and learns only from the
copies where the agent took part (Transition.active).

One state, signal 1 at every step, gamma 0.5: where each step ends the episode by TRUNCATION the
value is 1 + 0.5 V = 2 (bootstrap from the final observation); by TERMINATION it is 1. Copies
where the agent is out of the episode carry a signal of 100 that must not count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drima.agent.learners import make_learner
from drima.types import transition

torch.set_num_threads(1)  # a busy 2-core machine: one thread per process
K = 16
OBS = np.ones((K, 1), np.float32)
OPTIONS = {
    "a2c": {"gamma": 0.5, "lr_critic": 0.02},
    "dqn": {"gamma": 0.5, "lr": 0.01, "learning_starts": 32, "batch_size": 32, "eps_start": 0.5, "eps_end": 0.5},
    "ddpg": {"gamma": 0.5, "lr_critic": 0.01, "learning_starts": 32, "batch_size": 32},
    "ppo": {"gamma": 0.5, "n_steps": 8, "chunk_len": 8, "epochs": 4, "critic_lr": 0.01},
}


def value(algo: str, learner) -> float:
    obs = torch.as_tensor(OBS[:1])
    with torch.no_grad():
        if algo == "a2c":
            return float(learner.critic(obs))
        if algo == "dqn":
            return float(learner.q(obs).max())
        if algo == "ddpg":
            return float(learner._q(learner.critic, obs, learner._relaxed(learner.actor, obs)))
        v, _ = learner.critic(obs[None], torch.zeros(1, learner.cfg.hidden), torch.ones(1, 1))
        return float(learner._values(v[0, 0, 0]))


@pytest.mark.parametrize("algo", ["a2c", "dqn", "ddpg", "ppo"])
@pytest.mark.parametrize("ending, expected", [("truncated", 2.0), ("terminated", 1.0)])
def test_time_limits_bootstrap_and_terminal_states_do_not(algo, ending, expected):
    learner = make_learner(algo, 1, {"type": "discrete", "n": 2}, OPTIONS[algo], seed=0)
    active = np.arange(K) % 2 == 0  # the odd copies: out of the episode, with a signal that must not count
    signal = np.where(active, 1.0, 100.0).astype(np.float32)
    ends = np.ones(K, bool)
    for _ in range(800 if algo == "ppo" else 400):
        actions = learner.act(OBS)
        learner.update(transition(OBS, actions, signal, OBS, ends if ending == "terminated" else ~ends,
                                  ends if ending == "truncated" else ~ends, active))
    assert value(algo, learner) == pytest.approx(expected, abs=0.3)
