"""Advantage actor-critic, the paper's Algorithm 1 (DRI actor-critic), one agent's own learner.

    delta = signal + gamma * V(s') * (1 - terminated) - V(s)   (a truncated episode bootstraps)
    continuing: delta = signal + gamma * V(s') - V(s) through every episode end; with gamma 1 it
    is Algorithm 1's r~ - mubar + V(s') - V(s) exactly (continuing.py)
    critic: minimise 0.5 * delta^2          (step size lr_critic, the faster time scale)
    actor:  ascend delta * log pi(a|s)      (step size lr_actor) + entropy bonus

With n_steps > 1 the update waits for n steps and uses GAE(lambda) advantages over them
(the usual A2C rollout), which episodic tasks with small per-step signals need; n_steps = 1
is the one-step rule above, the matrix-game default.

ctde (state_dim > 0, MAPPO-style): the critic is V(global state), the state the env server sends
beside each observation (Transition.info / next_info), and learns from the team reward; the actor
still acts on the agent's own observation. Each agent process has its own such critic.

`signal` is the DRI differential reward (r - mu in -ind mode); with gamma = 1 and a
one-state game V(s') - V(s) cancels and delta is the signal itself, as in the paper;
gamma = 0 (the matrix-game default) keeps V as a learned baseline instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drima.types import StepInfo, Transition

from .continuing import chain_breaks, stops
from .nets import NumpyMLP, adam, mlp, sample_categorical


@dataclass
class A2CConfig:
    hidden: int = 64
    """width of the two hidden layers of actor and critic"""
    lr_actor: float = 1e-3
    """actor step size (beta in Algorithm 1): the slow time scale, below mu's and the critic's"""
    lr_critic: float = 1e-2
    """critic step size (alpha in Algorithm 1), faster than the actor's"""
    gamma: float = 0.99
    """discount; matrix games use 0 (one state: an action's value is its immediate signal)"""
    entropy_coef: float = 0.01
    """entropy bonus that keeps the stochastic policy exploring"""
    max_grad_norm: float = 10.0
    """gradient clipping on actor and critic together"""
    n_steps: int = 1
    """steps per update (a rollout of n_steps x K transitions); 1 = update at every step"""
    gae_lambda: float = 0.95
    """GAE lambda over a rollout (used when n_steps > 1)"""
    continuing: bool = False
    """the average-reward form: bootstrap, and run GAE on, through every episode end (with gamma 1:
    the paper's Algorithm 1; continuing.py)"""


def gae_advantages(signal: np.ndarray, v: np.ndarray, v_next: np.ndarray, stop: np.ndarray, chain_break: np.ndarray,
                   gamma: float, gae_lambda: float) -> np.ndarray:
    """GAE(lambda) advantages over a rollout, every array (n, K): `stop` where the target must not
    bootstrap from v_next (terminal), `chain_break` where the sum must not run on into the next step
    (every episode end). With one step it is the TD error delta itself."""
    f32 = np.float32
    deltas = signal.astype(f32) + f32(gamma) * v_next * (1 - stop.astype(f32)) - v
    keep = f32(gamma * gae_lambda) * (1 - chain_break.astype(f32))
    adv = np.empty_like(deltas)
    running = np.zeros_like(deltas[0])
    for t in reversed(range(len(deltas))):
        running = deltas[t] + keep[t] * running
        adv[t] = running
    return adv


class A2C:
    acts_ahead = True  # act() keeps no state for update(): the agent may act before it learns (ActsAhead)

    def __init__(self, obs_dim: int, n_actions: int, cfg: A2CConfig, seed: int, state_dim: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.centralised = state_dim > 0  # ctde: the critic sees the global state
        self.actor = mlp(obs_dim, n_actions, cfg.hidden, out_gain=0.01)
        self.critic = mlp(state_dim if self.centralised else obs_dim, 1, cfg.hidden, out_gain=1.0)
        self.opt = adam([
            {"params": self.actor.parameters(), "lr": cfg.lr_actor},
            {"params": self.critic.parameters(), "lr": cfg.lr_critic},
        ])
        self.params = list(self.actor.parameters()) + list(self.critic.parameters())
        self.act_forward = NumpyMLP(self.actor)
        self.critic_forward = NumpyMLP(self.critic)  # V(s') for the targets, without autograd
        self.rng = np.random.default_rng(seed)  # the actions' draws
        self.rollout: list[tuple[np.ndarray, ...]] = []  # transitions since the last update

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        logits = self.act_forward(obs)  # no action masks: info unused
        if greedy:
            return logits.argmax(-1).astype(np.int32)
        return sample_categorical(logits, self.rng)

    @torch.no_grad()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Action probabilities (for logging and evaluation)."""
        return F.softmax(self.actor(torch.as_tensor(obs)), dim=-1).numpy()

    def _critic_input(self, obs: np.ndarray, info: StepInfo | None) -> np.ndarray:
        if not self.centralised:
            return obs
        if info is None or info.state is None:
            raise ValueError("this A2C critic takes the global state: the env server sends none (ctde)")
        return info.state

    def update(self, batch: Transition) -> dict[str, float]:
        self.rollout.append((batch.obs, batch.actions, batch.signal, self._critic_input(batch.obs, batch.info),
                             self._critic_input(batch.next_obs, batch.next_info),
                             stops(batch, self.cfg.continuing), chain_breaks(batch, self.cfg.continuing),
                             batch.active))
        if len(self.rollout) < self.cfg.n_steps:
            return {}
        obs, act, sig, crit, crit_next, term, done, active = (np.stack(x) for x in zip(*self.rollout, strict=True))
        self.rollout.clear()
        if not active.any():  # (n, K): steps the agent took part in; the rest teach nothing
            return {}
        v = self.critic(torch.as_tensor(crit)).squeeze(-1)  # (n, K)
        # the targets need no gradient: V(s') and GAE in numpy, where a (n, K) op costs far less than a
        # torch call (12 % less CPU per agent step on collection; results/learner_update_numpy_targets.md)
        v_now = v.detach().numpy()
        v_next = self.critic_forward(crit_next)[..., 0] if self.cfg.gamma > 0 else np.zeros_like(v_now)
        adv = gae_advantages(sig, v_now, v_next, term, done, self.cfg.gamma, self.cfg.gae_lambda)
        adv_t = torch.from_numpy(adv)
        returns = adv_t + v.detach()
        active = torch.from_numpy(active).float()
        obs_t, act_t = torch.from_numpy(obs), torch.from_numpy(act)
        weight = active / active.sum()  # a mean over the active steps
        logp_all = F.log_softmax(self.actor(obs_t), dim=-1)
        logp = logp_all.gather(-1, act_t.long().unsqueeze(-1)).squeeze(-1)
        entropy = (-(logp_all.exp() * logp_all).sum(-1) * weight).sum()
        actor_loss = -(adv_t * logp * weight).sum() - self.cfg.entropy_coef * entropy
        critic_loss = 0.5 * ((returns - v).pow(2) * weight).sum()
        self.opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.opt.step()
        return {"actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(), "entropy": entropy.item()}

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "opt": self.opt.state_dict(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.opt.load_state_dict(state["opt"])
        if "rng" in state:  # checkpoints before numpy acting kept a torch generator: a fresh stream then
            self.rng.bit_generator.state = state["rng"]
