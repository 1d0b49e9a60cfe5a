"""Throughput of a VMAS scenario (docs/vmas.md): VMASVectorEnv alone at several K, random discrete
actions, and, with --launch K, one real `drima-launch` run (one env server + the scenario's agents).

    python benchmarks/vmas_throughput.py                      # navigation, K in {8, 32, 128}
    python benchmarks/vmas_throughput.py --scenario balance --ks 32 --launch 32 --steps 500

Env steps/s are given per wall-clock second and per CPU second of this process: on a busy
machine the second one is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drima.env_server.envs import default_agents, make_env


def env_alone(spec: str, k: int, steps: int, options: dict) -> tuple[float, float]:
    """(env steps per wall second, per CPU second) of K copies stepped with random discrete actions."""
    n = default_agents(spec, options)
    env = make_env(spec, n, k, 0, "discrete", options)
    sizes = [env.agent_spec(i)["action"]["n"] for i in range(n)]
    rng = np.random.default_rng(0)
    actions = [[rng.integers(0, size, k).astype(np.int32) for size in sizes] for _ in range(steps)]
    env.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for a in actions:
        env.step(a)
    return steps * k / (time.perf_counter() - wall), steps * k / (time.process_time() - cpu)


def launch(spec: str, k: int, steps: int, options: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="drima-vmas-") as tmp:
        subprocess.run([sys.executable, "-m", "drima.launch", "--env", spec, "--envs", str(k), "--steps", str(steps),
                        "--env-options", json.dumps(options), "--run-dir", tmp, "--quiet"], check=True)
        return json.loads((Path(tmp) / "summary.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="navigation")
    p.add_argument("--ks", default="8,32,128", help="K values for the env alone")
    p.add_argument("--steps", type=int, default=1000, help="steps (of all K copies) per measurement")
    p.add_argument("--launch", type=int, default=0, metavar="K", help="> 0: also one drima-launch run with K copies")
    p.add_argument("--env-options", default="{}")
    a = p.parse_args()
    spec, options = f"vmas:{a.scenario}", json.loads(a.env_options)
    for k in (int(x) for x in a.ks.split(",")):
        wall, cpu = env_alone(spec, k, a.steps, options)
        print(f"{spec} alone, K={k}: {wall:,.0f} env steps/s ({cpu:,.0f} per CPU second)", flush=True)
    if a.launch:
        s = launch(spec, a.launch, a.steps, options)
        print(f"{spec} drima-launch, {s['n_agents']} agents, {s['algo']}-{s['mode']}, K={a.launch}: "
              f"{s['env_steps_per_s']:,.0f} env steps/s (summary.json), {s['status']}")


if __name__ == "__main__":
    main()
