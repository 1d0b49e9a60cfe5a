#!/usr/bin/env python
"""Reproduce the paper's MPE results (section 4.2, Fig. 4, appendix B.2) with the real runtime.

Runs the grid  tasks {ch1, ch2, collection} x algos {ddpg, a2c} x modes {ind, dri, dri-naive,
ctde} x seeds 0..S-1  with `python -m drima.launch` (one process per agent, neighbours within
--topology, range:0.8 by default), one run directory each under OUT/runs/<task>-<algo>-<mode>-s<seed>.

  ch1         hunting, 1 prey, 1 attacker, 2 interceptors (3 agents)
  ch2         hunting, 2 prey, 2 attackers, 2 interceptors (4 agents)
  collection  6 agents, 6 foods of 3 types
  spread      mpe2's simple_spread in its standard form (3 agents, 3 landmarks), through the PettingZoo adapter
              (pettingzoo:mpe2.simple_spread_v3), on a ring

The group reward is the episode team return: every agent's reward summed over agents and over
the episode's steps (30 for hunting, 50 for collection). Final values are the mean over the
episodes that ended in the last 10 % of steps. The paper's claims: on CH-I the -Dri predators
hit the prey (positive group reward) while -Ind stay near 0; on collection DDPG-Dri has the best
total reward and type-match count.

Writes, per task, OUT/<task>.csv (one row per run), OUT/<task>.md (one row per algo/mode, mean ±
std over seeds) and OUT/<task>.png (group reward and the task metric vs env steps, mean over
seeds with a min-max band, like Fig. 4). Resumable: a completed run with the same settings is
reused unless --force. Exit code 0 when every run completed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import band, launch, read_curves, report_failures, run_grid, write_csv

TASKS = {  # task -> (drima-launch args, task metrics to report; the first is plotted)
    "ch1": (["--env", "hunting"], ["hits", "interceptor_collisions"]),
    "ch2": (["--env", "hunting", "--prey", "2", "--attackers", "2", "--interceptors", "2"],
            ["hits", "interceptor_collisions"]),
    "collection": (["--env", "collection"], ["type_matches", "foods_occupied"]),
    # mpe2's own simple_spread through the PettingZoo adapter (no positions: a static topology)
    "spread": (["--env", "pettingzoo:mpe2.simple_spread_v3", "--env-options", '{"N": 3}'], []),
}
DEFAULT_TOPOLOGY = {"spread": "ring"}  # the others: range:0.8
ALGOS = ["ddpg", "a2c"]
MODES = ["ind", "dri", "dri-naive", "ctde"]
COLOURS = {"dri": "tab:red", "ind": "tab:blue", "dri-naive": "tab:green", "ctde": "tab:purple"}
FIELDS = ["task", "algo", "mode", "seed", "first_group_reward", "episode_team_return", "hits", "interceptor_collisions",
          "foods_occupied", "type_matches", "conflict_rate", "episodes", "env_steps", "env_steps_per_s", "wall_s",
          "substituted_share"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--algos", nargs="+", choices=ALGOS, default=ALGOS)
    p.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1")
    p.add_argument("--steps", type=int, default=12000, help="environment steps per run (each steps K copies)")
    p.add_argument("--envs", type=int, default=8, help="K: env copies stepped together")
    p.add_argument("--topology", default=None,
                   help="neighbourhoods (ctde ignores them); default range:0.8, and ring for spread")
    p.add_argument("-j", "--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/mpe"))
    p.add_argument("--run-timeout", type=float, default=7200.0, help="seconds before a run is killed")
    p.add_argument("--force", action="store_true", help="rerun even completed runs")
    p.add_argument("--suffix", default="",
                   help="appended to each table's file name (OUT/<task><suffix>.md, .csv, .png): the tables hold "
                        "one invocation's runs, so a second grid into the same OUT (say --algos a2c --suffix=-a2c) "
                        "keeps the first one's tables")
    p.add_argument("--learner", type=json.loads, default={},
                   help="learner options (JSON) for every run, as drima-launch --learner; a completed run is "
                        "reused only if it had the same")
    a = p.parse_args()
    if a.seeds < 1 or a.steps < 1 or a.jobs < 1:
        p.error("--seeds, --steps and --jobs must be >= 1")
    return a


def topology_of(args: argparse.Namespace, task: str) -> str:
    return args.topology or DEFAULT_TOPOLOGY.get(task, "range:0.8")


def run_dir_of(args: argparse.Namespace, key: tuple) -> Path:
    return args.out / "runs" / "{}-{}-{}-s{}".format(*key)


def launch_one(args: argparse.Namespace, key: tuple) -> tuple[dict | None, str]:
    task, algo, mode, seed = key
    topology = topology_of(args, task)
    cmd = [*TASKS[task][0], "--algo", algo, "--mode", mode, "--topology", topology,
           "--steps", str(args.steps), "--envs", str(args.envs), "--seed", str(seed), "--log-every", "30"]
    if args.learner:
        cmd += ["--learner", json.dumps(args.learner)]

    def same(s: dict) -> bool:
        return (s.get("steps") == args.steps and s.get("n_envs") == args.envs
                and s.get("topology") == topology and s.get("config", {}).get("learner", {}) == args.learner)

    run_dir = run_dir_of(args, key)
    return launch(cmd, run_dir, args.out / "logs" / f"{run_dir.name}.log", args.run_timeout, same, args.force)


def first_group_reward(run_dir: Path, steps: int) -> float | None:
    """The group reward over the first 10 % of the run: where learning started from."""
    from drima.metrics import read_rows

    vals = [float(r["episode_team_return"]) for r in read_rows(run_dir / "env_server" / "metrics.csv")
            if r.get("episode_team_return") and int(r["step"]) <= 0.1 * steps]
    return float(np.mean(vals)) if vals else None


def to_row(key: tuple, s: dict, run_dir: Path, steps: int) -> dict:
    task, algo, mode, seed = key
    fin = s.get("final", {})
    return {"task": task, "algo": algo, "mode": mode, "seed": seed,
            "first_group_reward": first_group_reward(run_dir, steps),
            **{k: fin.get(k) for k in FIELDS[5:10]}, "conflict_rate": fin.get("mean_conflict_rate"),
            "episodes": fin.get("episodes"), "env_steps": s.get("env_steps"),
            "env_steps_per_s": s.get("env_steps_per_s"), "wall_s": s.get("wall_s"),
            "substituted_share": s.get("substituted_action_share")}


def _stat(rows: list[dict], key: str) -> str:
    vals = np.array([r[key] for r in rows if r.get(key) is not None], float)
    return f"{vals.mean():.2f} ± {vals.std():.2f}" if vals.size else "-"


def write_tables(task: str, rows: list[dict], args: argparse.Namespace, elapsed: float) -> None:
    """OUT/<task>.csv and OUT/<task>.md, so that runs of other tasks (other invocations) stay."""
    write_csv(args.out / f"{task}{args.suffix}.csv", FIELDS, rows)
    metrics = TASKS[task][1]
    lines = [f"# MPE {task}: group reward and task metrics after training", "",
             f"{args.steps} steps x {args.envs} copies = {args.steps * args.envs:,} env steps per run; topology "
             f"`{topology_of(args, task)}`; mean ± std over seeds of the episodes ending in the last 10 % of steps.",
             "",
             "| algo | mode | seeds | group reward, first 10 % | group reward | "
             + "".join(f"{m} | " for m in metrics) + "conflict rate | wall s / run |",
             "|---|---|---|---|---|" + "---|" * len(metrics) + "---|---|"]
    for algo in args.algos:
        for mode in args.modes:
            rs = [r for r in rows if (r["algo"], r["mode"]) == (algo, mode)]
            if rs:
                lines.append(f"| {algo} | {mode} | {len(rs)} | {_stat(rs, 'first_group_reward')} | "
                             f"{_stat(rs, 'episode_team_return')} | " + "".join(f"{_stat(rs, m)} | " for m in metrics)
                             + f"{_stat(rs, 'conflict_rate')} | {np.mean([r['wall_s'] for r in rs]):.0f} |")
    run_wall = sum(float(r["wall_s"] or 0.0) for r in rows)
    lines += ["", f"Command: `python {shlex.join(sys.argv)}`  ",
              f"Total wall time: {elapsed:.0f} s for this invocation "
              f"({run_wall:.0f} s summed over the {len(rows)} runs' own wall times).", ""]
    (args.out / f"{task}{args.suffix}.md").write_text("\n".join(lines))


def plot_task(task: str, args: argparse.Namespace, done: set[tuple]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["episode_team_return", *TASKS[task][1][:1]]
    fig, axes = plt.subplots(len(columns), len(args.algos), figsize=(4.6 * len(args.algos), 3.2 * len(columns)),
                             squeeze=False)
    for col, algo in enumerate(args.algos):
        for row, column in enumerate(columns):
            ax = axes[row][col]
            for mode in args.modes:
                curves = read_curves([run_dir_of(args, (task, algo, mode, seed)) for seed in range(args.seeds)
                                      if (task, algo, mode, seed) in done], column)
                b = band(curves, smooth=5)
                if b is None:
                    continue
                x, ys = b
                ax.plot(x, ys.mean(0), color=COLOURS[mode], label=f"{algo.upper()}-{mode}")
                ax.fill_between(x, ys.min(0), ys.max(0), color=COLOURS[mode], alpha=0.15, lw=0)
            ax.set_title(f"{task}: {algo.upper()}")
            ax.set_xlabel("env steps")
            ax.set_ylabel("group reward per episode" if row == 0 else f"{column} per episode")
            ax.grid(alpha=0.3)
            if ax.lines and row == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / f"{task}{args.suffix}.png", dpi=110)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    grid = [(t, a, m, s) for t in args.tasks for a in args.algos for m in args.modes for s in range(args.seeds)]
    t0 = time.time()
    print(f"{len(grid)} runs, {args.steps} steps each, {args.jobs} in parallel -> {args.out}")

    def describe(key: tuple, s: dict, note: str) -> str:
        fin = s.get("final", {})
        return (f"group reward {fin.get('episode_team_return') or float('nan'):.2f}, "
                + ", ".join(f"{m} {fin.get(m) or 0:.2f}" for m in TASKS[key[0]][1])
                + f", {float(s.get('wall_s') or 0):.0f}s")

    summaries, failed = run_grid(grid, lambda key: launch_one(args, key), args.jobs, describe)
    rows = [to_row(k, summaries[k], run_dir_of(args, k), args.steps) for k in grid if k in summaries]
    for task in args.tasks:
        write_tables(task, [r for r in rows if r["task"] == task], args, time.time() - t0)
        plot_task(task, args, set(summaries))
    print("wrote " + ", ".join(f"{t}{args.suffix}.md, {t}{args.suffix}.csv, {t}{args.suffix}.png" for t in args.tasks)
          + f" in {args.out} ({time.time() - t0:.0f}s)")
    return report_failures(failed, len(grid))


if __name__ == "__main__":
    sys.exit(main())
