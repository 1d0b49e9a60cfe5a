"""Which learner and budget make the README's quick start show learning in two or three minutes:
`drima-launch --topology ring --n 6 --env collection` with each candidate --algo / --steps, seeds
one after the other (one run at a time, so that every row sees the machine alone or the same load).

    python benchmarks/quick_start.py --seeds 0,1,2
    python benchmarks/quick_start.py --candidates a2c:3000,dqn:6000 --seeds 0

For each run: wall time, and the team reward per step (the env server's, summed over agents)
over the first and the last 10 % of steps, and the group reward per episode likewise. Writes
benchmarks/results/quick_start.md and .csv; completed runs are reused (runs/ under --out).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np

from common import launch, markdown_table, read_curve, report_failures, run_grid, write_csv

CANDIDATES = "a2c:3000,a2c:9000,dqn:6000,ddpg:6000"
FIELDS = ["env", "algo", "steps", "seed", "wall_s", "load_before", "team_first", "team_last",
          "group_first", "group_last"]


def window_means(run_dir: Path, column: str) -> tuple[float, float]:
    """Mean of the env server's `column` over the rows of the first and of the last 10 % of steps."""
    x, y = read_curve(run_dir, column)  # x: env steps at each row, up to steps x K
    total = x.max() if len(x) else 0.0
    first, last = y[x <= 0.1 * total], y[x > 0.9 * total]
    return (float(first.mean()) if len(first) else float("nan"), float(last.mean()) if len(last) else float("nan"))


def run_one(env: str, algo: str, steps: int, seed: int, out: Path, extra: list[str]) -> tuple[dict | None, str]:
    run_dir = out / "runs" / f"{env}-{algo}-{steps}-s{seed}"
    load_file = run_dir.parent / f"{run_dir.name}.load"  # beside the run: a fresh run clears its folder
    if not (run_dir / "summary.json").exists():
        load_file.parent.mkdir(parents=True, exist_ok=True)
        load_file.write_text(f"{os.getloadavg()[0]:.2f}")
    args = ["--topology", "ring", "--n", "6", "--env", env, "--algo", algo, "--steps", str(steps),
            "--seed", str(seed), *extra]
    s, note = launch(args, run_dir, out / "logs" / f"{run_dir.name}.log", 1800,
                     reuse=lambda s: s.get("steps") == steps and s.get("algo") == algo)
    if s is None:
        return None, note
    team = window_means(run_dir, "team_reward")
    group = window_means(run_dir, "episode_team_return")
    row = {"env": env, "algo": algo, "steps": steps, "seed": seed, "wall_s": round(s["wall_s"], 1),
           "load_before": load_file.read_text() if load_file.exists() else "",
           "team_first": round(team[0], 3), "team_last": round(team[1], 3),
           "group_first": round(group[0], 2), "group_last": round(group[1], 2)}
    return s | {"row": row}, note


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["algo"], r["steps"]) for r in rows):
        cell = [r for r in rows if (r["algo"], r["steps"]) == key]

        def ms(field: str, cell=cell) -> str:
            v = np.array([r[field] for r in cell], float)
            return f"{v.mean():.2f} ± {v.std():.2f}"
        out.append({"algo": key[0], "steps": key[1], "seeds": len(cell), "wall s": ms("wall_s"),
                    "team reward/step, first 10 %": ms("team_first"), "last 10 %": ms("team_last"),
                    "gain per step": ms("gain"), "group reward/episode, first 10 %": ms("group_first"),
                    "last 10 % ": ms("group_last")})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="collection")
    p.add_argument("--candidates", default=CANDIDATES, help="ALGO:STEPS,...")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/quick_start")
    p.add_argument("--extra", default="", help="more drima-launch flags for every run, one string")
    a = p.parse_args()
    out = Path(a.out)
    cands = [(c.split(":")[0], int(c.split(":")[1])) for c in a.candidates.split(",")]
    keys = [(algo, steps, int(seed)) for seed in a.seeds.split(",") for algo, steps in cands]
    done, failed = run_grid(keys, lambda k: run_one(a.env, k[0], k[1], k[2], out, a.extra.split()), 1,
                            lambda k, s, note: str(s["row"]))
    rows = [done[k]["row"] | {"gain": done[k]["row"]["team_last"] - done[k]["row"]["team_first"]}
            for k in keys if k in done]
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "runs.csv", FIELDS, [{f: r[f] for f in FIELDS} for r in rows])
    lines = [f"# Quick start: `drima-launch --topology ring --n 6 --env {a.env}` per learner and budget", "",
             f"`python benchmarks/quick_start.py --candidates {a.candidates} --seeds {a.seeds}`, one run at a "
             f"time on {platform.node()} ({os.cpu_count()} cores); load_before (1-minute load average when "
             "each run started) is in runs.csv. Team reward: per step, summed over the 6 agents (the env "
             "server's); group reward: per episode (50 steps). Mean ± std over seeds.", "",
             *markdown_table(list(summarise(rows)[0].keys()) if rows else ["none"], summarise(rows)), ""]
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return report_failures(failed, len(keys))


if __name__ == "__main__":
    raise SystemExit(main())
