"""Environments the env server can step: K copies at once, one observation and reward per agent.

Every environment here follows the same small contract (:class:`VectorEnv`), so the server
loop never needs to know which game it is stepping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .matrix_games import MatrixGame, get_game


class VectorEnv(Protocol):
    """K copies of a game. What an env may have beyond this is declared in the capability
    protocols below, and the server checks them with isinstance."""

    n_agents: int
    n_envs: int

    def agent_spec(self, agent: int) -> dict:
        """What agent `agent` needs to build its learner: obs_dim and action space."""

    def reset(self) -> list[np.ndarray]:
        """Per-agent observations, each (K, obs_dim) float32."""

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Per-agent (K,) actions -> (per-agent next obs, rewards (n_agents, K), dones (K,)).
        A copy whose episode ended is reset at once: its next obs is the new episode's first, and
        done (K,) marks it. Without AgentEpisodes, every agent's episode ended there, terminally."""


@dataclass(frozen=True, slots=True)
class EpisodeEnds:
    """How the last step ended each agent's episode, for envs whose agents leave episodes on
    their own (PettingZoo) or by a time limit."""

    terminated: np.ndarray
    """(n_agents, K) bool: the agent's episode ended in a terminal state at this step"""
    truncated: np.ndarray
    """(n_agents, K) bool: the agent's episode was cut at this step (a time limit)"""
    final_obs: list[np.ndarray | None]
    """per agent, (K, obs_dim): the observation its episode ended on, in the rows where it was
    truncated (the next obs is then a new episode's); None where no row was truncated"""
    active: np.ndarray
    """(n_agents, K) bool: the agent is in the episode at the next observation"""
    acted: np.ndarray
    """(n_agents, K) bool: the agent was in the episode for the step just taken (its action played)"""


def time_limit_ends(truncated: np.ndarray, terminated: np.ndarray, final_obs: list[np.ndarray] | None,
                    n_agents: int) -> EpisodeEnds:
    """EpisodeEnds of an env whose agents start and end episodes together (MPE, battles): per copy,
    cut by the time limit (`truncated`, (K,) bool; `final_obs` the per-agent observations before the
    reset) or ended in a terminal state (`terminated`, (K,) bool). Every agent takes part throughout."""
    truncated = truncated & ~terminated  # a terminal state reached at the time limit is terminal
    every = np.ones((n_agents, len(truncated)), bool)
    return EpisodeEnds(np.broadcast_to(terminated, every.shape).copy(), np.broadcast_to(truncated, every.shape).copy(),
                       list(final_obs) if truncated.any() and final_obs is not None else [None] * n_agents,
                       every, every)


def peer_masks(near: np.ndarray | None, ends: EpisodeEnds | None) -> np.ndarray | None:
    """(n_agents, n_agents, K) bool: row [i, j] says in which copies agent j counts as agent i's
    neighbour for the step just taken: within range (`near`, range topologies) and in the episode
    (an agent out of it has no reward to share). None: every linked peer counts."""
    if ends is None or ends.acted.all():
        return near
    took_part = np.broadcast_to(ends.acted[None], (ends.acted.shape[0], *ends.acted.shape))
    return took_part if near is None else near & took_part


class EpisodeTally:
    """Per copy, the team return and length of the episode in progress; the episodes that ended,
    as HasEpisodeMetrics reports them (the adapters for PettingZoo and VMAS share it)."""

    names = ("episode_team_return", "episode_length")

    def __init__(self, n_envs: int):
        self.team_return = np.zeros(n_envs)
        self.length = np.zeros(n_envs, np.int64)
        self.finished: list[dict[str, float]] = []

    def add(self, team_rewards: np.ndarray) -> None:
        """One step of every copy: (K,) rewards summed over agents."""
        self.team_return += team_rewards
        self.length += 1

    def end(self, copies: np.ndarray) -> None:
        """These copies' episodes ended: record them, and start counting anew."""
        for k in copies:
            self.finished.append({"episode_team_return": float(self.team_return[k]),
                                  "episode_length": float(self.length[k])})
        self.team_return[copies], self.length[copies] = 0.0, 0

    def pop(self) -> list[dict[str, float]]:
        out, self.finished = self.finished, []
        return out


