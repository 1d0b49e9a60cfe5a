#!/usr/bin/env python
"""Reproduce the paper's matrix-game results (section 4.1, Fig. 3 and the outcome table).

Runs the grid  games {pd, maintain, meeting3} x algos {a2c, dqn, ddpg} x modes {dri, ind,
dri-naive} x seeds 0..S-1  with `python -m drima.launch` (fully connected graph; 2 agents for pd
and maintain, 3 for meeting3), one run directory each under OUT/runs/<game>-<algo>-<mode>-s<seed>.
A run "reaches" its game's global optimum when that joint action's frequency over the last 10 %
of steps is >= 0.9 (targets: pd "C,C", maintain "A,X", meeting3 "F,F,F"); the paper reports that
-Dri learners reach it while -Ind learners settle on a Nash equilibrium.

Writes OUT/results.csv (one row per run), OUT/results.md (one row per game/algo/mode) and
OUT/<game>.png (team reward vs env steps, mean over seeds with a min-max band, like Fig. 3).
Resumable: a run whose summary.json says "completed" is reused unless --force.
Exit code 0 when every run completed (whether or not it reached the target), 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import band, launch, read_curves, report_failures, run_grid, write_csv

GAMES = {"pd": 2, "maintain": 2, "meeting3": 3}           # game -> number of agents
TARGETS = {"pd": "C,C", "maintain": "A,X", "meeting3": "F,F,F"}
ALGOS = ["a2c", "dqn", "ddpg"]
MODES = ["dri", "ind", "dri-naive"]
COLOURS = {"dri": "tab:red", "ind": "tab:blue", "dri-naive": "tab:green"}
REACHED = 0.9
FIELDS = ["game", "algo", "mode", "seed", "target_freq", "reached", "outcome", "outcome_freq",
          "mean_team_reward", "conflict_rate", "env_steps_per_s", "wall_s"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--games", nargs="+", choices=list(GAMES), default=list(GAMES))
    p.add_argument("--algos", nargs="+", choices=ALGOS, default=ALGOS)
    p.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..S-1")
    p.add_argument("--steps", type=int, default=3000, help="environment steps per run")
    p.add_argument("--envs", type=int, default=8, help="env copies stepped together")
    p.add_argument("-j", "--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/matrix_games"))
    p.add_argument("--learner", help="learner overrides as JSON, passed to drima.launch")
    p.add_argument("--mu-step-size", type=float, help="passed to drima.launch")
    p.add_argument("--run-timeout", type=float, default=3600.0, help="seconds before a run is killed")
    p.add_argument("--force", action="store_true", help="rerun even completed runs")
    a = p.parse_args()
    if a.seeds < 1 or a.steps < 1 or a.jobs < 1:
        p.error("--seeds, --steps and --jobs must be >= 1")
    try:
        if not isinstance(json.loads(a.learner or "{}"), dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        p.error(f"--learner must be a JSON object: {e}")
    return a


def same_config(s: dict, args: argparse.Namespace) -> bool:
    """Is a finished run's configuration the one asked for now (so it may be reused)?"""
    cfg = s.get("config", {})
    return (s.get("steps") == args.steps and s.get("n_envs") == args.envs
            and cfg.get("learner", {}) == json.loads(args.learner or "{}")
            and (args.mu_step_size is None or cfg.get("mu_step_size") == args.mu_step_size))


def launch_one(args: argparse.Namespace, key: tuple) -> tuple[dict | None, str]:
    """Run one configuration (unless already completed); return (summary or None, note)."""
    game, algo, mode, seed = key
    run_dir = args.out / "runs" / f"{game}-{algo}-{mode}-s{seed}"
    cmd = ["--env", game, "--algo", algo, "--mode", mode, "--topology", "full", "--n", str(GAMES[game]),
           "--steps", str(args.steps), "--envs", str(args.envs), "--seed", str(seed)]
    if args.learner:
        cmd += ["--learner", args.learner]
    if args.mu_step_size is not None:
        cmd += ["--mu-step-size", str(args.mu_step_size)]
    return launch(cmd, run_dir, args.out / "logs" / f"{run_dir.name}.log", args.run_timeout,
                  lambda s: same_config(s, args), args.force)


