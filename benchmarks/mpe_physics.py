#!/usr/bin/env python
"""MPE env stepping alone: mpe2's physics one world at a time against the batched physics, side by side.

    python benchmarks/mpe_physics.py                                 # collection, ch1, ch2 x K in {8, 32}
    python benchmarks/mpe_physics.py --envs collection --ks 32 --rounds 3

For each (env, K) it builds the same `MPEVectorEnv` twice, physics="looped" (each world's own
`ArenaWorld.step`, i.e. mpe2's `integrate_state`, the old path) and physics="batched" (the
default), and times `env.step` with the same random discrete actions: ROUNDS rounds of STEPS
steps each, the two alternating (which goes first swaps every round) so that load on a shared
machine hits both alike. It prints the median env steps/s (K worlds stepped = K env steps) of
each, their ratio, and the same for the physics alone (`env.worlds.step`, no observations or
rewards). Writes OUT.md and OUT.csv.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import markdown_table, write_csv
from drima.env_server.mpe.vector import MPEVectorEnv

ENVS = {  # name -> (scenario, learners, options)
    "collection": ("collection", 6, {}),
    "ch1": ("hunting", 3, {}),
    "ch2": ("hunting", 4, {"n_prey": 2, "n_attackers": 2}),
}
KINDS = ("looped", "batched")
COLUMNS = ["env", "K", "looped_env_steps_per_s", "batched_env_steps_per_s", "ratio",
           "looped_physics_steps_per_s", "batched_physics_steps_per_s", "physics_ratio"]


def time_env_steps(env: MPEVectorEnv, actions: list[list[np.ndarray]]) -> float:
    """Env steps/s of `env.step` over the given actions (each step is K env steps)."""
    t0 = time.perf_counter()
    for step_actions in actions:
        env.step(step_actions)
    return len(actions) * env.n_envs / (time.perf_counter() - t0)


def time_physics(env: MPEVectorEnv, forces: list[np.ndarray]) -> float:
    """Env steps/s of the physics alone (`worlds.step`), episodes never reset."""
    t0 = time.perf_counter()
    for force in forces:
        env.worlds.step(force)
    return len(forces) * env.n_envs / (time.perf_counter() - t0)


def measure(name: str, k: int, steps: int, rounds: int, seed: int) -> dict:
    scenario, n, options = ENVS[name]
    envs = {kind: MPEVectorEnv(scenario, n, k, seed, options=options, physics=kind) for kind in KINDS}
    rng = np.random.default_rng(seed)
    rates: dict[str, list[float]] = {f"{kind}_{what}": [] for kind in KINDS for what in ("env", "physics")}
    for r in range(rounds):
        actions = [[rng.integers(0, 5, k).astype(np.int32) for _ in range(n)] for _ in range(steps)]
        forces = [rng.uniform(-3.0, 3.0, (k, n, 2)) for _ in range(steps)]
        for kind in KINDS if r % 2 == 0 else KINDS[::-1]:
            rates[f"{kind}_env"].append(time_env_steps(envs[kind], actions))
            rates[f"{kind}_physics"].append(time_physics(envs[kind], forces))
    med = {key: float(np.median(vals)) for key, vals in rates.items()}
    return {"env": name, "K": k,
            "looped_env_steps_per_s": round(med["looped_env"]), "batched_env_steps_per_s": round(med["batched_env"]),
            "ratio": round(med["batched_env"] / med["looped_env"], 2),
            "looped_physics_steps_per_s": round(med["looped_physics"]),
            "batched_physics_steps_per_s": round(med["batched_physics"]),
            "physics_ratio": round(med["batched_physics"] / med["looped_physics"], 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    p.add_argument("--ks", default="8,32", help="comma-separated K values (worlds stepped together)")
    p.add_argument("--steps", type=int, default=300, help="env.step calls per round and kind")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/mpe_physics"))
    a = p.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    if a.steps < 1 or a.rounds < 1 or min(ks) < 1:
        p.error("--steps, --rounds and every K must be >= 1")
    load_before = os.getloadavg()
    t0 = time.time()
    rows = []
    for name in a.envs:
        for k in ks:
            rows.append(measure(name, k, a.steps, a.rounds, a.seed))
            print(" | ".join(f"{c} {rows[-1][c]}" for c in COLUMNS), flush=True)
    load_after = os.getloadavg()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(a.out.with_suffix(".csv"), COLUMNS, rows)
    lines = [f"Command: `python {shlex.join(sys.argv)}` (random discrete actions; median of {a.rounds} alternating "
             f"rounds of {a.steps} steps; machine: {platform.machine()}, {os.cpu_count()} cores; load average "
             f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; total {time.time() - t0:.0f} s)", "",
             "env steps/s = K worlds x env.step calls per second, observations, rewards and resets included; "
             "physics = `env.worlds.step` alone.", "",
             *markdown_table(COLUMNS, rows), ""]
    a.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
