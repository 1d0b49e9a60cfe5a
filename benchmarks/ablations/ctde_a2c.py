"""Ablations of A2C's ctde (issue 18: why does the centralised critic hurt A2C on collection?).

Learners of our own, loaded through the open runtime (`--algo ./benchmarks/ablations/ctde_a2c.py:NAME`),
each the built-in A2C with the same per-env defaults but one part of ctde changed:

- `local_critic`: the critic sees the agent's own observation, not the global state; the signal is
  still ctde's team reward. Separates "V(global state)" from "learning from the team reward".

Run with `--mode ctde` (so that the env server sends the team reward), e.g.
    drima-launch --env collection --topology range:0.8 --mode ctde --steps 10000 --envs 8 --seed 0 \
        --algo ./benchmarks/ablations/ctde_a2c.py:local_critic
"""

from __future__ import annotations

from drima.agent.learners import env_defaults, make_learner
from drima.agent.learners.a2c import A2C
from drima.types import LearnerSpec


def local_critic(spec: LearnerSpec, options: dict, seed: int) -> A2C:
    """A2C with V(own observation), learning from whatever signal the mode gives (ctde: the team reward)."""
    return make_learner("a2c", spec.obs_dim, spec.action, env_defaults(spec.env, "a2c") | options, seed,
                        state_dim=0, env_spec=spec.env)