@runtime_checkable
class AgentEpisodes(Protocol):
    def episode_ends(self) -> EpisodeEnds:
        """How the last step() ended episodes, per agent and copy."""


@runtime_checkable
class HasPositions(Protocol):
    """Envs whose agents have positions: range topologies work there."""

    def in_range(self, radius: float | None) -> np.ndarray:
        """(n_agents, n_agents, K) bool: who is within `radius` of whom (None: each unit's sight)."""


@runtime_checkable
class HasActionMasks(Protocol):
    def avail_actions(self) -> list[np.ndarray]:
        """Per agent, (K, n_actions) bool: the actions allowed at the current observation."""


@runtime_checkable
class HasGlobalState(Protocol):
    """Envs with a global state: ctde's centralised critics read it (the env server sends it in
    ctde mode only). ctde needs it: the env server refuses ctde with an env that has none."""

    state_dim: int

    def global_state(self) -> np.ndarray:
        """(K, state_dim) float32: the global state at the current observation (ctde critics)."""


@runtime_checkable
class HasFinalState(Protocol):
    """Envs with a global state that also keep the state a truncated episode ended on (the next
    observation is then a new episode's): a critic bootstraps the cut episode from it."""

    def final_global_state(self) -> np.ndarray | None:
        """(K, state_dim) float32: where the last step truncated a copy, the state its episode ended
        on (other rows: the current state); None where no copy was truncated."""


@runtime_checkable
class HasEpisodeMetrics(Protocol):
    metric_names: tuple[str, ...]

    def pop_task_metrics(self) -> list[dict[str, float]]:
        """One dict per episode that ended since the last call (all of metric_names)."""


@runtime_checkable
class HasTeamReward(Protocol):
    def team_reward(self, rewards: np.ndarray) -> np.ndarray:
        """(n_agents, K) -> (K,): ctde's team reward, where it is not the sum over agents (MPE,
        battles: the mean)."""


@runtime_checkable
class HasIdleActions(Protocol):
    def idle_actions(self) -> np.ndarray:
        """(K, n_agents): the action that does nothing (battles: stop; action 0 is a move there)."""


class MatrixGameEnv:
    """A repeated one-state matrix game, K copies, for n agents in groups of P players.

    With n == P it is the plain game. With n a multiple of P, agent i takes seat i % P in
    group i // P, each group playing its own copy: a ring of 6 agents can play the
    2-player Prisoner's Dilemma as 3 pairs. The game is continuing: `done` is never set.
    The observation is a constant 1 (the game has one state).
    """

    def __init__(self, game: MatrixGame, n_agents: int, n_envs: int):
        p = game.n_players
        if n_agents % p != 0:
            raise ValueError(f"game {game.name!r} has {p} players: --n must be a multiple of {p}, got {n_agents}")
        self.game, self.n_agents, self.n_envs = game, n_agents, n_envs
        self.n_groups = n_agents // p
        self._obs = np.ones((n_envs, 1), np.float32)
        self._done = np.zeros(n_envs, np.float32)
        self.n_joint = int(np.prod(game.n_actions))
        self.joint_counts = np.zeros(self.n_joint, np.int64)
        self.count_joint_actions = False  # switched on by the server for the final window
        self.state_dim = 1  # the one state: ctde's critics see what every agent sees (HasGlobalState)

    def global_state(self) -> np.ndarray:
        return self._obs

    def agent_spec(self, agent: int) -> dict:
        seat = agent % self.game.n_players
        return {"obs_dim": 1, "action": {"type": "discrete", "n": self.game.n_actions[seat]},
                "action_names": list(self.game.actions[seat]), "continuing": True, "single_state": True,
                "env": self.game.name}

    def reset(self) -> list[np.ndarray]:
        return [self._obs] * self.n_agents

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        p = self.game.n_players
        joint = np.stack(actions).astype(np.int64).reshape(self.n_groups, p, self.n_envs)
        rewards = np.empty((self.n_agents, self.n_envs), np.float32)
        for g in range(self.n_groups):
            rewards[g * p:(g + 1) * p] = self.game.rewards(joint[g])
        if self.count_joint_actions:
            flat = np.ravel_multi_index(tuple(joint.transpose(1, 0, 2).reshape(p, -1)), self.game.n_actions)
            self.joint_counts += np.bincount(flat, minlength=self.n_joint)
        return [self._obs] * self.n_agents, rewards, self._done

    def joint_action_freq(self) -> dict[str, float]:
        total = self.joint_counts.sum()
        if total == 0:
            return {}
        labels = (self.game.label(np.unravel_index(i, self.game.n_actions)) for i in range(self.n_joint))
        return {lab: float(c / total) for lab, c in zip(labels, self.joint_counts, strict=True)}


