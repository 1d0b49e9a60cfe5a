#!/usr/bin/env python
"""Reproduce the paper's SMAC comparison (section 4.3, Fig. 5) on SMAX battles with the real runtime.

Runs the grid  maps {3m, 2s3z, 5m_vs_6m} x modes {ind, dri, ctde} x seeds 0..S-1  of recurrent PPO
(MAPPO's recipe, one learner per agent process, no parameter sharing) with `python -m
drima.launch --env smax:MAP --algo ppo`, neighbours within sight range (`range:sight`; ctde has
no neighbour links and a centralised critic on the global state), one run directory each under
OUT/runs/<map>-<mode>-s<seed>. The paper's claim: -Dri at least matches -Ctde, and beats it on
5m_vs_6m.

Then it measures throughput: end-to-end env steps/s of a 5m_vs_6m ppo-dri run (5 agent processes)
against SMAX stepping alone in this process (same K copies, random available actions, no agents),
and their ratio.

After training, each run's agents play --eval-steps steps greedily with learning off
(`drima-launch --evaluate`, into OUT/runs/<run>/eval): the greedy win rate, as SMAC papers report.

Writes OUT/results.csv (one row per run: final win rate = mean over the battles that ended in the
last 10 % of steps, and the greedy one), OUT/results.md (per map and mode: median and min-max over
seeds, plus the throughput table), OUT/<map>.png (win rate and episode team return vs env steps:
median over seeds with the 25-75 % band, like Fig. 5) and OUT/throughput.json. Resumable like
benchmarks/mpe.py, and --resume continues shorter runs instead of starting them over; exit code 0
when every run completed.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import band, env_steps_label, launch, read_curves, run_grid, write_csv
from drima.metrics import last_row

MAPS = ["3m", "2s3z", "5m_vs_6m"]
MODES = ["ind", "dri", "ctde"]
COLOURS = {"dri": "tab:red", "ind": "tab:blue", "ctde": "tab:purple"}
FIELDS = ["map", "mode", "seed", "won", "episode_team_return", "allies_alive", "enemies_alive", "conflict_rate",
          "episodes", "env_steps", "env_steps_per_s", "wall_s", "eval_won", "eval_battles", "substituted_share"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--maps", nargs="+", default=MAPS, help="SMAX maps")
    p.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1")
    p.add_argument("--steps", type=int, default=25000, help="environment steps per run (each steps K copies)")
    p.add_argument("--envs", type=int, default=8, help="K: battles stepped together (MAPPO's 8 rollout threads)")
    p.add_argument("--learner", default="{}", help="PPO option overrides as JSON (default: MAPPO's SMAC settings)")
    p.add_argument("--throughput-steps", type=int, default=2000,
                   help="steps of the 5m_vs_6m throughput measurement; 0 skips it")
    p.add_argument("-j", "--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/smax"))
    p.add_argument("--run-timeout", type=float, default=4 * 3600.0, help="seconds before a run is killed")
    p.add_argument("--force", action="store_true", help="rerun even completed runs")
    p.add_argument("--resume", action="store_true",
                   help="continue shorter runs of the same settings to --steps (drima-launch --resume) instead of "
                        "starting them over")
    p.add_argument("--eval-steps", type=int, default=500,
                   help="after training, steps (x K battles) of greedy play with learning off (drima-launch "
                        "--evaluate), the way SMAC papers report win rates; 0 skips it")
    a = p.parse_args()
    if a.seeds < 1 or a.steps < 1 or a.jobs < 1 or a.throughput_steps < 0 or a.eval_steps < 0:
        p.error("--seeds, --steps and --jobs must be >= 1, --throughput-steps and --eval-steps >= 0")
    return a


def launch_args(args: argparse.Namespace, map_name: str, mode: str, seed: int, steps: int) -> list[str]:
    return ["--env", f"smax:{map_name}", "--algo", "ppo", "--mode", mode, "--topology", "range:sight",
            "--steps", str(steps), "--envs", str(args.envs), "--seed", str(seed), "--log-every", "50",
            "--checkpoint-every", "5000", "--learner", args.learner,
            # 10 s before a silent agent is declared dead (2 s by default), and 120 s for a live one's
            # action (10 s): with six of these runs at once, agents were starved past 2 s, and 30 PPO
            # updates at once on 2 cores took longer than 10 s; the env server played substitutes
            "--heartbeat-liveness", "20", "--action-timeout", "120"]


def run_dir_of(args: argparse.Namespace, key: tuple) -> Path:
    return args.out / "runs" / "{}-{}-s{}".format(*key)


def launch_one(args: argparse.Namespace, key: tuple) -> tuple[dict | None, str]:
    map_name, mode, seed = key

    def same_settings(s: dict) -> bool:
        return s.get("n_envs") == args.envs and s.get("config", {}).get("learner") == json.loads(args.learner)

    run_dir = run_dir_of(args, key)
    return launch(launch_args(args, map_name, mode, seed, args.steps), run_dir,
                  args.out / "logs" / f"{run_dir.name}.log", args.run_timeout,
                  lambda s: s.get("steps") == args.steps and same_settings(s), args.force,
                  extend_to=args.steps if args.resume else 0,
                  extendable=lambda s: s.get("steps", 0) < args.steps and same_settings(s))


def evaluate_one(args: argparse.Namespace, key: tuple) -> tuple[dict | None, str]:
    """Greedy play of a trained run's agents, learning off, on battles it never saw."""
    trained = run_dir_of(args, key)
    out = trained / "eval"

    def fresh(s: dict) -> bool:  # of this length, and newer than the training it evaluates
        return s.get("steps") == args.eval_steps and \
            (out / "summary.json").stat().st_mtime > (trained / "summary.json").stat().st_mtime

    return launch(["--evaluate", str(trained), "--steps", str(args.eval_steps)], out,
                  args.out / "logs" / f"{trained.name}-eval.log", args.run_timeout, fresh, args.force)


