"""Learners written for tests, loaded the way a user's are (`--algo PATH:CLASS`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from drima.types import LearnerSpec, StepInfo, Transition


class SlowEveryNth:
    """Uniform random actions; agent `slow_agent` sleeps `sleep_s` in every `every`-th update (a
    learner whose update sometimes takes longer than the env server waits for an action). Every
    update appends one line to `log_dir/agent_<id>.txt`: the number of copies it was given to learn
    from (batch.active)."""

    def __init__(self, spec: LearnerSpec, options: dict, seed: int):
        self.n = spec.action["n"]
        self.rng = np.random.default_rng(seed)
        self.agent = spec.env["agent_id"]
        self.slow = self.agent == options["slow_agent"]
        self.every, self.sleep_s = options["every"], options["sleep_s"]
        self.log = Path(options["log_dir"]) / f"agent_{self.agent}.txt"
        self.updates = 0

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        return self.rng.integers(0, self.n, len(obs)).astype(np.int32)

    def update(self, batch: Transition) -> dict[str, float]:
        self.updates += 1
        with open(self.log, "a") as f:
            f.write(f"{int(batch.active.sum())}\n")
        if self.slow and self.updates % self.every == 0:
            time.sleep(self.sleep_s)
        return {}

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]


class CallOrder:
    """Uniform random actions; writes `a` for every act() and `u` for every update() to
    `log_dir/agent_<id>.txt`, to show the order the agent process calls them in. It declares the
    ActsAhead capability with the value of the option "acts_ahead"."""

    def __init__(self, spec: LearnerSpec, options: dict, seed: int):
        self.n = spec.action["n"]
        self.rng = np.random.default_rng(seed)
        self.log = Path(options["log_dir"]) / f"agent_{spec.env['agent_id']}.txt"
        self.acts_ahead = bool(options["acts_ahead"])

    def _write(self, what: str) -> None:
        with open(self.log, "a") as f:
            f.write(what)

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        self._write("a")
        return self.rng.integers(0, self.n, len(obs)).astype(np.int32)

    def update(self, batch: Transition) -> dict[str, float]:
        self._write("u")
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Recorder:
    """Uniform random actions (discrete, or continuous in [-1, 1]); acts ahead. Every update saves
    what the learner was given to `log_dir/agent_<id>_<n>.npz` (n: the update's number): obs,
    actions, signal, next_obs, terminated, truncated, active, and where they came, the global state
    at obs and at next_obs and the joint actions in next_info. To check, across agents and steps,
    that a ctde transition's pieces belong to the same step."""

    acts_ahead = True

    def __init__(self, spec: LearnerSpec, options: dict, seed: int):
        self.continuous = spec.action["type"] == "continuous"
        self.size = spec.action["dim"] if self.continuous else spec.action["n"]
        self.rng = np.random.default_rng(seed)
        self.prefix = Path(options["log_dir"]) / f"agent_{spec.env['agent_id']}"
        self.updates = 0

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        if self.continuous:
            return self.rng.uniform(-1, 1, (len(obs), self.size)).astype(np.float32)
        return self.rng.integers(0, self.size, len(obs)).astype(np.int32)

    def update(self, batch: Transition) -> dict[str, float]:
        arrays = {name: getattr(batch, name) for name in
                  ("obs", "actions", "signal", "next_obs", "terminated", "truncated", "active")}
        for name, info in (("info", batch.info), ("next_info", batch.next_info)):
            for part in ("state", "joint_actions"):
                value = None if info is None else getattr(info, part)
                if value is not None:
                    arrays[f"{name}_{part}"] = value
        np.savez(f"{self.prefix}_{self.updates}.npz", **arrays)
        self.updates += 1
        return {}

    def state_dict(self) -> dict:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
