"""A built-in learner wrapped to time itself (issue 17: is a learner update dearer in an agent
process than in the one-process reference, or is the difference all in the messages?).

`--algo ./benchmarks/ablations/timed_learner.py:a2c` (or `:dqn`, `:ppo`, `:ddpg`) runs the
built-in learner with the env's defaults, and adds up the CPU time of this thread (time.thread_time)
spent in act() and in update(). With the option {"timing_dir": DIR} it writes
DIR/<pid>-<learner id>.json every 100 updates: calls and CPU seconds of each. The same file works in
drima.reference.run_reference (algo="./benchmarks/ablations/timed_learner.py:a2c") and in drima-launch.

Run as a script, it times the learners of real runs at several sizes, one run after another
(repeat a size to see the noise), and prints the mean CPU µs per call over all agents:

    python benchmarks/ablations/timed_learner.py --env collection --algo dqn --ns 8 64 8 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from drima.agent.learners import env_defaults, make_learner
from drima.types import LearnerSpec, StepInfo, Transition


class Timed:
    def __init__(self, algo: str, spec: LearnerSpec, options: dict, seed: int):
        options = dict(options)
        self.timing_dir = Path(options.pop("timing_dir", "."))
        self.inner = make_learner(algo, spec.obs_dim, spec.action, env_defaults(spec.env, algo) | options, seed,
                                  state_dim=spec.state_dim, env_spec=spec.env)
        self.acts_ahead = getattr(self.inner, "acts_ahead", False)
        self.cpu = {"act": [0, 0.0], "update": [0, 0.0]}  # calls, CPU seconds

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t = time.thread_time()
        out = fn(*args, **kwargs)
        entry = self.cpu[name]
        entry[0] += 1
        entry[1] += time.thread_time() - t
        return out

    def act(self, obs: np.ndarray, info: StepInfo | None = None, greedy: bool = False) -> np.ndarray:
        return self._timed("act", self.inner.act, obs, info=info, greedy=greedy)

    def update(self, batch: Transition) -> dict[str, float]:
        out = self._timed("update", self.inner.update, batch)
        if self.cpu["update"][0] % 100 == 0:
            (self.timing_dir / f"{os.getpid()}-{id(self)}.json").write_text(json.dumps(self.cpu))
        return out

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


def a2c(spec: LearnerSpec, options: dict, seed: int) -> Timed:
    return Timed("a2c", spec, options, seed)


def dqn(spec: LearnerSpec, options: dict, seed: int) -> Timed:
    return Timed("dqn", spec, options, seed)


def ppo(spec: LearnerSpec, options: dict, seed: int) -> Timed:
    return Timed("ppo", spec, options, seed)


def ddpg(spec: LearnerSpec, options: dict, seed: int) -> Timed:
    return Timed("ddpg", spec, options, seed)


def time_run(env: str, algo: str, n: int, k: int, steps: int) -> dict[str, float]:
    """One real drima-launch run (ring, dri) with this file's learner; mean CPU µs per act and update."""
    with tempfile.TemporaryDirectory(prefix="drima-timed-") as tmp:
        learner = f"{os.path.abspath(__file__)}:{algo}"
        cmd = [sys.executable, "-m", "drima.launch", "--env", env, "--topology", "ring", "--n", str(n), "--envs",
               str(k), "--steps", str(steps), "--quiet", "--heartbeat-liveness", "20", "--algo", learner,
               "--learner", json.dumps({"timing_dir": tmp}), "--run-dir", os.path.join(tmp, "run")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
        totals = {"act": [0, 0.0], "update": [0, 0.0]}
        files = list(Path(tmp).glob("*.json"))
        for f in files:
            for name, (calls, seconds) in json.loads(f.read_text()).items():
                totals[name][0] += calls
                totals[name][1] += seconds
    return {"n": n, "learners": len(files), "act_us": round(totals["act"][1] / max(1, totals["act"][0]) * 1e6),
            "update_us": round(totals["update"][1] / max(1, totals["update"][0]) * 1e6),
            "env_steps_per_s": summary.get("env_steps_per_s"),
            "substituted_share": summary.get("substituted_action_share")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="collection")
    p.add_argument("--algo", default="dqn", choices=["a2c", "dqn", "ppo", "ddpg"])
    p.add_argument("--ns", nargs="+", type=int, default=[8, 64, 8, 64], help="agents per run, in this order")
    p.add_argument("-K", type=int, default=8, help="env copies")
    p.add_argument("--steps", type=int, default=600)
    a = p.parse_args()
    for n in a.ns:
        print(time_run(a.env, a.algo, n, a.K, a.steps), flush=True)


if __name__ == "__main__":
    main()