MPE_ENVS = ("hunting", "collection")
PETTINGZOO_PREFIX = "pettingzoo:"  # pettingzoo:MODULE[:FACTORY], see pettingzoo_env.py
BATTLE_ENVS = ("smax", "sc2")  # smax:MAP (jaxmarl), sc2:MAP (StarCraft II through SMAC)
VMAS_PREFIX = "vmas:"  # vmas:SCENARIO, see vmas_env.py


def is_mpe(spec: str) -> bool:
    return spec in MPE_ENVS


def is_vmas(spec: str) -> bool:
    return spec.startswith(VMAS_PREFIX)


def team_reward(env: VectorEnv, rewards: np.ndarray) -> np.ndarray:
    """ctde's team reward (K,): the env's own definition (MPE, battles: the mean over agents) or the sum."""
    return env.team_reward(rewards) if isinstance(env, HasTeamReward) else rewards.sum(0)


def joint_action_offsets(spaces: list[dict]) -> np.ndarray:
    """(n_agents + 1,) int: agent i's action sits at [offsets[i], offsets[i + 1]) of the joint action
    vector (a discrete action takes n places, one-hot; a continuous one its dim)."""
    widths = [int(a["dim"] if a["type"] == "continuous" else a["n"]) for a in spaces]
    return np.concatenate([[0], np.cumsum(widths)]).astype(int)


def joint_actions(actions: list[np.ndarray], spaces: list[dict], n_envs: int) -> np.ndarray:
    """(K, joint_action_dim) float32: every agent's played actions side by side, in agent order, a
    discrete one one-hot (ctde's "joint_actions": MADDPG's critic input)."""
    at = joint_action_offsets(spaces)
    joint = np.zeros((n_envs, int(at[-1])), np.float32)
    for i, (act, space) in enumerate(zip(actions, spaces, strict=True)):
        if space["type"] == "continuous":
            joint[:, at[i]:at[i + 1]] = np.asarray(act, np.float32).reshape(n_envs, -1)
        else:
            joint[np.arange(n_envs), at[i] + np.asarray(act, np.int64).reshape(-1)] = 1.0
    return joint


def require_global_state(env: object, spec: str) -> None:
    """ctde's centralised critics read the global state: ValueError where `env` (--env `spec`) has none."""
    if not (isinstance(env, HasGlobalState) and env.state_dim > 0):
        raise ValueError(f"--mode ctde and --global-state need a global state for the centralised critics: --env "
                         f"{spec} has none")


def ctde_spec(env: VectorEnv, agent: int) -> dict[str, int]:
    """What ctde adds to an agent's SPEC: the sizes of the global state and joint actions it will be
    sent, and where its own action sits among them (its learner's centralised critic is built from them)."""
    require_global_state(env, getattr(env, "spec", type(env).__name__))
    at = joint_action_offsets([env.agent_spec(j)["action"] for j in range(env.n_agents)])
    return {"state_dim": int(env.state_dim), "joint_action_dim": int(at[-1]), "own_action_at": int(at[agent])}


def battle_kind(spec: str) -> str | None:
    """"smax" or "sc2" for `smax:MAP` / `sc2:MAP`, else None."""
    kind, sep, _ = spec.partition(":")
    return kind if sep and kind in BATTLE_ENVS else None


def has_positions(spec: str) -> bool:
    """Envs whose agents have positions: range topologies work there."""
    return is_mpe(spec) or is_vmas(spec) or battle_kind(spec) is not None


