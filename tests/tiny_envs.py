"""Tiny PettingZoo ParallelEnvs for the adapter tests: each shows one thing real envs do (or get
wrong). The multi-process tests name them as `pettingzoo:<this file>:<factory>`."""

from __future__ import annotations

import time

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv


class Heterogeneous(ParallelEnv):
    """Three agents with different spaces. Rewards echo what the env received, so a test can
    check how the adapter decoded each action:
      scout: obs Box (2, 3), actions Discrete(3, start=1)  -> reward = the action (1..3)
      tank:  obs Box (4,),   actions Box [0, 10]^2         -> reward = the sum of the force
      medic: obs Discrete(5) (one-hot), actions Discrete(2) -> reward = 10 * the action
    The episode is cut after max_cycles steps (truncation, every agent)."""

    metadata = {"name": "heterogeneous_v0"}

    def __init__(self, max_cycles: int = 4):
        self.possible_agents = ["scout", "tank", "medic"]
        self.max_cycles = max_cycles
        self.t = 0
        # one space object per agent, returned on every call (what PettingZoo asks of an env)
        self._observation_spaces = {"scout": spaces.Box(-1, 1, (2, 3), np.float32),
                                    "tank": spaces.Box(-5, 5, (4,), np.float32), "medic": spaces.Discrete(5)}
        self._action_spaces = {"scout": spaces.Discrete(3, start=1), "tank": spaces.Box(0.0, 10.0, (2,), np.float32),
                               "medic": spaces.Discrete(2)}

    def observation_space(self, agent):
        return self._observation_spaces[agent]

    def action_space(self, agent):
        return self._action_spaces[agent]

    def _obs(self):
        return {"scout": np.full((2, 3), self.t / 10, np.float32), "tank": np.full(4, self.t, np.float32),
                "medic": self.t % 5}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {"scout": float(actions["scout"]), "tank": float(np.sum(actions["tank"])),
                   "medic": 10.0 * actions["medic"]}
        cut = self.t >= self.max_cycles
        obs = self._obs()
        if cut:
            self.agents = []
        return (obs, rewards, {a: False for a in rewards}, {a: cut for a in rewards}, {a: {} for a in rewards})


class EarlyExit(ParallelEnv):
    """Three agents that leave on their own: `a` terminates after 2 steps, `b` after 4, and `c`
    is cut by the time limit after 5 (truncated). Every agent in the episode earns 1 per step;
    observations are [step, agent index]."""

    metadata = {"name": "early_exit_v0"}
    ends = {"a": (2, "term"), "b": (4, "term"), "c": (5, "trunc")}

    def __init__(self):
        self.possible_agents = ["a", "b", "c"]
        self.t = 0

    def observation_space(self, agent):
        return spaces.Box(-100, 100, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _obs(self, agents):
        return {a: np.array([self.t, self.possible_agents.index(a)], np.float32) for a in agents}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(self.agents), {a: {} for a in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)}, agents {self.agents}"
        self.t += 1
        live = list(self.agents)
        term = {a: self.ends[a] == (self.t, "term") for a in live}
        trunc = {a: self.ends[a] == (self.t, "trunc") for a in live}
        obs = self._obs(live)
        self.agents = [a for a in live if not (term[a] or trunc[a])]
        return obs, {a: 1.0 for a in live}, term, trunc, {a: {} for a in live}


class Matching(ParallelEnv):
    """Two agents; each earns 1 when its action equals its observed target (a learnable task for
    a short real run), for 10-step episodes."""

    metadata = {"name": "matching_v0"}

    def __init__(self, n_actions: int = 3):
        self.possible_agents = ["left", "right"]
        self.n = n_actions
        self.rng = np.random.default_rng(0)
        self.t = 0

    def observation_space(self, agent):
        return spaces.Box(0, 1, (self.n,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(self.n)

    def _obs(self):
        self.targets = {a: int(self.rng.integers(self.n)) for a in self.possible_agents}
        return {a: np.eye(self.n, dtype=np.float32)[self.targets[a]] for a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {a: float(actions[a] == self.targets[a]) for a in self.agents}
        cut = self.t >= 10
        obs = self._obs()
        agents = self.agents
        if cut:
            self.agents = []
        return obs, rewards, {a: False for a in agents}, {a: cut for a in agents}, {a: {} for a in agents}


class Paced(ParallelEnv):
    """`n` agents, each earning 1 when its action matches its observed target, and no step sooner
    than `step_s` after the one before: a run whose speed a test can bound from above (a partition
    of 10 s must not outlast a run of 1000 steps on a fast machine)."""

    metadata = {"name": "paced_v0"}

    def __init__(self, n: int = 6, step_s: float = 0.02):
        self.possible_agents = [f"agent_{i}" for i in range(n)]
        self.step_s = step_s
        self.rng = np.random.default_rng(0)
        self.next_step_at = 0.0

    def observation_space(self, agent):
        return spaces.Box(0, 1, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _obs(self):
        self.targets = {a: int(self.rng.integers(2)) for a in self.possible_agents}
        return {a: np.eye(2, dtype=np.float32)[self.targets[a]] for a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        time.sleep(max(0.0, self.next_step_at - time.monotonic()))
        self.next_step_at = time.monotonic() + self.step_s
        rewards = {a: float(actions[a] == self.targets[a]) for a in self.agents}
        agents = self.agents
        return self._obs(), rewards, {a: False for a in agents}, {a: False for a in agents}, {a: {} for a in agents}


# -- envs that break the contract --------------------------------------------------------------------
class WrongNames(EarlyExit):
    """Reports a reward for an agent that does not exist."""

    def step(self, actions):
        obs, rewards, term, trunc, info = super().step(actions)
        return obs, rewards | {"ghost": 1.0}, term, trunc, info


class NaNReward(EarlyExit):
    """Agent b's reward is NaN; with `only_seed`, only in the copy reset with that seed."""

    def __init__(self, only_seed: int | None = None):
        super().__init__()
        self.only_seed, self.seed = only_seed, None

    def reset(self, seed=None, options=None):
        self.seed = seed if seed is not None else self.seed
        return super().reset(seed, options)

    def step(self, actions):
        obs, rewards, term, trunc, info = super().step(actions)
        if self.only_seed is None or self.seed == self.only_seed:
            rewards = rewards | {"b": float("nan")}
        return obs, rewards, term, trunc, info


class BadObservation(EarlyExit):
    """Agent c's observations have 3 values; its space says 2."""

    def _obs(self, agents):
        return {a: np.zeros(3 if a == "c" else 2, np.float32) for a in agents}


class SilentExit(EarlyExit):
    """Agent a leaves env.agents without saying it terminated or was truncated."""

    def step(self, actions):
        obs, rewards, term, trunc, info = super().step(actions)
        term["a"] = False
        return obs, rewards, term, trunc, info


class MultiDiscreteActions(EarlyExit):
    def action_space(self, agent):
        return spaces.MultiDiscrete([2, 2])


def not_an_env():
    return {"not": "an env"}
