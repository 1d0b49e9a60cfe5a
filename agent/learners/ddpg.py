"""DDPG with the DRI signal in the critic's target, one agent's own learner.

Discrete actions (matrix games) follow MADDPG's recipe: the actor outputs logits, the
critic scores Q(s, one_hot(a)), and the actor ascends Q(s, softmax(logits)) through the
relaxed action. Exploration samples a Gumbel-perturbed argmax, plus epsilon-uniform.

    target = signal + gamma * (1 - done) * Q_target(s', pi_target(s'))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .nets import mlp, soft_update
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
    """temperature of the Gumbel-softmax exploration noise"""


class DDPG:
    def __init__(self, obs_dim: int, n_actions: int, cfg: DDPGConfig, seed: int):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.n_actions = n_actions
        self.actor = mlp(obs_dim, n_actions, cfg.hidden, out_gain=0.01)
        self.critic = mlp(obs_dim + n_actions, 1, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (), "int64", seed)
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        logits = self.actor(torch.as_tensor(obs))
        u = torch.rand(logits.shape, generator=self.gen).clamp_(1e-10, 1.0)
        sampled = (logits / self.cfg.gumbel_temperature - torch.log(-torch.log(u))).argmax(-1).numpy()
        explore = self.rng.random(len(obs)) < self.cfg.explore_eps
        return np.where(explore, self.rng.integers(0, self.n_actions, size=len(obs)), sampled).astype(np.int32)

    @torch.no_grad()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        return F.softmax(self.actor(torch.as_tensor(obs)), dim=-1).numpy()

    def _q(self, critic, obs: torch.Tensor, action_probs: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action_probs], dim=-1)).squeeze(-1)

    def update(self, obs, actions, signal, next_obs, done) -> dict[str, float]:
        self.buffer.add_batch(obs, actions, signal, next_obs, done)
        if self.buffer.size < self.cfg.learning_starts:
            return {}
        o, a, s, o2, d = (torch.as_tensor(x) for x in self.buffer.sample(self.cfg.batch_size))
        with torch.no_grad():
            target = s
            if self.cfg.gamma > 0:
                next_probs = F.softmax(self.actor_target(o2), dim=-1)
                target = s + self.cfg.gamma * (1 - d) * self._q(self.critic_target, o2, next_probs)
        q = self._q(self.critic, o, F.one_hot(a, self.n_actions).float())
        critic_loss = F.mse_loss(q, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss = -self._q(self.critic, o, F.softmax(self.actor(o), dim=-1)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
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
