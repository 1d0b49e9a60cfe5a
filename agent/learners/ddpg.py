"""DDPG with the DRI signal in the critic's target, one agent's own learner.

Continuous actions (MPE: a 2-d force in [-1, 1]^2) are plain DDPG: a tanh actor, Q(s, a),
Gaussian exploration noise. Discrete actions (matrix games) follow MADDPG's recipe: the actor
outputs logits, the critic scores Q(s, one_hot(a)), and the actor ascends Q(s, softmax(logits))
through the relaxed action; exploration samples a Gumbel-perturbed argmax, plus epsilon-uniform.

    target = signal + gamma * (1 - terminated) * Q_target(s', pi_target(s'))
    continuing: terminated is never set (the average-reward form, continuing.py)

ctde (`joint` given): MADDPG's centralised critic Q(x, a_1..a_n) on the global state x (MPE: every
agent's observation side by side) and every agent's action, both sent by the env server
(StepInfo.state, StepInfo.joint_actions: what each seat played, discrete actions one-hot). The
actor still acts on its own observation, and ascends Q(x, a_1..pi(o_i)..a_n): the others' actions
as they were played, its own from its policy (as MADDPG).

    target = signal + gamma * (1 - terminated) * Q_target(x', a'_1..pi_target(o'_i)..a'_n)

MADDPG takes the others' a'_j from their target policies; a decentralised process does not have
them. Here a'_j are the actions the others actually played at t+1 (their behaviour policies,
exploration noise included): a transition enters the replay buffer one step late, once the
joint actions of t+1 have come. Where the episode was cut at t (truncated: t+1 is a new episode's
first step), the others' actions at t stand in for their next ones. Own a'_i is pi_target(o'_i) as
in MADDPG. The transition waiting for its t+1 is not checkpointed: a resumed agent loses one step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drima.types import StepInfo, Transition

from .continuing import stops
from .nets import NumpyMLP, adam, mlp, soft_update, softmax
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

    def __init__(self, obs_dim: int, action_space: dict, cfg: DDPGConfig, seed: int,
                 joint: tuple[int, int, int] | None = None):
        """`joint` (ctde): (state_dim, joint_action_dim, own_action_at), the sizes of the global state
        and joint actions the env server sends, and where this agent's own action sits among them."""
        torch.manual_seed(seed)
        self.cfg = cfg
        self.continuous = action_space["type"] == "continuous"
        self.n_actions = int(action_space["dim"] if self.continuous else action_space["n"])
        self.joint = joint
        self.pending: dict[str, np.ndarray] | None = None  # ctde: step t, waiting for the joint actions of t+1
        self.actor = mlp(obs_dim, self.n_actions, cfg.hidden, out_gain=0.01)
        self.critic = mlp(obs_dim + self.n_actions if joint is None else joint[0] + joint[1], 1, cfg.hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.lr_critic)
        extras = None if joint is None else {"state": joint[0], "next_state": joint[0], "joint": joint[1],
                                             "next_joint": joint[1]}
        if self.continuous:
            self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (self.n_actions,), "float32", seed, extras)
        else:
            self.buffer = ReplayBuffer(cfg.buffer_size, obs_dim, (), "int64", seed, extras)
        self.rng = np.random.default_rng(seed)  # exploration: noise, Gumbel draws, random actions
        self.act_forward = NumpyMLP(self.actor)
        # the targets' networks in numpy (views: soft updates and loads show through)
        self.actor_target_forward = NumpyMLP(self.actor_target)
        self.critic_target_forward = NumpyMLP(self.critic_target)

    def _relaxed(self, actor, obs: torch.Tensor) -> torch.Tensor:
        """The differentiable action the critic scores: tanh output or softmax probabilities."""
        out = actor(obs)
        return torch.tanh(out) if self.continuous else F.softmax(out, dim=-1)

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        out = self.act_forward(obs)  # no action masks: info unused
        if greedy:  # no exploration noise: tanh(out), or the highest logit
            return np.tanh(out).astype(np.float32) if self.continuous else out.argmax(-1).astype(np.int32)
        if self.continuous:
            noise = self.rng.standard_normal(out.shape, dtype=np.float32) * self.cfg.noise_std
            return np.clip(np.tanh(out) + noise, -1.0, 1.0).astype(np.float32)
        u = self.rng.random(out.shape, dtype=np.float32).clip(1e-10, 1.0)
        sampled = (out / self.cfg.gumbel_temperature - np.log(-np.log(u))).argmax(-1)
        explore = self.rng.random(len(obs)) < self.cfg.explore_eps
        return np.where(explore, self.rng.integers(0, self.n_actions, size=len(obs)), sampled).astype(np.int32)

    @torch.no_grad()
    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Greedy action (continuous) or action probabilities (discrete), for evaluation."""
        return self._relaxed(self.actor, torch.as_tensor(obs)).numpy()

    def _q(self, critic, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return critic(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def _with_own(self, joint, own, cat=torch.cat):
        """The joint actions with this agent's own replaced by `own` (ctde); tensors, or numpy
        arrays with cat=np.concatenate."""
        at = self.joint[2]
        return cat([joint[:, :at], own, joint[:, at + self.n_actions:]], -1)

    def _store(self, batch: Transition) -> None:
        """Into the replay buffer: the steps the agent took part in. The buffer's `done` is
        `terminated` (continuing: never): a truncated episode is bootstrapped from its final
        observation like any other step. ctde: step t waits for the joint actions of t+1."""
        step = {"obs": batch.obs, "actions": batch.actions, "signal": batch.signal, "next_obs": batch.next_obs,
                "done": stops(batch, self.cfg.continuing).astype(np.float32), "active": batch.active}
        if self.joint is None:
            m = step.pop("active")
            self.buffer.add_batch(**{k: v[m] for k, v in step.items()})
            return
        info, nxt = batch.info, batch.next_info
        if info is None or nxt is None or info.state is None or nxt.state is None or nxt.joint_actions is None:
            raise ValueError("this DDPG critic takes the global state and joint actions: the env server sends "
                             "none (ctde)")
        if self.pending is not None:  # its next joint actions are this step's (the last ones where it was cut)
            p = self.pending
            p["next_joint"] = np.where(p.pop("cut")[:, None], p["joint"], nxt.joint_actions)
            m = p.pop("active")
            self.buffer.add_batch(**{k: v[m] for k, v in p.items()})
        self.pending = step | {"state": info.state, "next_state": nxt.state, "joint": nxt.joint_actions,
                               "cut": batch.truncated}

    def _targets(self, o2: np.ndarray, s: np.ndarray, d: np.ndarray, x2: np.ndarray | None,
                 a2: np.ndarray | None) -> np.ndarray:
        """signal + gamma * (1 - done) * Q_target at the next step (module docstring); in numpy, as
        the targets need no gradient and at this size numpy costs less than torch's per-call dispatch."""
        if self.cfg.gamma == 0:
            return s
        out = self.actor_target_forward(o2)
        own = np.tanh(out) if self.continuous else softmax(out)
        scored = np.concatenate([o2, own], -1) if self.joint is None \
            else np.concatenate([x2, self._with_own(a2, own, np.concatenate)], -1)
        return s + np.float32(self.cfg.gamma) * (1 - d) * self.critic_target_forward(scored)[:, 0]

    def update(self, batch: Transition) -> dict[str, float]:
        self._store(batch)
        if self.buffer.size < self.cfg.learning_starts:
            return {}
        o, a, s, o2, d, *ctde = self.buffer.sample(self.cfg.batch_size)
        x, x2, a_joint, a2 = ctde if ctde else (None,) * 4
        target = torch.from_numpy(self._targets(o2, s, d, x2, a2))
        o, a = torch.from_numpy(o), torch.from_numpy(a)
        if ctde:
            x, a_joint = torch.from_numpy(x), torch.from_numpy(a_joint)
        if self.joint is None:
            taken = a if self.continuous else F.one_hot(a, self.n_actions).float()
            critic_loss = F.mse_loss(self._q(self.critic, o, taken), target)
        else:
            critic_loss = F.mse_loss(self._q(self.critic, x, a_joint), target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        if self.cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.max_grad_norm)
        self.critic_opt.step()

        own = self._relaxed(self.actor, o)
        actor_loss = -(self._q(self.critic, o, own) if self.joint is None
                       else self._q(self.critic, x, self._with_own(a_joint, own))).mean()
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
            "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt", "buffer"):
            getattr(self, name).load_state_dict(state[name])
        self.rng.bit_generator.state = state["rng"]