def to_row(key: tuple, s: dict, run_dir: Path, ev: dict | None) -> dict:
    fin, ev_fin = s.get("final", {}), (ev or {}).get("final", {})
    wall = last_row(run_dir / "env_server" / "metrics.csv")  # a continued run's wall time goes on from its first
    return {"map": key[0], "mode": key[1], "seed": key[2], **{k: fin.get(k) for k in FIELDS[3:7]},
            "conflict_rate": fin.get("mean_conflict_rate"), "episodes": fin.get("episodes"),
            "env_steps": s.get("env_steps"), "env_steps_per_s": s.get("env_steps_per_s"),
            "wall_s": float(wall["wall_s"]) if wall else s.get("wall_s"),
            "eval_won": ev_fin.get("won"), "eval_battles": ev_fin.get("episodes"),
            "substituted_share": s.get("substituted_action_share")}


def smax_alone(map_name: str, n_envs: int, steps: int, seed: int = 0) -> float:
    """Env steps/s of SMAX by itself: the same K copies, random available actions, no agents."""
    from drima.env_server.smax import SMAXVectorEnv, static_spec

    env = SMAXVectorEnv(f"smax:{map_name}", static_spec(f"smax:{map_name}")["n_allies"], n_envs, seed)
    rng = np.random.default_rng(seed)
    env.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        actions = [np.argmax(a * rng.random(a.shape), axis=-1).astype(np.int32) for a in env.avail_actions()]
        env.step(actions)
    return steps * n_envs / (time.perf_counter() - t0)


