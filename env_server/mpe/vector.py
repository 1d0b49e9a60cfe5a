"""K copies of an MPE scenario (hunting, collection) behind the env server's VectorEnv contract.

The server steps the mpe2 worlds directly rather than through the PettingZoo wrapper: the
wrapper's per-agent AEC bookkeeping costs more than the physics, and the server needs the
positions anyway (range neighbourhoods, task metrics).

Actions, per agent and copy:
  discrete   0..4 as in mpe2: no-op, -x, +x, -y, +y (A2C, DQN)
  continuous a force direction in [-1, 1]^2 (DDPG)
both scaled by the agent's acceleration, as mpe2 does. Episodes have a fixed length (max_cycles)
and no terminal state: at the end every copy resets and `done` is 1 for that step (the observation
sent is the new episode's), and episode_ends() reports it as a truncation, not a termination, with
the observation the episode ended on, so that learners bootstrap through the time limit (the
observation carries no time: a terminal there would give one state two different values).

ctde (HasGlobalState, HasTeamReward): the global state is the concatenation of every learning
agent's observation, in agent order (MADDPG's centralised critic input; MAPPO's MPE "share_obs"),
with the state the episode ended on kept for truncated copies (HasFinalState). The team reward is
the mean of the agents' rewards, not the sum: a ctde learner's signal is then on the scale of an
ind or dri learner's (the same effective step size), and the best joint policy is the same.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from ..envs import EpisodeEnds, time_limit_ends
from . import SCENARIOS
from .batched import make_world_batch
from .hunting_batch import BATCH_SCRIPTS
from .world import stacked

EPISODE_LENGTH = {"hunting": 30, "collection": 50}
# Counted over an episode; every other task metric is a state (e.g. foods occupied) averaged over its steps.
EVENT_METRICS = {"hits", "interceptor_collisions", "episode_team_return"}
_DISCRETE_FORCE = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], np.float64)


def build_scenario(name: str, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The scenario built with its reward-scale options, and the rest (make_world's options)."""
    cls = SCENARIOS[name]
    reward_keys = set(inspect.signature(cls.__init__).parameters) - {"self"}
    try:
        scenario = cls(**{k: v for k, v in options.items() if k in reward_keys})
    except TypeError as exc:
        raise ValueError(f"--env {name}: {exc}") from None
    return scenario, {k: v for k, v in options.items() if k not in reward_keys and k != "max_cycles"}


def count_learners(name: str, options: dict[str, Any]) -> int:
    """How many learning agents the scenario has with these options (the launcher's default --n)."""
    scenario, world_options = build_scenario(name, options)
    try:
        return len(scenario.make_world(**world_options).agents)
    except TypeError as exc:
        raise ValueError(f"--env {name}: {exc}") from None


