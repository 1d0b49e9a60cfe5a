"""What one agent step costs the learner: update() and act() in microseconds, per built-in learner,
against a baseline measured side by side in one run (the two alternate over the rounds, so a busy
machine slows both alike). Times are this thread's CPU time, not wall time: time spent waiting for
a core on a busy machine is not counted.

Baselines (`--against`):
- `loop-adam`: the same learners with torch's default per-parameter Adam instead of the fused CPU
  kernel that agent/learners/nets.py's `adam` picks (session 14);
- a git revision (`HEAD`, a commit): agent/learners as it was there, imported from `git show` as a
  package of its own beside the working tree's, so that a change to a learner is measured against
  the code before it.

    python benchmarks/learner_update.py                       # a2c, dqn, ddpg, K=8, collection-sized obs
    python benchmarks/learner_update.py --algos a2c --k 32 --rounds 9
    python benchmarks/learner_update.py --against cbfc55d --out benchmarks/results/learner_update_numpy_targets.md

The learners get the options an MPE task gives them (gamma 0.95; a2c: 5-step rollouts), so
update() costs what it costs in `--env collection` runs: the mean over steps, rollout steps
included. Results: benchmarks/results/learner_update.md.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common import markdown_table
from drima.agent import learners
from drima.types import Transition

MPE_OPTIONS = {"a2c": {"gamma": 0.95, "n_steps": 5, "lr_actor": 3e-3}, "dqn": {"gamma": 0.95},
               "ddpg": {"gamma": 0.95}}


def with_loop_adam(learner) -> None:
    """Swap every Adam of `learner` for torch's default implementation, same groups and settings."""
    for name, value in vars(learner).items():
        if isinstance(value, torch.optim.Adam):
            groups = [dict(g, fused=None, foreach=None) for g in value.param_groups]
            setattr(learner, name, torch.optim.Adam(groups))


def learners_at(rev: str):
    """agent/learners as it was at git revision `rev`: its files written to a temporary folder and
    imported as a package of their own (their relative imports stay inside it)."""
    root = Path(__file__).resolve().parent.parent
    names = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", rev, "agent/learners/"],
                           check=True, capture_output=True, text=True).stdout.split()
    package = "learners_at_" + re.sub(r"\W", "_", rev)  # origin/main, v1.2, HEAD~1: one identifier
    folder = Path(tempfile.mkdtemp(prefix="drima-learners-")) / package
    folder.mkdir()
    atexit.register(shutil.rmtree, folder.parent, True)
    for name in (n for n in names if n.endswith(".py")):
        text = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{name}"], check=True, capture_output=True,
                              text=True).stdout
        (folder / Path(name).name).write_text(text)
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(package)


Maker = Callable[[str, int, dict, dict, int], object]  # make_learner(algo, obs_dim, action, options, seed)


def baseline_maker(against: str) -> Maker:
    if against != "loop-adam":
        return learners_at(against).make_learner

    def make(*args):
        learner = learners.make_learner(*args)
        with_loop_adam(learner)
        return learner
    return make


def time_learner(make: Maker, algo: str, k: int, obs_dim: int, steps: int) -> tuple[float, float]:
    """(update us, act us) per agent step, after a warm-up."""
    action = {"type": "continuous", "dim": 2, "low": -1.0, "high": 1.0} if algo == "ddpg" else {"type": "discrete",
                                                                                              "n": 5}
    learner = make(algo, obs_dim, action, MPE_OPTIONS.get(algo, {}), 0)
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


def collection_obs_dim() -> int:
    """An agent's observation size in `--env collection` with 6 agents."""
    from drima.env_server.envs import make_env

    return int(make_env("collection", 6, 1).agent_spec(0)["obs_dim"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="a2c,dqn,ddpg")
    p.add_argument("--k", type=int, default=8, help="env copies per step (rows per update)")
    p.add_argument("--obs-dim", type=int, default=None, help="observation size (default: collection's, 6 agents)")
    p.add_argument("--steps", type=int, default=500, help="agent steps timed per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--against", default="loop-adam",
                   help="the baseline: loop-adam, or a git revision whose agent/learners to time (e.g. HEAD)")
    p.add_argument("--out", default="benchmarks/results/learner_update.md")
    a = p.parse_args()
    torch.set_num_threads(1)  # as in an agent process
    obs_dim = a.obs_dim or collection_obs_dim()
    makers = {"baseline": baseline_maker(a.against), "now": learners.make_learner}
    name = "loop_adam" if a.against == "loop-adam" else a.against
    columns = ["algo", "K", "obs_dim", f"update_us_{name}", "update_us_now", "speedup", f"act_us_{name}",
               "act_us_now"]
    rows = []
    for algo in a.algos.split(","):
        times: dict[str, list[tuple[float, float]]] = {"baseline": [], "now": []}
        for r in range(a.rounds):
            for which in (("baseline", "now") if r % 2 == 0 else ("now", "baseline")):
                times[which].append(time_learner(makers[which], algo, a.k, obs_dim, a.steps))
        med = {w: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for w, v in times.items()}
        rows.append({"algo": algo, "K": a.k, "obs_dim": obs_dim, f"update_us_{name}": round(med["baseline"][0]),
                     "update_us_now": round(med["now"][0]), "speedup": round(med["baseline"][0] / med["now"][0], 2),
                     f"act_us_{name}": round(med["baseline"][1]), "act_us_now": round(med["now"][1])})
        print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    cmd = "python " + " ".join(sys.argv)
    rev = "" if a.against == "loop-adam" else subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short", a.against],
        capture_output=True, text=True).stdout.strip()
    lines = [f"Command: `{cmd}` (medians of {a.rounds} alternating rounds of {a.steps} agent steps; "
             f"{f'{a.against} = {rev}; ' if rev else ''}1-minute load average at the end: {load:.1f})", "",
             *markdown_table(columns, rows)]
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
