"""Acting ahead (drima-launch's default) against --no-act-ahead, side by side: throughput and what
one-update-late actions do to learning. For each env and seed it runs the same configuration
twice, one right after the other (which goes first alternates by seed), so both see about the
same machine load.

    python benchmarks/act_ahead.py --seeds 0,1,2       # pd and collection, each with its run defaults
    python benchmarks/act_ahead.py --envs pd --algo a2c --seeds 0 --steps 1000

Without --algo / --steps each env gets the learner and budget a plain `drima-launch --env ENV`
gets (launch/defaults.py: pd a2c for 3,000 steps, collection dqn for 6,000), so the comparison is
made where the quick start shows learning.

Writes benchmarks/results/act_ahead.md (one row per env: mean env steps/s and final team reward,
with the per-seed values) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from drima.launch.defaults import run_defaults


def one_run(env: str, algo: str, seed: int, steps: int, ahead: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="drima-ahead-") as tmp:
        cmd = [sys.executable, "-m", "drima.launch", "--env", env, "--algo", algo, "--topology", "ring", "--n", "6",
               "--envs", "8", "--steps", str(steps), "--seed", str(seed), "--run-dir", tmp, "--quiet",
               "--act-ahead" if ahead else "--no-act-ahead"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        s = json.loads((Path(tmp) / "summary.json").read_text())
    return {"rate": s["env_steps_per_s"], "reward": s["final"]["mean_team_reward"],
            "first": s["first"]["mean_team_reward"], "load": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="pd,collection")
    p.add_argument("--algo", default="", help="empty: each env's default learner (launch/defaults.py)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=0, help="0: each env's default budget (launch/defaults.py)")
    p.add_argument("--out", default="benchmarks/results/act_ahead.md")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    lines = ["| env | algo | steps | order | env steps/s (mean) | first team reward (mean) | final team reward (mean) "
             "| per seed: steps/s | per seed: final reward | load average |", "|---" * 10 + "|"]
    for env in a.envs.split(","):
        algo, steps = a.algo or run_defaults(env).algo, a.steps or run_defaults(env).steps
        rows = {False: [], True: []}
        for seed in seeds:
            for ahead in ((False, True) if seed % 2 == 0 else (True, False)):  # who goes first alternates
                rows[ahead].append(one_run(env, algo, seed, steps, ahead))
                print(env, seed, "ahead" if ahead else "sequential", rows[ahead][-1], flush=True)
        for ahead in (False, True):
            rates = [r["rate"] for r in rows[ahead]]
            rewards = [r["reward"] for r in rows[ahead]]
            loads = [r["load"] for r in rows[ahead]]
            order = "act ahead" if ahead else "sequential"
            lines.append(f"| {env} | {algo} | {steps} | {order} | {np.mean(rates):.0f} | "
                         f"{np.mean([r['first'] for r in rows[ahead]]):.3f} | {np.mean(rewards):.3f} | "
                         f"{', '.join(f'{x:.0f}' for x in rates)} | {', '.join(f'{x:.3f}' for x in rewards)} | "
                         f"{min(loads):.1f}-{max(loads):.1f} |")
    text = "\n".join([f"# --act-ahead vs sequential (ring of 6, K=8, seeds {a.seeds})", "",
                      f"Command: `python {' '.join(shlex.quote(x) for x in sys.argv)}`", "",
                      f"Machine: {platform.node()}, {platform.processor() or platform.machine()}; "
                      "final team reward = the env server's mean over the last 10 % of steps.", "", *lines, ""])
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
