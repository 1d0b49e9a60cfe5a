"""Per-env run defaults: the learner and the budget a run gets where `--algo` / `--steps`
(LaunchConfig.algo / steps) are not given. The one table for them, read by `validate` (so the CLI
and `drima.run` share it) and by `plan_run`; learner options that follow from the env's kind
(gamma, rollout length) are agent/learners `env_defaults`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
