"""Per-agent learners: each one owns its networks and optimiser; nothing is shared.

A learner is anything that follows the :class:`Learner` protocol. Learners are made by
factories `(spec: LearnerSpec, options: dict, seed: int) -> Learner`, found by name: the
built-in ones (a2c, dqn, ddpg, ppo) are registered below, and `--algo MODULE:NAME` loads any
other, a class whose constructor takes those three arguments (docs/learners.md writes one).
Optional capabilities are declared in the protocols :class:`TracksEpisodes`,
:class:`ReportsProgress` and :class:`ActsAhead`; the agent process checks them with isinstance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from drima.loading import load_object
from drima.types import ALGOS, LearnerSpec, StepInfo, Transition

from .a2c import A2C, A2CConfig
from .ddpg import DDPG, DDPGConfig
from .dqn import DQN, DQNConfig
from .ppo import PPO, PPOConfig


@runtime_checkable
class Learner(Protocol):
    """What the agent process calls, every step: act on K observations, then learn from the
    transition once the step's reward and the neighbours' scalars are in."""

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        """(K, obs_dim) -> (K,) int32 actions, or (K, dim) float32 in [-1, 1]. greedy: no exploration
        (drima-launch --evaluate). `info`: action masks and global state, where the env has them."""

    def update(self, batch: Transition) -> dict[str, float]:
        """Learn from one step (only where batch.active); returns losses to log (may be empty)."""

    def state_dict(self) -> dict:
        """Everything needed to go on after a restart (networks, optimisers, RNGs), for torch.save."""

    def load_state_dict(self, state: dict) -> None: ...


@runtime_checkable
class TracksEpisodes(Protocol):
    """A learner with memory across steps (a recurrent policy) that must hear where episodes
    restart even when it learns nothing (evaluation)."""

    def episode_ends(self, starts: np.ndarray) -> None:
        """(K,) bool: the next observation begins a new episode in these copies."""


@runtime_checkable
class ReportsProgress(Protocol):
    """A learner whose update can take seconds (PPO's epochs): the agent process sets
    on_progress to its env-link heartbeat, to be called between gradient steps, so that a long
    update does not look like a dead agent. When the agent is asked to stop, on_progress raises
    KeyboardInterrupt: the weights must be whole at each call (after an optimiser step), since
    the agent then saves its checkpoint."""

    on_progress: Callable[[], None]


@runtime_checkable
class ActsAhead(Protocol):
    """A learner whose act() keeps nothing that the next update() needs (no recurrent state, no
    pending record of the step): the agent may act on the next observation before it learns from
    the step that led to it, if `acts_ahead` is True."""

    acts_ahead: bool


LearnerFactory = Callable[[LearnerSpec, dict, int], Learner]


def _options(cfg_cls: type, algo: str, overrides: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown {algo} option(s) {sorted(unknown)}; known: {sorted(known)}")
    return cfg_cls(**overrides)


def _needs(algo: str, spec: LearnerSpec, kinds: tuple[str, ...]) -> None:
    if spec.action.get("type") not in kinds:
        raise ValueError(f"{algo} supports {' or '.join(kinds)} actions, not {spec.action.get('type')!r}")


def _a2c(spec: LearnerSpec, options: dict, seed: int) -> A2C:
    _needs("a2c", spec, ("discrete",))
    return A2C(spec.obs_dim, int(spec.action["n"]), _options(A2CConfig, "a2c", options), seed, spec.state_dim)


def _dqn(spec: LearnerSpec, options: dict, seed: int) -> DQN:
    """In ctde, DQN stays an independent Q-learner on its own observation, learning from the team
    reward (dqn.py says why); the global state is not used."""
    _needs("dqn", spec, ("discrete",))
    return DQN(spec.obs_dim, int(spec.action["n"]), _options(DQNConfig, "dqn", options), seed)


def _ddpg(spec: LearnerSpec, options: dict, seed: int) -> DDPG:
    _needs("ddpg", spec, ("discrete", "continuous"))
    joint = (spec.state_dim, spec.joint_action_dim, spec.own_action_at) if spec.state_dim and spec.joint_action_dim \
        else None
    return DDPG(spec.obs_dim, spec.action, _options(DDPGConfig, "ddpg", options), seed, joint)


def _ppo(spec: LearnerSpec, options: dict, seed: int) -> PPO:
    _needs("ppo", spec, ("discrete",))
    return PPO(spec.obs_dim, int(spec.action["n"]), _options(PPOConfig, "ppo", options), seed, spec.state_dim)


LEARNERS: dict[str, LearnerFactory] = {}
CONFIGS = {"a2c": A2CConfig, "dqn": DQNConfig, "ddpg": DDPGConfig, "ppo": PPOConfig}


def register_learner(name: str, factory: LearnerFactory) -> None:
    """Make `--algo NAME` build learners with `factory`."""
    LEARNERS[name] = factory


for _name, _factory in zip(ALGOS, (_a2c, _dqn, _ddpg, _ppo), strict=True):
    register_learner(_name, _factory)


def learner_factory(algo: str) -> LearnerFactory:
    """A registered name, or `MODULE:NAME` (a dotted module or a .py file, then a class or function)."""
    if algo in LEARNERS:
        return LEARNERS[algo]
    module, sep, name = algo.rpartition(":")
    if not sep or not module or not name:
        raise ValueError(f"unknown algo {algo!r}: use one of {', '.join(LEARNERS)}, or MODULE:CLASS "
                         f"for a learner of your own (docs/learners.md)")
    factory = load_object(module, name, f"--algo {algo}")
    if not callable(factory):
        raise ValueError(f"--algo {algo}: {name} is not a class or function")
    return factory


EPISODIC = {"a2c": {"n_steps": 5, "lr_actor": 3e-3}, "ddpg": {"buffer_size": 32768}}
"""per learner, what short episodes (MPE) change beyond gamma (env_defaults)"""


def env_defaults(spec: dict, algo: str) -> dict[str, Any]:
    """Learner options implied by the environment, for the fields `algo` has (built-in learners
    only: a learner of your own reads LearnerSpec.env itself).

    A one-state game (matrix games) gets gamma 0: no action changes the next state, so an
    action's value is its signal. Short episodes (MPE, 30-50 steps) get MADDPG's gamma 0.95,
    A2C learns from 5-step rollouts there (one-step updates on small per-step signals
    barely move it), and DDPG keeps 32,768 transitions instead of 4,096: on collection every
    mode learned more with it, ctde's critic on hundreds of inputs most (group reward 7.3 ->
    22.3; docs/results.md, "DDPG's replay buffer")."""
    if algo not in CONFIGS:
        return {}
    if spec.get("single_state"):
        defaults = {"gamma": 0.0}
    elif spec.get("episode_length"):
        defaults = {"gamma": 0.95} | EPISODIC.get(algo, {})
    else:
        defaults = {}  # PPO's own defaults are MAPPO's SMAC settings
    return defaults


def make_learner(algo: str, obs_dim: int, action_space: dict, overrides: dict[str, Any], seed: int,
                 state_dim: int = 0, env_spec: dict | None = None) -> Learner:
    """Build one agent's learner. `overrides`: the learner's options (for the built-in ones,
    fields of its config dataclass); state_dim > 0 (ctde, --global-state) gives A2C and PPO a critic on the
    global state, and with env_spec's joint_action_dim and own_action_at DDPG a critic on the global
    state and every agent's actions. Raises ValueError (one line) for a bad algo, option or action space."""
    env_spec = dict(env_spec or {})
    spec = LearnerSpec(int(obs_dim), dict(action_space), int(state_dim), int(env_spec.get("joint_action_dim", 0)),
                       int(env_spec.get("own_action_at", 0)), env_spec)
    factory = learner_factory(algo)
    try:
        learner = factory(spec, dict(overrides), seed)
    except (ValueError, TypeError) as exc:
        if algo in LEARNERS:
            raise ValueError(str(exc)) from None
        raise ValueError(f"--algo {algo}: building the learner failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # a learner of the user's own may raise anything: still one line, no traceback
        if algo in LEARNERS:
            raise
        raise ValueError(f"--algo {algo}: building the learner failed: {type(exc).__name__}: {exc}") from None
    missing = [m for m in ("act", "update", "state_dict", "load_state_dict") if not callable(getattr(learner, m, None))]
    if missing:
        raise ValueError(f"--algo {algo}: the learner has no {', '.join(missing)} (see the Learner protocol, "
                         f"docs/learners.md)")
    return learner
