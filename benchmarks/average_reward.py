"""The average-reward (continuing) form against the discounted default, per learner, on pd and
collection: the same run twice, once with the learner's defaults (episodic, gamma 0 in matrix
games and 0.95 in MPE) and once with `{"continuing": true, "gamma": 1}` (the paper's Algorithm 1:
delta = r~ - mubar + V(s') - V(s) through every episode end; agent/learners/continuing.py).

    python benchmarks/average_reward.py --seeds 0,1,2
    python benchmarks/average_reward.py --envs pd --algos a2c --seeds 0

pd: 2 agents, full graph, dri, 3000 steps; the figure is the frequency of (C,C) over the last
10 % of steps. collection: the quick start (ring, 6 agents, dri), 6000 steps; the figure is the
group reward per episode over the last 10 %. Runs one at a time; completed runs are reused.
Writes benchmarks/results/average_reward/<envs>.md and .csv (e.g. pd.md, or pd_collection.md).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from common import launch, markdown_table, report_failures, run_grid, write_csv

FORMS = {"discounted": {}, "continuing": {"continuing": True, "gamma": 1.0}}
SETUPS = {"pd": ["--env", "pd", "--n", "2", "--topology", "full", "--steps", "3000"],
          "collection": ["--env", "collection", "--n", "6", "--topology", "ring", "--steps", "6000"]}
FIELDS = ["env", "algo", "form", "seed", "figure", "team_reward", "reached_at", "wall_s"]
PD_NEAR_CC = 19.0
"""pd: a metrics row (a 50-step mean) whose team reward is at least this is at (C,C) (20) nearly always"""


def figure(env: str, summary: dict) -> float:
    """pd: (C,C) frequency over the final window; collection: group reward per episode there."""
    final = summary["final"]
    return final.get("joint_action_freq", {}).get("C,C", 0.0) if env == "pd" else final["episode_team_return"]


def reached_at(env: str, run_dir: Path) -> int | str:
    """pd: the first step whose metrics row has a team reward >= PD_NEAR_CC (how fast (C,C) was
    found); elsewhere ''."""
    if env != "pd":
        return ""
    with open(run_dir / "env_server" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return next((int(r["step"]) for r in rows if float(r["team_reward"]) >= PD_NEAR_CC), -1)


def run_one(key: tuple, out: Path) -> tuple[dict | None, str]:
    env, algo, form, seed = key
    run_dir = out / "runs" / f"{env}-{algo}-{form}-s{seed}"
    learner = FORMS[form]
    args = [*SETUPS[env], "--algo", algo, "--mode", "dri", "--seed", str(seed), "--learner", json.dumps(learner)]
    s, note = launch(args, run_dir, out / "logs" / f"{run_dir.name}.log", 1800,
                     reuse=lambda s: s["config"]["learner"] == learner and s["algo"] == algo)
    if s is None:
        return None, note
    row = {"env": env, "algo": algo, "form": form, "seed": seed, "figure": round(figure(env, s), 3),
           "team_reward": round(s["final"]["mean_team_reward"], 3), "reached_at": reached_at(env, run_dir),
           "wall_s": round(s["wall_s"], 1)}
    return s | {"row": row}, note


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="pd,collection")
    p.add_argument("--algos", default="a2c,dqn,ddpg")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", default="benchmarks/results/average_reward")
    a = p.parse_args()
    out = Path(a.out)
    keys = [(env, algo, form, int(seed)) for env in a.envs.split(",") for seed in a.seeds.split(",")
            for algo in a.algos.split(",") for form in FORMS]
    done, failed = run_grid(keys, lambda k: run_one(k, out), 1, lambda k, s, note: str(s["row"]))
    rows = [done[k]["row"] for k in keys if k in done]
    out.mkdir(parents=True, exist_ok=True)
    name = a.envs.replace(",", "_")  # one table per env set: pd and collection may run different seeds
    write_csv(out / f"{name}.csv", FIELDS, rows)
    table = []
    for env, algo, form in dict.fromkeys((r["env"], r["algo"], r["form"]) for r in rows):
        cell = [r for r in rows if (r["env"], r["algo"], r["form"]) == (env, algo, form)]
        fig = np.array([r["figure"] for r in cell])
        table.append({"env": env, "algo": algo, "form": form, "seeds": len(cell),
                      "final figure": f"{fig.mean():.2f} ± {fig.std():.2f}",
                      "per seed": ", ".join(f"{x:g}" for x in fig),
                      "team reward/step": f"{np.mean([r['team_reward'] for r in cell]):.3f}",
                      "pd: step with team reward >= 19, per seed": ", ".join(str(r["reached_at"]) for r in cell)})
    lines = ["# Average-reward (continuing, gamma 1) against the discounted default, dri", "",
             f"`python benchmarks/average_reward.py --envs {a.envs} --algos {a.algos} --seeds {a.seeds}`, one run "
             "at a time. Final figure, over the last 10 % of steps: pd, the frequency of (C,C); collection, the "
             "group reward per episode. Mean ± std over seeds.", "",
             *markdown_table(list(table[0].keys()) if table else ["none"], table), ""]
    (out / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return report_failures(failed, len(keys))


if __name__ == "__main__":
    raise SystemExit(main())
