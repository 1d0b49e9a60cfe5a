"""--act-ahead against the default order, side by side: throughput and what one-update-late
actions do to learning. For each env and seed it runs the same configuration twice, one after the
other (sequential, then acting ahead), so both rows see the same machine load.

    python benchmarks/act_ahead.py --seeds 0,1                      # pd and collection, 2 seeds
    python benchmarks/act_ahead.py --envs pd --seeds 0 --steps 1000

Writes benchmarks/results/act_ahead.md (one row per env: mean env steps/s and final team reward,
with the per-seed values) and prints it.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_STEPS = {"pd": 2000, "collection": 3000}


def one_run(env: str, algo: str, seed: int, steps: int, ahead: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="drima-ahead-") as tmp:
        cmd = [sys.executable, "-m", "drima.launch", "--env", env, "--algo", algo, "--topology", "ring", "--n", "6",
               "--envs", "8", "--steps", str(steps), "--seed", str(seed), "--run-dir", tmp, "--quiet",
               *(["--act-ahead"] if ahead else [])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        s = json.loads((Path(tmp) / "summary.json").read_text())
    return {"rate": s["env_steps_per_s"], "reward": s["final"]["mean_team_reward"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="pd,collection")
    p.add_argument("--algo", default="a2c")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=0, help="0: per-env default (pd 2000, collection 3000)")
    p.add_argument("--out", default="benchmarks/results/act_ahead.md")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    lines = ["| env | steps | order | env steps/s (mean) | final team reward (mean) | per seed: steps/s "
             "| per seed: reward |", "|---|---|---|---|---|---|---|"]
    for env in a.envs.split(","):
        steps = a.steps or DEFAULT_STEPS.get(env, 3000)
        rows = {False: [], True: []}
        for seed in seeds:
            for ahead in (False, True):
                rows[ahead].append(one_run(env, a.algo, seed, steps, ahead))
                print(env, seed, "ahead" if ahead else "sequential", rows[ahead][-1], flush=True)
        for ahead in (False, True):
            rates = [r["rate"] for r in rows[ahead]]
            rewards = [r["reward"] for r in rows[ahead]]
            lines.append(f"| {env} | {steps} | {'act ahead' if ahead else 'sequential'} | {np.mean(rates):.0f} | "
                         f"{np.mean(rewards):.3f} | {', '.join(f'{x:.0f}' for x in rates)} | "
                         f"{', '.join(f'{x:.3f}' for x in rewards)} |")
    text = "\n".join([f"# --act-ahead vs sequential ({a.algo}, ring of 6, K=8, seeds {a.seeds})", "",
                      f"Command: `python {' '.join(shlex.quote(x) for x in sys.argv)}`", "",
                      f"Machine: {platform.node()}, {platform.processor() or platform.machine()}; "
                      "final team reward = the env server's mean over the last 10 % of steps.", "", *lines, ""])
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
