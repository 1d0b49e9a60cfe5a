#!/usr/bin/env python
"""Does DRI degrade gracefully when neighbour messages are lost? Final team reward against the
drop rate p of the neighbour links, dri vs ind.

Runs  envs {pd, collection} x p {0, 0.1, 0.3, 0.5} x modes {dri, ind} x seeds 0..S-1  with
`python -m drima.launch --link-drop p` (each agent loses that fraction of the neighbour scalars
it receives, seeded, independently per link; a lost message is waited for only until
--link-deadline). ind trades no scalars that it uses, so its row is the no-communication baseline.

  pd          2 agents, a2c, full graph; team reward per step (C,C = 20, D,D = 4)
  collection  6 agents, ddpg, ring; group reward per episode (sum over agents and 50 steps)

Writes OUT/<env>.csv (one row per run), OUT/<env>.md (mean ± std per p and mode) and OUT/<env>.png.
Resumable like the other benchmarks (completed runs with the same settings are reused).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from common import launch, report_failures, run_grid, write_csv

ENVS = {  # env -> (drima-launch args, the summary["final"] value compared, its meaning)
    "pd": (["--env", "pd", "--n", "2", "--algo", "a2c", "--topology", "full"], "mean_team_reward",
           "team reward per step (C,C = 20)"),
    "collection": (["--env", "collection", "--algo", "ddpg", "--topology", "ring"], "episode_team_return",
                   "group reward per episode"),
}
MODES = ["dri", "ind"]
COLOURS = {"dri": "tab:red", "ind": "tab:blue"}
FIELDS = ["env", "p", "mode", "seed", "value", "conflict_rate", "dropped_chaos", "wall_s"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", nargs="+", choices=list(ENVS), default=list(ENVS))
    p.add_argument("--drops", nargs="+", type=float, default=[0.0, 0.1, 0.3, 0.5])
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1")
    p.add_argument("--steps", nargs="+", type=int, default=[3000, 8000],
                   help="steps per run, one per env in --envs order (or one for all)")
    p.add_argument("--link-deadline", type=float, default=0.02, help="seconds a lost message is waited for")
    p.add_argument("-j", "--jobs", type=int, default=1, help="runs in parallel")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/drop_rate"))
    p.add_argument("--run-timeout", type=float, default=7200.0)
    p.add_argument("--force", action="store_true", help="rerun even completed runs")
    a = p.parse_args()
    if len(a.steps) == 1:
        a.steps = a.steps * len(a.envs)
    if len(a.steps) != len(a.envs):
        p.error("--steps takes one value, or one per env")
    if any(not 0 <= d <= 1 for d in a.drops):
        p.error("--drops must be in [0, 1]")
    a.steps_of = dict(zip(a.envs, a.steps, strict=True))
    return a


def launch_one(args: argparse.Namespace, key: tuple) -> tuple[dict | None, str]:
    env, p, mode, seed = key
    steps = args.steps_of[env]
    run_dir = args.out / "runs" / f"{env}-p{p}-{mode}-s{seed}"
    cmd = [*ENVS[env][0], "--mode", mode, "--link-drop", str(p), "--link-deadline", str(args.link_deadline),
           "--steps", str(steps), "--seed", str(seed), "--log-every", "50"]

    def same(s: dict) -> bool:
        cfg = s.get("config", {})
        return (s.get("steps") == steps and cfg.get("link_drop") == p
                and cfg.get("link_deadline_s") == args.link_deadline)

    return launch(cmd, run_dir, args.out / "logs" / f"{run_dir.name}.log", args.run_timeout, same, args.force)


def dropped(run_dir: Path, n: int) -> int:
    import json

    total = 0
    for i in range(n):
        try:
            total += json.loads((run_dir / f"agent_{i}" / "stats.json").read_text())["link"]["dropped_chaos"]
        except (OSError, ValueError, KeyError):
            pass
    return total


def main() -> int:
    args = parse_args()
    grid = [(e, p, m, s) for e in args.envs for p in args.drops for m in MODES for s in range(args.seeds)]
    t0 = time.time()
    print(f"{len(grid)} runs, {args.jobs} in parallel -> {args.out}")

    def describe(key: tuple, s: dict, note: str) -> str:
        return f"{ENVS[key[0]][1]} {s['final'].get(ENVS[key[0]][1]) or float('nan'):.2f}, {s.get('wall_s', 0):.0f}s"

    summaries, failed = run_grid(grid, lambda key: launch_one(args, key), args.jobs, describe)
    for env in args.envs:
        rows = []
        for key in grid:
            if key[0] == env and key in summaries:
                s = summaries[key]
                rows.append({"env": env, "p": key[1], "mode": key[2], "seed": key[3],
                             "value": s["final"].get(ENVS[env][1]),
                             "conflict_rate": s["final"].get("mean_conflict_rate"),
                             "dropped_chaos": dropped(args.out / "runs" / f"{env}-p{key[1]}-{key[2]}-s{key[3]}",
                                                      s["n_agents"]),
                             "wall_s": s.get("wall_s")})
        write_outputs(env, rows, args, time.time() - t0)
    print(f"wrote {', '.join(f'{e}.md' for e in args.envs)} in {args.out} ({time.time() - t0:.0f}s)")
    return report_failures(failed, len(grid))


def write_outputs(env: str, rows: list[dict], args: argparse.Namespace, elapsed: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_csv(args.out / f"{env}.csv", FIELDS, rows)
    meaning = ENVS[env][2]
    lines = [f"# Neighbour-message drop rate vs final {meaning}: {env}", "",
             f"{args.steps_of[env]} steps x 8 copies per run; link deadline {args.link_deadline} s; "
             "mean ± std over seeds, last 10 % of steps.", "",
             "| p | " + " | ".join(f"{m} ({meaning})" for m in MODES) + " | dri conflict rate |",
             "|---|" + "---|" * len(MODES) + "---|"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for mode in MODES:
        means, stds = [], []
        for p in args.drops:
            vals = np.array([r["value"] for r in rows if r["p"] == p and r["mode"] == mode and r["value"] is not None])
            means.append(vals.mean() if vals.size else np.nan)
            stds.append(vals.std() if vals.size else np.nan)
        ax.errorbar(args.drops, means, yerr=stds, color=COLOURS[mode], marker="o", capsize=3, label=mode)
    for p in args.drops:
        cells = []
        for mode in MODES:
            vals = np.array([r["value"] for r in rows if r["p"] == p and r["mode"] == mode and r["value"] is not None])
            cells.append(f"{vals.mean():.2f} ± {vals.std():.2f} (n={vals.size})" if vals.size else "-")
        conf = [r["conflict_rate"] for r in rows
                if r["p"] == p and r["mode"] == "dri" and r["conflict_rate"] is not None]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {np.mean(conf):.3f} |" if conf else f"| {p} | "
                     + " | ".join(cells) + " | - |")
    lines += ["", f"Command: `python {shlex.join(sys.argv)}`  ", f"Wall time of this invocation: {elapsed:.0f} s.", ""]
    (args.out / f"{env}.md").write_text("\n".join(lines))
    ax.set(xlabel="neighbour messages dropped (p)", ylabel=meaning, title=f"{env}: DRI under message loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"{env}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
