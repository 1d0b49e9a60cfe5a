"""What one agent step costs the learner: update() and act() in microseconds, per built-in learner,
with Adam's fused CPU kernel (the default, agent/learners/nets.py `adam`) against torch's default
per-parameter loop, measured side by side in one run (the two alternate over the rounds, so a
busy machine slows both alike). Times are this thread's CPU time, not wall time: time spent
waiting for a core on a busy machine is not counted.

    python benchmarks/learner_update.py                       # a2c, dqn, ddpg, K=8, MPE-sized obs
    python benchmarks/learner_update.py --algos a2c --k 32 --rounds 9

The learners get the options an MPE task gives them (gamma 0.95; a2c: 5-step rollouts), so
update() costs what it costs in `--env collection` runs: the mean over steps, rollout steps
included. Results: benchmarks/results/learner_update.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import markdown_table
from drima.agent.learners import make_learner
from drima.types import Transition

MPE_OPTIONS = {"a2c": {"gamma": 0.95, "n_steps": 5, "lr_actor": 3e-3}, "dqn": {"gamma": 0.95},
               "ddpg": {"gamma": 0.95}}
COLUMNS = ["algo", "K", "update_us_loop_adam", "update_us_fused_adam", "speedup", "act_us"]


def with_loop_adam(learner) -> None:
    """Swap every Adam of `learner` for torch's default implementation, same groups and settings."""
    for name, value in vars(learner).items():
        if isinstance(value, torch.optim.Adam):
            groups = [dict(g, fused=None, foreach=None) for g in value.param_groups]
            setattr(learner, name, torch.optim.Adam(groups))


def time_learner(algo: str, k: int, obs_dim: int, loop_adam: bool, steps: int) -> tuple[float, float]:
    """(update us, act us) per agent step, after a warm-up."""
    action = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0} if algo == "ddpg" else {"type": "discrete",
                                                                                              "n": 5}
    learner = make_learner(algo, obs_dim, action, MPE_OPTIONS.get(algo, {}), 0)
    if loop_adam:
        with_loop_adam(learner)
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((k, obs_dim)).astype(np.float32)
    actions = learner.act(obs)
    batch = Transition(obs=obs, actions=actions, signal=np.ones(k, np.float32), next_obs=obs,
                       terminated=np.zeros(k, bool), truncated=np.zeros(k, bool), active=np.ones(k, bool))
    for _ in range(max(50, steps // 5)):  # warm-up; DQN and DDPG also fill their replay buffers
        learner.update(batch)
    t0 = time.thread_time()
    for _ in range(steps):
        learner.update(batch)
    update_us = (time.thread_time() - t0) / steps * 1e6
    t0 = time.thread_time()
    for _ in range(steps):
        learner.act(obs)
    return update_us, (time.thread_time() - t0) / steps * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="a2c,dqn,ddpg")
    p.add_argument("--k", type=int, default=8, help="env copies per step (rows per update)")
    p.add_argument("--obs-dim", type=int, default=26, help="observation size (collection with 6 agents: 26)")
    p.add_argument("--steps", type=int, default=500, help="agent steps timed per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/learner_update.md")
    a = p.parse_args()
    torch.set_num_threads(1)  # as in an agent process
    rows = []
    for algo in a.algos.split(","):
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for r in range(a.rounds):
            for loop_adam in ((True, False) if r % 2 == 0 else (False, True)):
                times[loop_adam].append(time_learner(algo, a.k, a.obs_dim, loop_adam, a.steps))
        loop = statistics.median(t[0] for t in times[True])
        fused = statistics.median(t[0] for t in times[False])
        rows.append({"algo": algo, "K": a.k, "update_us_loop_adam": round(loop), "update_us_fused_adam": round(fused),
                     "speedup": round(loop / fused, 2), "act_us": round(statistics.median(t[1] for t in times[False]))})
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    cmd = "python " + " ".join(sys.argv)
    lines = [f"Command: `{cmd}` (medians of {a.rounds} alternating rounds of {a.steps} agent steps; "
             f"1-minute load average at the end: {load:.1f})", "", *markdown_table(COLUMNS, rows)]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
