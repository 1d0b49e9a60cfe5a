"""DDPG with the DRI signal in the critic's target, one agent's own learner.

Continuous actions (MPE: a 2-d force in [-1, 1]^2) are plain DDPG: a tanh actor, Q(s, a),
Gaussian exploration noise. Discrete actions (matrix games) follow MADDPG's recipe: the actor
outputs logits, the critic scores Q(s, one_hot(a)), and the actor ascends Q(s, softmax(logits))
through the relaxed action; exploration samples a Gumbel-perturbed argmax, plus epsilon-uniform.

    target = signal + gamma * (1 - terminated) * Q_target(s', pi_target(s'))
    continuing: terminated is never set (the average-reward form, continuing.py)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drima.types import StepInfo, Transition

from .continuing import stops
from .nets import adam, mlp, soft_update
from .replay import ReplayBuffer


@dataclass
class DDPGConfig:
    hidden: int = 64
    """width of the two hidden layers of actor and critic"""
    lr_actor: float = 1e-3
    """actor step size"""
    lr_critic: float = 3e-3
    """critic step size"""
    gamma: float = 0.99
    """discount; matrix games use 0 (one state: an action's value is its immediate signal)"""
    buffer_size: int = 4096
    """replay capacity in transitions"""
    batch_size: int = 64
    """transitions per gradient step"""
    learning_starts: int = 256
    """transitions collected before the first gradient step"""
    tau: float = 0.05
    """soft target update rate"""
    explore_eps: float = 0.05
    """probability of a uniformly random action on top of the Gumbel sampling"""
    gumbel_temperature: float = 1.0
    """temperature of the Gumbel-softmax exploration noise (discrete actions)"""
    noise_std: float = 0.2
    """std of the Gaussian exploration noise on continuous actions (in action units)"""
    max_grad_norm: float = 0.0
    """gradient clipping of actor and critic; 0 = none (MADDPG's MPE setting is 0.5)"""
    continuing: bool = False
    """the average-reward form: bootstrap through every episode end, a terminal state included (with
    gamma 1: the paper's Algorithm 1; continuing.py)"""


class DDPG:
    acts_ahead = True  # act() keeps no state for update(): the agent may act before it learns (ActsAhead)

    def __init__(self, obs_dim: int, action_space: dict, cfg: DDPGConfig, seed: int):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.continuous = action_space["type"] == "continuous"
        self.n_actions = int(action_space["dim"] if self.continuous else action_space["n"])
        self.actor = mlp(obs_dim, self.n_actions, cfg.hidden, out_gain=0.01)
        self.critic = mlp(obs_dim + self.n_actions, 1, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.lr_critic)
        if self.continuous:
            self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (self.n_actions,), "float32", seed)
        else:
            self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (), "int64", seed)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    def _relaxed(self, actor, obs: torch.Tensor) -> torch.Tensor:
        """The differentiable action the critic scores: tanh output or softmax probabilities."""
        out = actor(obs)
        return torch.tanh(out) if self.continuous else F.softmax(out, dim=-1)

    @torch.no_grad()
    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        out = self.actor(torch.as_tensor(obs))  # no action masks: info unused
        if greedy:  # no exploration noise: tanh(out), or the highest logit
            return (torch.tanh(out).numpy().astype(np.float32) if self.continuous
                    else out.argmax(-1).numpy().astype(np.int32))
        if self.continuous:
            noise = torch.randn(out.shape, generator=self.gen) * self.cfg.noise_std
            return (torch.tanh(out) + noise).clamp_(-1.0, 1.0).numpy().astype(np.float32)
        u = torch.rand(out.shape, generator=self.gen).clamp_(1e-10, 1.0)
        sampled = (out / self.cfg.gumbel_temperature - torch.log(-torch.log(u))).argmax(-1).numpy()
        explore = self.rng.random(len(obs)) < self.cfg.explore_eps
        return np.where(explore, self.rng.integers(0, self.n_actions, size=len(obs)), sampled).astype(np.int32)

    @torch.no_grad()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action (continuous) or action probabilities (discrete), for evaluation."""
        return self._relaxed(self.actor, torch.as_tensor(obs)).numpy()

    def _q(self, critic, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def update(self, batch: Transition) -> dict[str, float]:
        # only the steps the agent took part in; the buffer's `done` is `terminated` (continuing:
        # never): a truncated episode is bootstrapped from its final observation like any other step
        m = batch.active
        self.buffer.add_batch(batch.obs[m], batch.actions[m], batch.signal[m], batch.next_obs[m],
                              stops(batch, self.cfg.continuing)[m].astype(np.float32))
        if self.buffer.size < self.cfg.learning_starts:
            return {}
        o, a, s, o2, d = (torch.as_tensor(x) for x in self.buffer.sample(self.cfg.batch_size))
        with torch.no_grad():
            target = s
            if self.cfg.gamma > 0:
                target = s + self.cfg.gamma * (1 - d) * self._q(self.critic_target, o2,
                                                                self._relaxed(self.actor_target, o2))
        taken = a if self.continuous else F.one_hot(a, self.n_actions).float()
        critic_loss = F.mse_loss(self._q(self.critic, o, taken), target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.max_grad_norm)
        self.critic_opt.step()

        actor_loss = -self._q(self.critic, o, self._relaxed(self.actor, o)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.max_grad_norm)
        self.actor_opt.step()
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        soft_update(self.critic_target, self.critic, self.cfg.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}

    def state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in
                ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt", "buffer")} | {
            "rng": self.rng.bit_generator.state, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt", "buffer"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