def default_action_type(spec: str, algo: str) -> str:
    """DDPG acts with continuous forces in MPE and VMAS; everything else is discrete."""
    return "continuous" if (is_mpe(spec) or is_vmas(spec)) and algo == "ddpg" else "discrete"


def battle_spec(spec: str) -> dict:
    """Sizes of `smax:MAP` / `sc2:MAP` without starting JAX or StarCraft II: n_agents, and obs_dim
    and n_actions where they are known without the game (for the launcher's checks)."""
    if battle_kind(spec) == "smax":
        from .smax import static_spec

        s = static_spec(spec)
        return {"n_agents": s["n_allies"], "obs_dim": s["obs_dim"], "n_actions": s["n_actions"]}
    from .smac_sc2 import N_NON_ATTACK, map_size

    allies, enemies = map_size(spec)
    return {"n_agents": allies, "obs_dim": None, "n_actions": N_NON_ATTACK + enemies}


def make_env(spec: str, n_agents: int, n_envs: int, seed: int = 0, action_type: str = "discrete",
             options: dict | None = None, workers: int = 1, final_state: bool = False) -> VectorEnv:
    """`pd`, `maintain`, `meeting3`, `payoff:FILE` (matrix games), `hunting`, `collection` (MPE),
    `smax:MAP` (jaxmarl's SMAX; imports JAX), `sc2:MAP` (StarCraft II through SMAC),
    `pettingzoo:MODULE[:FACTORY]` (any PettingZoo ParallelEnv; its own spaces decide the actions;
    `workers` > 1 steps its copies in that many processes at once) or `vmas:SCENARIO` (VMAS, K
    copies as one batched torch computation; imports vmas). `final_state`: SMAX keeps the global
    state a cut battle ended on (HasFinalState, for ctde critics) only when asked, since it costs
    about a fifth of its step; the other envs keep theirs anyway."""
    if is_vmas(spec):
        from .vmas_env import VMASVectorEnv  # imports vmas (and gym): only when asked for

        return VMASVectorEnv(spec, n_agents, n_envs, seed, action_type, options)
    if spec.startswith(PETTINGZOO_PREFIX):
        from .pettingzoo_env import PettingZooVectorEnv

        return PettingZooVectorEnv(spec, n_agents, n_envs, seed, options, workers)
    if workers != 1:
        raise ValueError(f"env workers step PettingZoo envs; --env {spec} is stepped in one batch already")
    if battle_kind(spec) is not None:
        if action_type != "discrete":
            raise ValueError(f"{spec} has discrete actions only")
        if battle_kind(spec) == "smax":
            from .smax import SMAXVectorEnv  # imports JAX: only in the env server

            return SMAXVectorEnv(spec, n_agents, n_envs, seed, options, final_state=final_state)
        from .smac_sc2 import SC2VectorEnv

        return SC2VectorEnv(spec, n_agents, n_envs, seed, options)
    if is_mpe(spec):
        from .mpe.vector import MPEVectorEnv  # imports mpe2/pygame: only when asked for

        return MPEVectorEnv(spec, n_agents, n_envs, seed, action_type, options)
    if action_type != "discrete":
        raise ValueError(f"matrix game {spec!r} has discrete actions only")
    if options:
        raise ValueError(f"matrix game {spec!r} takes no env options, got {sorted(options)}")
    return MatrixGameEnv(get_game(spec), n_agents, n_envs)


def default_agents(spec: str, options: dict) -> int:
    """As many agents as the environment has learners (the launcher's default --n). Raises
    ValueError for an env or option that cannot be built."""
    if is_vmas(spec):
        from .vmas_env import count_agents

        return count_agents(spec, options)
    if spec.startswith(PETTINGZOO_PREFIX):
        from .pettingzoo_env import possible_agents

        return len(possible_agents(spec, options))
    if battle_kind(spec):
        return battle_spec(spec)["n_agents"]
    if is_mpe(spec):
        from .mpe.vector import count_learners

        return count_learners(spec, options)
    return get_game(spec).n_players
