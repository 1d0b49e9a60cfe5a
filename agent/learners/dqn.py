"""Deep Q-learning with the DRI signal in the target, one agent's own learner.

    target = signal + gamma * (1 - terminated) * max_a' Q_target(s', a')
    continuing: terminated is never set (the average-reward form, continuing.py)
    loss   = smooth_l1(Q(s, a), target)

Transitions are stored with the signal computed when they happened (the paper's -Dri DQN
reshapes rewards before they enter the buffer); epsilon-greedy exploration decays linearly.

ctde: DQN stays an independent Q-learner on its own observation, learning from the team reward
(the env server's mean over agents in MPE); it does not read the global state or joint actions. A
centralised Q over the global state would have to value joint actions, and acting greedily on it
needs every agent's Q at once (VDN, QMIX mix them in one learner): not one learner per process.
So DQN's ctde is "independent learners on the team reward", not a centralised critic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drima.types import StepInfo, Transition

from .continuing import stops
from .nets import NumpyMLP, adam, mlp, soft_update
from .replay import ReplayBuffer


@dataclass
class DQNConfig:
    hidden: int = 64
    """width of the two hidden layers of the Q-network"""
    lr: float = 1e-3
    """Adam step size"""
    gamma: float = 0.99
    """discount; matrix games use 0 (one state: an action's value is its immediate signal)"""
    buffer_size: int = 4096
    """replay capacity in transitions; small, so the DRI signals stay recent"""
    batch_size: int = 64
    """transitions per gradient step"""
    learning_starts: int = 256
    """transitions collected before the first gradient step"""
    tau: float = 0.05
    """soft target-network update rate per gradient step"""
    eps_start: float = 1.0
    """initial exploration rate"""
    eps_end: float = 0.02
    """final exploration rate"""
    eps_decay_updates: int = 1500
    """agent steps over which epsilon decays linearly"""
    continuing: bool = False
    """the average-reward form: bootstrap through every episode end, a terminal state included (with
    gamma 1: the paper's Algorithm 1; continuing.py)"""


class DQN:
    acts_ahead = True  # act() keeps no state for update(): the agent may act before it learns (ActsAhead)

    def __init__(self, obs_dim: int, n_actions: int, cfg: DQNConfig, seed: int):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.n_actions = n_actions
        self.q = mlp(obs_dim, n_actions, cfg.hidden)
        self.q_target = copy.deepcopy(self.q)
        self.act_forward = NumpyMLP(self.q)
        self.target_forward = NumpyMLP(self.q_target)  # views: soft updates and loads show through
        self.opt = adam(self.q.parameters(), lr=cfg.lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (), "int64", seed)
        self.rng = np.random.default_rng(seed)
        self.steps = 0

    @property
    def epsilon(self) -> float:
        frac = min(1.0, self.steps / max(1, self.cfg.eps_decay_updates))
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        best = self.act_forward(obs).argmax(-1)  # no action masks: info unused
        if greedy:
            return best.astype(np.int32)
        explore = self.rng.random(len(obs)) < self.epsilon
        random = self.rng.integers(0, self.n_actions, size=len(obs))
        return np.where(explore, random, best).astype(np.int32)

    def update(self, batch: Transition) -> dict[str, float]:
        self.steps += 1
        # only the steps the agent took part in; the buffer's `done` is `terminated` (continuing:
        # never): a truncated episode is bootstrapped from its final observation like any other step
        m = batch.active
        self.buffer.add_batch(batch.obs[m], batch.actions[m], batch.signal[m], batch.next_obs[m],
                              stops(batch, self.cfg.continuing)[m].astype(np.float32))
        if self.buffer.size < self.cfg.learning_starts:
            return {"epsilon": self.epsilon}
        o, a, s, o2, d = self.buffer.sample(self.cfg.batch_size)
        target = s  # the target needs no gradient: numpy, cheaper than torch's per-call dispatch at this size
        if self.cfg.gamma > 0:
            target = s + np.float32(self.cfg.gamma) * (1 - d) * self.target_forward(o2).max(-1)
        q = self.q(torch.from_numpy(o)).gather(1, torch.from_numpy(a).unsqueeze(-1)).squeeze(-1)
        loss = F.smooth_l1_loss(q, torch.from_numpy(target))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        soft_update(self.q_target, self.q, self.cfg.tau)
        return {"q_loss": loss.item(), "epsilon": self.epsilon}

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "opt": self.opt.state_dict(),
                "buffer": self.buffer.state_dict(), "rng": self.rng.bit_generator.state, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.opt.load_state_dict(state["opt"])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self.steps = state["steps"]
