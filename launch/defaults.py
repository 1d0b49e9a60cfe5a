"""Per-env run defaults: the learner and the budget a run gets where `--algo` / `--steps`
(LaunchConfig.algo / steps) are not given. The one table for them, read by `validate` (so the CLI
and `drima.run` share it) and by `plan_run`; learner options that follow from the env's kind
(gamma, rollout length) are agent/learners `env_defaults`."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # plan.py imports this module
    from .plan import LaunchConfig


@dataclass(frozen=True)
class RunDefaults:
    algo: str
    """the learner every agent runs"""
    steps: int
    """environment steps (each steps all K copies)"""


GENERIC = RunDefaults(algo="a2c", steps=3000)
"""every env without an entry below"""

RUN_DEFAULTS: dict[str, RunDefaults] = {
    # benchmarks/results/quick_start/results.md, 3 seeds: the README's quick start (ring, n 6) with
    # dqn for 6000 steps goes from 0.19 to 0.69 team reward per step in 93-149 s on a busy 2-core
    # machine; a2c for 3000 steps (the old default) learned nothing, ddpg ends higher but slower.
    "collection": RunDefaults(algo="dqn", steps=6000),
}


def run_defaults(env: str) -> RunDefaults:
    return RUN_DEFAULTS.get(env, GENERIC)


def with_run_defaults(cfg: LaunchConfig) -> LaunchConfig:
    """`cfg` with algo and steps filled in from the env's defaults where they are None."""
    if cfg.algo is not None and cfg.steps is not None:
        return cfg
    d = run_defaults(cfg.env)
    return dataclasses.replace(cfg, algo=d.algo if cfg.algo is None else cfg.algo,
                               steps=d.steps if cfg.steps is None else cfg.steps)


SPLIT_STEP_S = 0.002
"""A block of K copies that takes at least this long to step is split over two processes when
--env-workers is not given: each half then saves at least 1 ms per step, well above the ~0.2 ms a
worker's round trip costs (benchmarks/results/runtime_simple_spread_k8.md: simple_spread N=6,
K=8, 6.5 ms per block, 727 -> 863 env steps/s with a second process)."""


def auto_env_workers(envs: int, copy_step_s: float, cores: int) -> int:
    """--env-workers when not given, for an env that steps its copies one by one in Python
    (PettingZoo): 2 (the env server and one worker) where a block of `envs` copies takes at least
    SPLIT_STEP_S to step and the machine has a second core, else 1."""
    return 2 if envs >= 2 and cores >= 2 and envs * copy_step_s >= SPLIT_STEP_S else 1


def copy_step_seconds(venv, steps: int = 20, seed: int = 0) -> float:
    """Median seconds one step of one copy of `venv` takes, random actions (one copy, reset first)."""
    from drima.env_server.check import random_actions

    rng = np.random.default_rng(seed)
    specs = [venv.agent_spec(i) for i in range(venv.n_agents)]
    venv.reset()
    times = []
    for _ in range(steps):
        actions = [random_actions(s["action"], venv.n_envs, rng) for s in specs]
        t0 = time.perf_counter()
        venv.step(actions)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / venv.n_envs


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))
