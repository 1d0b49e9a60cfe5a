"""Recurrent PPO with MAPPO's recipe (Yu et al. 2022), one agent's own actor and critic.

Nothing is shared across agent processes: each has its GRU actor pi(a | o_1..o_t), with the
actions the env forbids masked out (the "avail" extra), and its GRU critic V(o_1..o_t), or in
ctde V(s_1..s_t) on the global state the env server sends. Every n_steps steps (x K copies):

    delta_t  = signal_t + gamma * V_{t+1} * (1 - terminated_t) - V_t    V de-normalised; where the
               episode was truncated, V_{t+1} is the value of its final observation
    A_t      = GAE(lambda) over the rollout, cut where an episode ended, then standardised over the
               steps the agent took part in (Transition.active);  G_t = A_t + V_t
    value normalisation: the critic predicts (G - m) / s, m and s running statistics of G
    for each of `epochs` passes, over minibatches of recurrent chunks (chunk_len steps, the GRU
    state stored at the chunk's start, reset where an episode starts inside the chunk):
        ratio       = pi(a | h) / pi_old(a | h)
        actor loss  = -mean(min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A)) - entropy_coef * H
        critic loss = mean(max(huber(G_n - V), huber(G_n - V_clipped)))   G_n = normalised G

`signal` is the DRI differential reward (r - mu in ind; in ctde from the team reward), as in the
other learners. Cut at episode ends (done), the -mu in it is a cost per step alive, which can pay
for ending episodes early when agents control their length (SMAX: dying). With continuing=True the
returns run on into the next episode (the paper's average-reward view): -mu is then paid at every
step whatever happens and changes no choice; what counts is reward per step over the stream of
episodes. tests/test_ppo.py shows both on a toy task; on SMAX it did not help (3m: a lower win
rate; 5m_vs_6m: dri still charges, benchmarks/README.md), so the default stays MAPPO's episodic
cut. A dead SMAX/SC2 unit has one available action, so its policy gradient is 0.
Defaults are MAPPO's SMAC settings (hidden 64, lr 5e-4, Adam eps 1e-5, 400-step rollouts,
chunks of 10, clip 0.2, entropy 0.01, Huber delta 10, gradient norm 10, gamma 0.99, GAE 0.95);
MAPPO runs 15 epochs on easy maps, 10 on hard ones (the default here) and 5 on super hard ones.
The rollout in progress is not checkpointed: a resumed agent starts a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drima.types import StepInfo, Transition

from .nets import adam, linear


@dataclass
class PPOConfig:
    hidden: int = 64
    """width of the MLP layers and of the GRU"""
    lr: float = 5e-4
    """actor step size"""
    critic_lr: float = 5e-4
    """critic step size"""
    adam_eps: float = 1e-5
    """Adam epsilon (MAPPO's)"""
    gamma: float = 0.99
    """discount"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    n_steps: int = 400
    """rollout length in steps; every update learns from n_steps x K transitions"""
    epochs: int = 10
    """passes over each rollout (MAPPO: 15 easy maps, 10 hard, 5 super hard)"""
    minibatches: int = 1
    """minibatches per pass, each a share of the rollout's chunks"""
    chunk_len: int = 10
    """steps per recurrent training chunk (divides n_steps)"""
    clip: float = 0.2
    """PPO ratio clip, also the value clip"""
    entropy_coef: float = 0.01
    """entropy bonus"""
    value_coef: float = 1.0
    """weight of the critic loss"""
    huber_delta: float = 10.0
    """Huber loss threshold of the critic"""
    max_grad_norm: float = 10.0
    """gradient clipping, actor and critic separately"""
    value_norm: bool = True
    """normalise the critic's targets by running statistics of the returns"""
    active_masks: bool = False
    """policy terms over steps with a choice only (MAPPO's active masks: a dead unit's steps, with
    one allowed action, count neither in the advantage statistics nor in the actor and entropy means)"""
    continuing: bool = False
    """bootstrap through episode ends, the paper's average-reward view (the GRU still restarts)"""
    lr_anneal_steps: int = 0
    """agent steps over which both step sizes fall linearly to 0, as JaxMARL's PPO anneals over its
    run (set it to the run's --steps); 0 keeps them constant"""

    def __post_init__(self):
        if self.chunk_len < 1 or self.n_steps % self.chunk_len != 0:
            raise ValueError(f"ppo: chunk_len {self.chunk_len} must divide n_steps {self.n_steps}")
        if self.minibatches < 1 or self.epochs < 1:
            raise ValueError("ppo: minibatches and epochs must be >= 1")
        if self.lr_anneal_steps < 0:
            raise ValueError(f"ppo: lr_anneal_steps {self.lr_anneal_steps} must be >= 0 (0: constant step sizes)")


def _f32(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


def gae(signal: torch.Tensor, values: torch.Tensor, v_next: torch.Tensor, terminated: torch.Tensor,
        done: torch.Tensor, v_final: torch.Tensor, gamma: float, gae_lambda: float, episodic: bool) -> torch.Tensor:
    """GAE(lambda) advantages over a rollout, all (T, K) but v_next (K,), the value after its last
    step. Episodic: cut where an episode ended (done), bootstrapped only where it was not
    terminated, a truncated episode going on from the value of its final observation (v_final);
    otherwise returns run on through every episode end."""
    n_steps = values.shape[0]
    adv = torch.zeros_like(values)
    running = torch.zeros_like(v_next)
    for t in reversed(range(n_steps)):
        following = v_next if t == n_steps - 1 else values[t + 1]
        if episodic:
            trunc = done[t] - terminated[t]
            following = following * (1 - trunc) + v_final[t]
            bootstrap, chain = 1.0 - terminated[t], 1.0 - done[t]
        else:
            bootstrap = chain = 1.0
        delta = signal[t] + gamma * following * bootstrap - values[t]
        running = delta + gamma * gae_lambda * chain * running
        adv[t] = running
    return adv


def _standardise(adv: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(adv - mean) / std, both over the steps with weight 1."""
    mean = (adv * weights).sum() / weights.sum().clamp(min=1)
    std = (((adv - mean) ** 2 * weights).sum() / (weights.sum() - 1).clamp(min=1)).sqrt()
    return (adv - mean) / (std + 1e-5)


def _chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """(T, K, ...) -> (length, T/length * K, ...): the rollout cut into chunks of `length` steps."""
    t, k, rest = x.shape[0], x.shape[1], x.shape[2:]
    return x.reshape(t // length, length, k, *rest).transpose(0, 1).reshape(length, (t // length) * k, *rest)


class RecurrentNet(nn.Module):
    """MAPPO's R-MAPPO network: LayerNorm(input) -> 2 x (Linear, ReLU, LayerNorm) -> GRU ->
    LayerNorm -> linear head."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, out_gain: float):
        super().__init__()
        self.base = nn.Sequential(nn.LayerNorm(in_dim), linear(in_dim, hidden), nn.ReLU(), nn.LayerNorm(hidden),
                                  linear(hidden, hidden), nn.ReLU(), nn.LayerNorm(hidden))
        self.gru = nn.GRUCell(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.head = linear(hidden, out_dim, gain=out_gain)

    def forward(self, x: torch.Tensor, h: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, in), h (B, hidden) before step 0, starts (T, B) 1 where an episode begins
        (the GRU state is zeroed there) -> outputs (T, B, out), GRU state after step T-1."""
        feats, outs = self.base(x), []
        for t in range(x.shape[0]):
            h = self.gru(feats[t], h * (1.0 - starts[t]).unsqueeze(-1))
            outs.append(h)
        return self.head(self.norm(torch.stack(outs))), h


class ValueNorm(nn.Module):
    """MAPPO's running mean / std of the returns (debiased exponential averages)."""

    def __init__(self, beta: float = 0.99999):
        super().__init__()
        self.beta = beta
        for name in ("mean", "mean_sq", "debias"):
            self.register_buffer(name, torch.zeros(()))

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        d = self.debias.clamp(min=1e-5)
        mean = self.mean / d
        return mean, (self.mean_sq / d - mean**2).clamp(min=1e-2).sqrt()

    def update(self, x: torch.Tensor) -> None:
        b = self.beta
        self.mean.mul_(b).add_((1 - b) * x.mean())
        self.mean_sq.mul_(b).add_((1 - b) * (x**2).mean())
        self.debias.mul_(b).add_(1 - b)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self.stats()
        return x * std + mean


class PPO:
    def __init__(self, obs_dim: int, n_actions: int, cfg: PPOConfig, seed: int, state_dim: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.centralised = state_dim > 0  # ctde: the critic sees the global state
        self.actor = RecurrentNet(obs_dim, n_actions, cfg.hidden, out_gain=0.01)
        self.critic = RecurrentNet(state_dim if self.centralised else obs_dim, 1, cfg.hidden, out_gain=1.0)
        self.actor_opt = adam(self.actor.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.critic_opt = adam(self.critic.parameters(), lr=cfg.critic_lr, eps=cfg.adam_eps)
        self.value_norm = ValueNorm()
        self.gen = torch.Generator().manual_seed(seed)
        self.h_actor = self.h_critic = self.starts = None  # per copy, created at the first act
        self.pending: dict | None = None  # what act() computed, completed by update()
        self.rollout: list[dict] = []
        self.steps_learned = 0  # agent steps in the rollouts learned from so far (lr annealing)
        # called after every gradient step: the agent process sends its env-link heartbeat there,
        # so that an update of several seconds does not look like a dead agent
        self.on_progress: Callable[[], None] = lambda: None

    def _critic_input(self, obs: np.ndarray, info: StepInfo | None) -> torch.Tensor:
        if not self.centralised:
            return torch.as_tensor(obs)
        if info is None or info.state is None:
            raise ValueError("this PPO critic takes the global state: the env server sends none (ctde)")
        return torch.as_tensor(info.state)

    def _values(self, v: torch.Tensor) -> torch.Tensor:
        return self.value_norm.denormalize(v) if self.cfg.value_norm else v

    @torch.no_grad()
    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        k = obs.shape[0]
        if self.h_actor is None:
            self.h_actor = self.h_critic = torch.zeros(k, self.cfg.hidden)
            self.starts = torch.ones(k)
        avail = torch.ones(k, self.actor.head.out_features, dtype=torch.bool) if info is None or info.avail is None \
            else torch.as_tensor(info.avail).bool()
        crit_in = self._critic_input(obs, info)
        logits, h_a = self.actor(torch.as_tensor(obs)[None], self.h_actor, self.starts[None])
        logp_all = F.log_softmax(logits[0].masked_fill(~avail, -1e10), dim=-1)
        actions = logp_all.argmax(-1) if greedy \
            else torch.multinomial(logp_all.exp(), 1, generator=self.gen).squeeze(-1)
        value, h_c = self.critic(crit_in[None], self.h_critic, self.starts[None])
        self.pending = {"obs": torch.as_tensor(obs), "crit_in": crit_in, "avail": avail, "starts": self.starts,
                        "h_actor": self.h_actor, "h_critic": self.h_critic, "actions": actions,
                        "logp": logp_all.gather(-1, actions[:, None]).squeeze(-1), "value": value[0, :, 0]}
        self.h_actor, self.h_critic = h_a, h_c
        self.starts = torch.zeros(k)
        return actions.numpy().astype(np.int32)

    def episode_ends(self, starts: np.ndarray) -> None:
        """Evaluation, where nothing is learned: the GRU state restarts where an episode begins."""
        self.pending = None
        self.starts = torch.as_tensor(starts, dtype=torch.float32)

    def _final_values(self, batch: Transition) -> torch.Tensor:
        """V of the observation each copy's episode ended on, for truncated copies (0 elsewhere):
        the critic's GRU state after the step, on the final observation. A centralised critic reads
        next_info's state: the one the episode ended on where the env keeps it (MPE), else the state
        sent with the next observation (the new episode's: battles, PettingZoo)."""
        if not batch.truncated.any() or self.cfg.continuing:
            return torch.zeros(len(batch.signal))
        with torch.no_grad():
            v, _ = self.critic(self._critic_input(batch.next_obs, batch.next_info)[None], self.h_critic,
                               torch.zeros(1, len(batch.signal)))
        return self._values(v[0, :, 0]) * torch.as_tensor(batch.truncated, dtype=torch.float32)

    def update(self, batch: Transition) -> dict[str, float]:
        if self.pending is None:  # no act() before this step (cannot happen in the agent loop)
            return {}
        self.rollout.append(self.pending | {"signal": _f32(batch.signal), "terminated": _f32(batch.terminated),
                                            "done": _f32(batch.done), "present": _f32(batch.active),
                                            "v_final": self._final_values(batch)})
        self.pending = None
        # the next observation begins a new episode where this one ended, and where the agent was
        # out of the episode (it comes back only in a new one)
        self.starts = _f32(batch.done | ~batch.active)
        if len(self.rollout) < self.cfg.n_steps:
            return {}
        roll = {key: torch.stack([step[key] for step in self.rollout]) for key in self.rollout[0]}  # (T, K, ...)
        self.rollout.clear()
        if roll["present"].sum() == 0:  # out of every episode for the whole rollout
            return {}
        adv, returns, roll["active"] = self._advantages(roll, batch)

        # ---- recurrent chunks: (T, K, ...) -> (L, T/L * K, ...), GRU states from each chunk's start ----
        L = self.cfg.chunk_len
        seq = {key: _chunks(roll[key], L) for key in ("obs", "crit_in", "avail", "starts", "actions", "logp", "value",
                                                      "active", "present")}
        seq["adv"], seq["returns"] = _chunks(adv, L), _chunks(returns, L)
        h0_actor, h0_critic = (roll[key][::L].reshape(-1, self.cfg.hidden) for key in ("h_actor", "h_critic"))

        self._anneal_step_sizes()
        self.steps_learned += self.cfg.n_steps
        return self._train(seq, h0_actor, h0_critic)

    @torch.no_grad()
    def _advantages(self, roll: dict[str, torch.Tensor],
                    batch: Transition) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """GAE over the rollout, bootstrapped from V(next observation) -> (advantages standardised
        over the active steps, critic targets, the active-step weights (T, K))."""
        v_next, _ = self.critic(self._critic_input(batch.next_obs, batch.next_info)[None], self.h_critic,
                                self.starts[None])
        values = self._values(roll["value"])
        v_next = self._values(v_next[0, :, 0])
        adv = gae(roll["signal"], values, v_next, roll["terminated"], roll["done"], roll["v_final"], self.cfg.gamma,
                  self.cfg.gae_lambda, episodic=not self.cfg.continuing)
        returns = adv + values
        present = roll["present"]
        if self.cfg.value_norm:
            self.value_norm.update(returns if present.all() else returns[present.bool()])
            returns = self.value_norm.normalize(returns)
        # steps where the policy had a choice (a dead unit has one allowed action)
        active = present * (roll["avail"].sum(-1) > 1).float() if self.cfg.active_masks else present
        return _standardise(adv, active), returns, active

    def _anneal_step_sizes(self) -> None:
        """Linear annealing to 0 over lr_anneal_steps, counted before this rollout."""
        if not self.cfg.lr_anneal_steps:
            return
        frac = max(0.0, 1.0 - self.steps_learned / self.cfg.lr_anneal_steps)
        for opt, lr in ((self.actor_opt, self.cfg.lr), (self.critic_opt, self.cfg.critic_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * frac

    def _train(self, seq: dict[str, torch.Tensor], h0_actor: torch.Tensor, h0_critic: torch.Tensor) -> dict[str, float]:
        """Epochs of clipped PPO over minibatches of chunks; the mean losses."""
        info = {"actor_loss": 0.0, "critic_loss": 0.0, "entropy": 0.0}
        n_updates = 0
        for _ in range(self.cfg.epochs):
            order = torch.randperm(h0_actor.shape[0], generator=self.gen)
            for mb in order.chunk(self.cfg.minibatches):
                losses = self._gradient_step({name: x[:, mb] for name, x in seq.items()}, h0_actor[mb], h0_critic[mb])
                for key, val in losses.items():
                    info[key] += val.item()
                n_updates += 1
        return {key: val / n_updates for key, val in info.items()}

    def _gradient_step(self, mb: dict[str, torch.Tensor], h0_actor: torch.Tensor,
                       h0_critic: torch.Tensor) -> dict[str, torch.Tensor]:
        """One step of both optimisers on a minibatch of chunks (L, B, ...); its losses."""
        logits, _ = self.actor(mb["obs"], h0_actor, mb["starts"])
        logp_all = F.log_softmax(logits.masked_fill(~mb["avail"], -1e10), dim=-1)
        logp = logp_all.gather(-1, mb["actions"][..., None]).squeeze(-1)
        act_w = mb["active"]
        act_w = act_w / act_w.sum().clamp(min=1)  # weights of a mean over the active steps
        entropy = (-(logp_all.exp() * logp_all).sum(-1) * act_w).sum()
        ratio = (logp - mb["logp"]).exp()
        a = mb["adv"]
        actor_loss = -(torch.min(ratio * a, ratio.clamp(1 - self.cfg.clip, 1 + self.cfg.clip) * a) * act_w).sum()

        v, _ = self.critic(mb["crit_in"], h0_critic, mb["starts"])
        v, old_v, g = v[..., 0], mb["value"], mb["returns"]
        v_clipped = old_v + (v - old_v).clamp(-self.cfg.clip, self.cfg.clip)
        crit_w = mb["present"]
        critic_loss = (torch.max(F.huber_loss(v, g, reduction="none", delta=self.cfg.huber_delta),
                                 F.huber_loss(v_clipped, g, reduction="none", delta=self.cfg.huber_delta))
                       * crit_w).sum() / crit_w.sum().clamp(min=1)

        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (actor_loss - self.cfg.entropy_coef * entropy + self.cfg.value_coef * critic_loss).backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), self.cfg.max_grad_norm)
        nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.max_grad_norm)
        self.actor_opt.step()
        self.critic_opt.step()
        self.on_progress()
        return {"actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": entropy}

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "value_norm": self.value_norm.state_dict(), "gen": self.gen.get_state(),
                "h_actor": self.h_actor, "h_critic": self.h_critic, "starts": self.starts,
                "steps_learned": self.steps_learned}

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "critic", "actor_opt", "critic_opt", "value_norm"):
            getattr(self, name).load_state_dict(state[name])
        self.gen.set_state(state["gen"])
        self.h_actor, self.h_critic, self.starts = state["h_actor"], state["h_critic"], state["starts"]
        self.steps_learned = int(state.get("steps_learned", 0))  # checkpoints from before annealing existed
        self.pending, self.rollout = None, []