class MPEVectorEnv:
    def __init__(self, name: str, n_agents: int, n_envs: int, seed: int = 0, action_type: str = "discrete",
                 options: dict[str, Any] | None = None, physics: str = "batched"):
        """`physics`: "batched" steps the K worlds as one numpy computation; "looped" runs mpe2's
        own integration one world at a time (the reference it matches; see batched.py)."""
        if name not in SCENARIOS:
            raise ValueError(f"unknown MPE scenario {name!r}; choose from {sorted(SCENARIOS)}")
        if action_type not in ("discrete", "continuous"):
            raise ValueError(f"action type must be discrete or continuous, got {action_type!r}")
        options = dict(options or {})
        self.name, self.n_envs, self.action_type = name, n_envs, action_type
        self.episode_length = int(options.pop("max_cycles", EPISODE_LENGTH[name]))
        if name == "collection":
            options.setdefault("n_agents", n_agents)
        self.scenario, world_options = build_scenario(name, options)
        try:
            worlds = [self.scenario.make_world(**world_options) for _ in range(n_envs)]
        except TypeError as exc:  # an option the scenario does not take
            raise ValueError(f"--env {name}: {exc}") from None
        self.worlds = make_world_batch(physics, worlds, BATCH_SCRIPTS)
        self.n_agents = len(self.worlds[0].agents)
        if self.n_agents != n_agents:
            raise ValueError(f"--env {name} with {options or 'its defaults'} has {self.n_agents} learning agents, "
                             f"but --n is {n_agents}")
        self._no_end = np.zeros(n_envs, bool)
        self._ends = time_limit_ends(self._no_end, self._no_end, None, n_agents)
        self.rngs = [np.random.default_rng([seed, k]) for k in range(n_envs)]
        for w, rng in zip(self.worlds, self.rngs, strict=True):  # entities have no state until their first reset
            self.scenario.reset_world(w, rng)
        self.t = 0
        self.positions = np.zeros((n_envs, n_agents, 2))  # after the last step, before any reset
        self.metric_names = tuple(self.scenario.step_metrics(self.worlds[0]).keys()) + ("episode_team_return",)
        self._episode_sums = np.zeros(len(self.metric_names))  # this episode so far, summed over copies
        self._finished: list[np.ndarray] = []  # per finished episode: metrics averaged over copies
        self._obs_dim = len(self.scenario.observation(self.worlds[0].agents[0], self.worlds[0]))
        self.state_dim = self._obs_dim * n_agents  # ctde: every agent's observation (HasGlobalState)
        self._obs_now: list[np.ndarray] = []  # the observations last returned: the global state
        self._final_obs: list[np.ndarray] | None = None  # where the last step cut the episodes, before the reset
        # (n_agents, 1): each learner's force scale; 5.0 is mpe2's default sensitivity
        self._accel = np.array([[5.0 if a.accel is None else a.accel] for a in self.worlds[0].agents])

    def agent_spec(self, agent: int) -> dict:
        if self.action_type == "discrete":
            action = {"type": "discrete", "n": 5}
        else:
            action = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0}
        a = self.worlds[0].agents[agent]
        return {"obs_dim": self._obs_dim, "action": action, "continuing": False, "single_state": False,
                "episode_length": self.episode_length, "env": self.name, "agent_name": a.name,
                "role": getattr(a, "role", None)}

    def _observe(self) -> list[np.ndarray]:
        self._obs_now = list(np.ascontiguousarray(self.scenario.batch_observations(self.worlds)))
        return self._obs_now

    def global_state(self) -> np.ndarray:
        """(K, n_agents * obs_dim): every agent's current observation, side by side (ctde critics)."""
        return np.concatenate(self._obs_now, axis=1)

    def final_global_state(self) -> np.ndarray | None:
        """The global state the episodes ended on, where the last step cut them (all copies at once)."""
        return None if self._final_obs is None else np.concatenate(self._final_obs, axis=1)

    def team_reward(self, rewards: np.ndarray) -> np.ndarray:
        """ctde's team reward: the mean over agents (module docstring)."""
        return rewards.mean(0)

    def reset(self) -> list[np.ndarray]:
        for w, rng in zip(self.worlds, self.rngs, strict=True):
            self.scenario.reset_world(w, rng)
        self.t = 0
        self._episode_sums[:] = 0
        self._final_obs = None
        self._ends = time_limit_ends(self._no_end, self._no_end, None, self.n_agents)
        return self._observe()

    def _forces(self, actions: list[np.ndarray]) -> np.ndarray:
        """(n_agents, K, 2) unit-scale forces from each agent's K actions."""
        if self.action_type == "discrete":
            return _DISCRETE_FORCE[np.array([np.asarray(a).reshape(self.n_envs) for a in actions], np.intp)]
        return np.clip(np.array([np.asarray(a, np.float64).reshape(self.n_envs, 2) for a in actions]), -1.0, 1.0)

    def step(self, actions: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        self.worlds.step(self._forces(actions).transpose(1, 0, 2) * self._accel)
        # Rewards, metrics and observations of all K worlds at once: in Python, one world at a
        # time, they cost three times the physics.
        rewards, metrics = self.scenario.batch_outcome(self.worlds)
        rewards = rewards.astype(np.float32)
        self.positions[:] = stacked(self.worlds, "agents")
        step_metrics = np.array([metrics[name].sum() for name in self.metric_names[:-1]] + [rewards.sum()])
        self._episode_sums += step_metrics / self.n_envs
        self.t += 1
        obs, cut = self._observe(), self.t >= self.episode_length
        final = obs
        if cut:
            per_step = np.array([name not in EVENT_METRICS for name in self.metric_names])
            self._finished.append(np.where(per_step, self._episode_sums / self.t, self._episode_sums))
            obs = self.reset()
        self._final_obs = final if cut else None
        self._ends = time_limit_ends(np.full(self.n_envs, cut), self._no_end, final if cut else None, self.n_agents)
        return obs, rewards, np.full(self.n_envs, float(cut), np.float32)

    def episode_ends(self) -> EpisodeEnds:
        """The last step cut every copy's episode at max_cycles, or ended none (AgentEpisodes)."""
        return self._ends

    def in_range(self, radius: float) -> np.ndarray:
        """(n, n, K) bool: agents i and j are within `radius` of each other (i != j), measured after
        the last step, before an episode reset, i.e. where the rewards of that step were earned."""
        delta = self.positions[:, :, None, :] - self.positions[:, None, :, :]
        close = np.sqrt((delta ** 2).sum(-1)) <= radius  # (K, n, n)
        close[:, np.arange(self.n_agents), np.arange(self.n_agents)] = False
        return close.transpose(1, 2, 0)

    def pop_task_metrics(self) -> list[dict[str, float]]:
        """Task metrics of the episodes that ended since the last call, averaged over the copies:
        events (EVENT_METRICS) summed over each episode, states averaged over its steps."""
        done, self._finished = self._finished, []
        return [dict(zip(self.metric_names, map(float, ep), strict=True)) for ep in done]
