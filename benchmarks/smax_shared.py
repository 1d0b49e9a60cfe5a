"""Diagnostic, not DRIMA: one recurrent PPO shared by all allied units, in one process (MAPPO's
parameter sharing), on SMAX. It answers one question about the benchmark's 3m plateau (about 0.8
for every mode): is it the environment, or that DRIMA's agents each learn alone?

Same PPO code and defaults as the agents (agent/learners/ppo.py), same battles and rewards
(env_server/smax.py, ind rewards: group term + own health term), but every unit acts with one
network, fed its observation plus a one-hot of its index, and each update learns from all units'
transitions (n_allies times an agent's). The signal is the raw reward (no DRI, no mu).

    for s in 0 1 2; do python benchmarks/smax_shared.py --seed $s --out benchmarks/results/smax/3m-shared/s$s.csv & done
    python benchmarks/smax_shared.py --summarise benchmarks/results/smax/3m-shared

Prints the win rate of the battles ending in each --window env steps and writes it as CSV (--out);
--summarise DIR writes DIR/results.md (per window: median [min, max] over the seeds' CSVs) and
DIR/win_rate.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from drima.agent.learners.ppo import PPO, PPOConfig
from drima.env_server.smax import SMAXVectorEnv, static_spec
from drima.types import StepInfo


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--map", default="3m")
    p.add_argument("--env-steps", type=int, default=1_000_000, help="env steps (K battles per step)")
    p.add_argument("--envs", type=int, default=8, help="K, battles stepped together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--learner", default="{}", help="PPOConfig overrides as JSON")
    p.add_argument("--window", type=int, default=50_000, help="env steps per reported win rate")
    p.add_argument("--out", type=Path, default=None, help="CSV of the win rate per window")
    p.add_argument("--summarise", type=Path, default=None, metavar="DIR",
                   help="only summarise the s*.csv files in DIR (table and plot)")
    args = p.parse_args()
    if args.summarise:
        return summarise(args.summarise)

    torch.set_num_threads(1)  # as in the agent processes: small networks, and JAX needs a core too
    n = static_spec(f"smax:{args.map}")["n_allies"]
    env = SMAXVectorEnv(f"smax:{args.map}", n, args.envs, args.seed)
    obs = env.reset()
    ids = np.repeat(np.eye(n, dtype=np.float32), args.envs, axis=0)  # rows agent-major: (n * K, n)

    def rows(per_agent: list[np.ndarray]) -> np.ndarray:  # n x (K, ...) -> (n * K, ...)
        return np.concatenate(per_agent, axis=0)

    def shared_obs(per_agent: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([rows(per_agent), ids], axis=1)

    def step_info() -> StepInfo:  # every unit's allowed actions at the current observation
        return StepInfo(avail=rows(env.avail_actions()).astype(bool))

    ppo = PPO(obs[0].shape[1] + n, int(env.agent_spec(0)["action"]["n"]),
              PPOConfig(**json.loads(args.learner)), args.seed)
    x = shared_obs(obs)
    info = step_info()
    window: list[float] = []
    out = None
    if args.out:  # a row per window, flushed as it comes: a run cut short keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = args.out.open("w", newline="")
        writer = csv.DictWriter(out, fieldnames=["env_steps", "won", "battles", "wall_s"])
        writer.writeheader()
    t0 = time.perf_counter()
    for step in range(1, args.env_steps // args.envs + 1):
        actions = ppo.act(x, info)
        obs, rewards, done = env.step(list(actions.reshape(n, args.envs)))
        x_next = shared_obs(obs)
        info = step_info()
        ppo.update(x, actions, rewards.reshape(-1), x_next, np.tile(done, n), info)
        x = x_next
        window += [b["won"] for b in env.pop_task_metrics()]
        env_steps = step * args.envs
        if env_steps % args.window < args.envs:
            row = {"env_steps": env_steps, "won": float(np.mean(window)) if window else float("nan"),
                   "battles": len(window), "wall_s": round(time.perf_counter() - t0, 1)}
            if out:
                writer.writerow(row)
                out.flush()
            print(f"{args.map} shared ppo seed {args.seed}: {env_steps:>9,} env steps  win rate "
                  f"{row['won']:.3f} over {row['battles']} battles  ({row['wall_s']:.0f} s)", flush=True)
            window = []
    if out:
        out.close()
    return 0


def summarise(folder: Path) -> int:
    runs = {f.stem: list(csv.DictReader(f.open())) for f in sorted(folder.glob("s*.csv"))}
    if not runs:
        raise SystemExit(f"no s*.csv in {folder}")
    n_windows = min(len(rows) for rows in runs.values())  # the windows every seed reached
    steps = [int(runs[next(iter(runs))][i]["env_steps"]) for i in range(n_windows)]
    won = np.array([[float(rows[i]["won"]) for i in range(n_windows)] for rows in runs.values()])  # (seeds, windows)
    lines = ["# SMAX: one PPO shared by all units (diagnostic, benchmarks/smax_shared.py)", "",
             f"Win rate of the battles ending in each window (sampling policy); median [min, max] over "
             f"{len(runs)} seeds ({', '.join(runs)}).", "", "| env steps | win rate |", "|---|---|"]
    lines += [f"| {s:,} | {np.median(w):.2f} [{w.min():.2f}, {w.max():.2f}] |"
              for s, w in zip(steps, won.T, strict=True)]
    (folder / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from common import env_steps_label

    fig, ax = plt.subplots(figsize=(5, 3.8))
    ax.plot(steps, np.median(won, 0), color="tab:green", label="PPO, parameters shared by all units")
    ax.fill_between(steps, won.min(0), won.max(0), color="tab:green", alpha=0.2, lw=0)
    ax.set(title="SMAX 3m, shared PPO (diagnostic)", xlabel="env steps", ylabel="win rate per window",
           ylim=(-0.02, 1.02))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(env_steps_label))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "win_rate.png", dpi=110)
    plt.close(fig)
    print(f"wrote {folder / 'results.md'} and win_rate.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
