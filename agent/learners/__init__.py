"""Per-agent learners: each one owns its networks and optimiser; nothing is shared."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from drima.types import StepInfo

from .a2c import A2C, A2CConfig
from .ddpg import DDPG, DDPGConfig
from .dqn import DQN, DQNConfig
from .ppo import PPO, PPOConfig

CONFIGS = {"a2c": A2CConfig, "dqn": DQNConfig, "ddpg": DDPGConfig, "ppo": PPOConfig}
CLASSES = {"a2c": A2C, "dqn": DQN, "ddpg": DDPG, "ppo": PPO}
ACTION_TYPES = {"a2c": ("discrete",), "dqn": ("discrete",), "ddpg": ("discrete", "continuous"), "ppo": ("discrete",)}


class Learner(Protocol):
    """`info` / `next_info`: what the env server sent beside obs / next_obs (action masks, global
    state); only PPO uses them. A learner whose update can take seconds (PPO) also has an
    `on_progress` callable, which the agent process sets to its env-link heartbeat."""

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray: ...
    def update(self, obs: np.ndarray, actions: np.ndarray, signal: np.ndarray, next_obs: np.ndarray,
               done: np.ndarray, next_info: StepInfo | None = None) -> dict[str, float]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


def env_defaults(spec: dict, algo: str) -> dict[str, Any]:
    """Learner options implied by the environment, for the fields `algo` has.

    A one-state game (matrix games) gets gamma 0: no action changes the next state, so an
    action's value is its signal. Short episodes (MPE, 30-50 steps) get MADDPG's gamma 0.95,
    and A2C learns from 5-step rollouts there (one-step updates on small per-step signals
    barely move it)."""
    if spec.get("single_state"):
        defaults = {"gamma": 0.0}
    elif spec.get("episode_length"):
        defaults = {"gamma": 0.95} | ({"n_steps": 5, "lr_actor": 3e-3} if algo == "a2c" else {})
    else:
        defaults = {}  # PPO's own defaults are MAPPO's SMAC settings
    return defaults


def make_learner(algo: str, obs_dim: int, action_space: dict, overrides: dict[str, Any], seed: int,
                 state_dim: int = 0) -> Learner:
    """Build one agent's learner. `overrides` set fields of the algorithm's config dataclass;
    state_dim > 0 (ctde with a global state) gives PPO a centralised critic."""
    if algo not in CLASSES:
        raise ValueError(f"unknown algo {algo!r}; choose from {sorted(CLASSES)}")
    kind = action_space.get("type")
    if kind not in ACTION_TYPES[algo]:
        raise ValueError(f"{algo} supports {' or '.join(ACTION_TYPES[algo])} actions, not {kind!r}")
    cfg_cls = CONFIGS[algo]
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {algo} option(s) {sorted(unknown)}; known: {sorted(known)}")
    cfg = cfg_cls(**overrides)
    if algo == "ddpg":
        return DDPG(obs_dim, action_space, cfg, seed)
    if algo == "ppo":
        return PPO(obs_dim, int(action_space["n"]), cfg, seed, state_dim)
    return CLASSES[algo](obs_dim, int(action_space["n"]), cfg, seed)