def to_row(game: str, algo: str, mode: str, seed: int, s: dict) -> dict:
    final = s.get("final", {})
    freq = final.get("joint_action_freq") or {}
    outcome = max(freq, key=freq.get) if freq else ""
    target_freq = float(freq.get(TARGETS[game], 0.0))
    return {"game": game, "algo": algo, "mode": mode, "seed": seed,
            "target_freq": round(target_freq, 4), "reached": int(target_freq >= REACHED),
            "outcome": outcome, "outcome_freq": round(float(freq.get(outcome, 0.0)), 4),
            "mean_team_reward": final.get("mean_team_reward"),
            "conflict_rate": final.get("mean_conflict_rate"),
            "env_steps_per_s": s.get("env_steps_per_s"), "wall_s": s.get("wall_s")}


def write_tables(rows: list[dict], args: argparse.Namespace, elapsed: float) -> None:
    write_csv(args.out / "results.csv", FIELDS, rows)
    lines = ["# Matrix games: outcome after training (last 10 % of steps)", "",
             "Targets (global optimum): " + ", ".join(f"{g} {TARGETS[g]}" for g in args.games)
             + f"; reached = target frequency >= {REACHED}. Team reward = sum over agents.", "",
             "| game | algo | mode | reached target | target freq (mean ± std) | outcomes "
             "| final team reward |", "|---|---|---|---|---|---|---|"]
    for game in args.games:
        for algo in args.algos:
            for mode in args.modes:
                rs = [r for r in rows if (r["game"], r["algo"], r["mode"]) == (game, algo, mode)]
                if not rs:
                    continue
                tf = np.array([r["target_freq"] for r in rs])
                outs = Counter(r["outcome"] for r in rs).most_common()
                rew = np.mean([r["mean_team_reward"] for r in rs])
                lines.append(f"| {game} | {algo} | {mode} | {sum(r['reached'] for r in rs)}/"
                             f"{len(rs)} | {tf.mean():.2f} ± {tf.std():.2f} | "
                             + ", ".join(f"{o}×{c}" for o, c in outs) + f" | {rew:.2f} |")
    run_wall = sum(float(r["wall_s"] or 0.0) for r in rows)
    lines += ["", f"Command: `python {shlex.join(sys.argv)}`  ",
              f"Total wall time: {elapsed:.0f} s for this invocation "
              f"({run_wall:.0f} s summed over the {len(rows)} runs' own wall times).", ""]
    (args.out / "results.md").write_text("\n".join(lines))


def plot_game(game: str, args: argparse.Namespace, done: set[tuple]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(args.algos), figsize=(4.2 * len(args.algos), 3.4),
                             squeeze=False, sharey=True)
    for ax, algo in zip(axes[0], args.algos, strict=True):
        for mode in args.modes:
            curves = read_curves([args.out / "runs" / f"{game}-{algo}-{mode}-s{seed}" for seed in range(args.seeds)
                                  if (game, algo, mode, seed) in done], "team_reward")
            curves_band = band(curves)
            if curves_band is None:
                continue
            x, ys = curves_band
            ax.plot(x, ys.mean(0), color=COLOURS[mode], label=f"{algo.upper()}-{mode}")
            ax.fill_between(x, ys.min(0), ys.max(0), color=COLOURS[mode], alpha=0.2, lw=0)
        ax.set_title(f"{game}: {algo.upper()}")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0][0].set_ylabel("team reward (sum over agents)")
    fig.tight_layout()
    fig.savefig(args.out / f"{game}.png", dpi=120)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    grid = [(g, a, m, s) for g in args.games for a in args.algos for m in args.modes
            for s in range(args.seeds)]
    t0 = time.time()
    print(f"{len(grid)} runs, {args.steps} steps each, {args.jobs} in parallel -> {args.out}")

    def describe(key: tuple, s: dict, note: str) -> str:
        row = to_row(*key, s)
        mark = "reached" if row["reached"] else "missed"
        return (f"{row['outcome']} ({row['outcome_freq']:.2f}), target {mark}, "
                f"{float(s.get('wall_s') or 0):.1f}s")

    summaries, failed = run_grid(grid, lambda key: launch_one(args, key), args.jobs, describe)
    rows = {key: to_row(*key, s) for key, s in summaries.items()}
    done = set(summaries)
    ordered = [rows[k] for k in grid if k in rows]
    write_tables(ordered, args, time.time() - t0)
    for game in args.games:
        plot_game(game, args, done)
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'results.md'} and "
          + ", ".join(f"{g}.png" for g in args.games) + f" in {time.time() - t0:.0f}s")
    return report_failures(failed, len(grid))


if __name__ == "__main__":
    sys.exit(main())