def throughput(args: argparse.Namespace) -> dict:
    """5m_vs_6m, 5 agent processes, ppo-dri with range:sight, against SMAX alone."""
    run_dir = args.out / "throughput" / "5m_vs_6m-dri"
    s, note = launch(launch_args(args, "5m_vs_6m", "dri", 0, args.throughput_steps), run_dir,
                     args.out / "logs" / "throughput.log", args.run_timeout,
                     lambda s: s.get("steps") == args.throughput_steps and s.get("n_envs") == args.envs, args.force)
    alone = smax_alone("5m_vs_6m", args.envs, args.throughput_steps)
    runtime = s.get("env_steps_per_s") if s else None
    out = {"map": "5m_vs_6m", "agents": 5, "n_envs": args.envs, "steps": args.throughput_steps,
           "runtime_env_steps_per_s": runtime, "smax_alone_env_steps_per_s": round(alone, 1),
           "ratio": round(runtime / alone, 3) if runtime else None, "runtime_note": note}
    (args.out / "throughput.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def _stat(rows: list[dict], key: str) -> str:
    vals = np.array([r[key] for r in rows if r.get(key) is not None], float)
    return f"{np.median(vals):.2f} [{vals.min():.2f}, {vals.max():.2f}]" if vals.size else "-"


def write_tables(rows: list[dict], args: argparse.Namespace, tp: dict | None, elapsed: float) -> None:
    write_csv(args.out / "results.csv", FIELDS, rows)
    lines = ["# SMAX: win rate of recurrent PPO per reward mode", "",
             f"{args.steps} steps x {args.envs} battles = {args.steps * args.envs:,} env steps per run; "
             "`range:sight` neighbourhoods; median [min, max] over seeds of the battles ending in the last 10 % "
             "of steps.", "",
             f"Greedy: the trained agents' argmax actions, learning off, {args.eval_steps} x {args.envs} "
             "env steps of fresh battles (`drima-launch --evaluate`).", "",
             "| map | mode | seeds | win rate | greedy win rate | episode team return | allies alive | enemies alive "
             "| conflict rate | wall s / run |", "|---|---|---|---|---|---|---|---|---|---|"]
    for map_name in args.maps:
        for mode in args.modes:
            rs = [r for r in rows if (r["map"], r["mode"]) == (map_name, mode)]
            if rs:
                stats = [_stat(rs, k) for k in ("won", "eval_won", "episode_team_return", "allies_alive",
                                                "enemies_alive", "conflict_rate")]
                lines.append(f"| {map_name} | {mode} | {len(rs)} | " + " | ".join(stats)
                             + f" | {np.mean([r['wall_s'] for r in rs]):.0f} |")
    if tp:
        lines += ["", "## Throughput: 5m_vs_6m, 5 agent processes, ppo-dri, range:sight", "",
                  "| K | steps | runtime env steps/s | SMAX alone env steps/s | ratio |", "|---|---|---|---|---|",
                  f"| {tp['n_envs']} | {tp['steps']} | {tp['runtime_env_steps_per_s']} | "
                  f"{tp['smax_alone_env_steps_per_s']} | {tp['ratio']} |"]
    lines += ["", f"Command: `python {shlex.join(sys.argv)}`  ",
              f"Wall time of this invocation: {elapsed:.0f} s (completed runs it found were not run again).", ""]
    (args.out / "results.md").write_text("\n".join(lines))


def plot_map(map_name: str, args: argparse.Namespace, done: set[tuple]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    # win rate as in Fig. 5, and the episode team return, which still moves while nobody wins
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = (("won", "median win rate"), ("episode_team_return", "median episode team return"))
    for ax, (column, label) in zip(axes, panels, strict=True):
        for mode in args.modes:
            curves = read_curves([run_dir_of(args, (map_name, mode, seed)) for seed in range(args.seeds)
                                  if (map_name, mode, seed) in done], column)
            b = band(curves, smooth=10)
            if b is None:
                continue
            x, ys = b
            ax.plot(x, np.median(ys, 0), color=COLOURS[mode], label=f"MAPPO-{mode.capitalize()}")
            ax.fill_between(x, np.percentile(ys, 25, 0), np.percentile(ys, 75, 0), color=COLOURS[mode], alpha=0.2,
                            lw=0)
        ax.set(title=f"SMAX {map_name}", xlabel="env steps", ylabel=label)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(env_steps_label))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    axes[0].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    fig.savefig(args.out / f"{map_name}.png", dpi=110)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [(m, mode, s) for m in args.maps for mode in args.modes for s in range(args.seeds)]
    t0 = time.time()
    print(f"{len(grid)} runs, {args.steps} steps x {args.envs} battles each, {args.jobs} in parallel -> {args.out}")

    def describe(key: tuple, s: dict, note: str) -> str:
        fin = s.get("final", {})
        return (f"win rate {fin.get('won') if fin.get('won') is not None else float('nan'):.2f}, "
                f"{fin.get('episodes')} battles in the final window, {float(s.get('wall_s') or 0):.0f}s")

    summaries, failed = run_grid(grid, lambda key: launch_one(args, key), args.jobs, describe)
    tp = throughput(args) if args.throughput_steps else None
    if tp:
        print(f"throughput 5m_vs_6m: runtime {tp['runtime_env_steps_per_s']} env steps/s, SMAX alone "
              f"{tp['smax_alone_env_steps_per_s']}, ratio {tp['ratio']}")
    evals = {}
    if args.eval_steps:
        evals, eval_failed = run_grid([k for k in grid if k in summaries], lambda key: evaluate_one(args, key),
                                      args.jobs, lambda key, s, note: f"greedy win rate {s['final'].get('won')} "
                                      f"over {s['final'].get('episodes')} battles")
        failed += eval_failed
    rows = [to_row(k, summaries[k], run_dir_of(args, k), evals.get(k)) for k in grid if k in summaries]
    write_tables(rows, args, tp, time.time() - t0)
    for map_name in args.maps:
        plot_map(map_name, args, set(summaries))
    (args.out / "args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2) + "\n")
    print(f"wrote {args.out / 'results.md'} and " + ", ".join(f"{m}.png" for m in args.maps)
          + f" in {time.time() - t0:.0f}s")
    if failed or (tp and tp["runtime_env_steps_per_s"] is None):
        for name, note in failed:
            print(f"  {name}: {note}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
