"""What a run leaves behind: summary.json and learning_curves.png, built from the files the
processes wrote (env_server/stats.json and every metrics.csv)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from drima.metrics import read_rows, write_json_atomic

from .plan import LaunchConfig, final_fraction, sends_global_state

FIRST_FRACTION = 0.1
"""summary.json's `first` figures average over this share of the run, at its start"""


def _final_mean(rows: list[dict[str, str]], key: str, from_step: float) -> float | None:
    vals = [float(r[key]) for r in rows if r.get(key) not in (None, "") and float(r["step"]) > from_step]
    return float(np.mean(vals)) if vals else None


def _first_window(run_dir: Path, until_step: float) -> dict:
    """The env server's figures over the run's first steps (up to `until_step`): where learning
    started from, to set beside `final`."""
    rows = [r for r in read_rows(run_dir / "env_server" / "metrics.csv") if float(r["step"]) <= until_step]
    out = {"mean_team_reward": _final_mean(rows, "team_reward", -1.0),
           "episode_team_return": _final_mean(rows, "episode_team_return", -1.0)}
    return {k: v for k, v in out.items() if v is not None}


def _substituted_share(run_dir: Path, n_agents: int) -> float | None:
    """The share of agent-steps whose action the env server replaced (missing_action), over the
    whole run: from its metrics rows (each the mean per step since the row before), so that a
    resumed or restarted env server's earlier steps count too; None before the first row."""
    missed = steps = 0.0
    last = 0
    for row in read_rows(run_dir / "env_server" / "metrics.csv"):
        step = int(float(row["step"]))
        if row.get("missing_actions") not in (None, "") and step > last:
            missed += float(row["missing_actions"]) * (step - last)
            steps += step - last
        last = max(last, step)
    return round(missed / (steps * n_agents), 4) if steps and n_agents else None


def learned_line(summary: dict) -> str | None:
    """What the run learned, in one line: the team reward per step (and, in episodic tasks, the
    group reward per episode) over the first 10 % of steps against the last 10 %. None for an
    evaluation, or when either window logged nothing."""
    first, final = summary.get("first") or {}, summary.get("final") or {}
    if first.get("mean_team_reward") is None or final.get("mean_team_reward") is None:
        return None
    line = (f"learned: team reward per step {first['mean_team_reward']:.3f} over the first 10 % of steps -> "
            f"{final['mean_team_reward']:.3f} over the last 10 %")
    if first.get("episode_team_return") is not None and final.get("episode_team_return") is not None:
        line += f"; group reward per episode {first['episode_team_return']:.1f} -> {final['episode_team_return']:.1f}"
    return line


SUBSTITUTED_WARN = 0.01  # above this share of agent-steps, say that the agents did not play their own run


def substituted_line(summary: dict) -> str | None:
    """A warning when the env server played substitutes for more than 1 % of the agents' actions
    (late or silent agents: an overloaded machine, dead agents): None otherwise."""
    share = summary.get("substituted_action_share")
    if share is None or share <= SUBSTITUTED_WARN:
        return None
    return (f"warning: {100 * share:.1f} % of the agents' actions were substitutes (missing_action) for late, silent "
            f"or dead agents; the agents learned from steps they did not all play. On a busy machine, raise "
            f"--heartbeat-liveness (and --action-timeout)")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # a process that died before writing it
        return {}


def write_summary(cfg: LaunchConfig, status: str, wall_s: float, neighbours: dict[int, list[int]],
                  processes: dict | None = None) -> dict:
    """`processes`: what the launcher saw: per agent exit status and restarts, kills, failure."""
    processes = processes or {}
    run_dir = Path(cfg.run_dir)
    stats_path = run_dir / "env_server" / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
    if not stats:  # the env server died before writing it: its metrics tell how far it got
        env_rows = read_rows(run_dir / "env_server" / "metrics.csv")
        if env_rows:
            stats = {"steps": int(env_rows[-1]["step"]), "env_steps": int(env_rows[-1]["env_steps"])}
    from_step = (1.0 - final_fraction(cfg)) * cfg.steps
    agents = {}
    for i in range(cfg.n):
        rows = read_rows(run_dir / f"agent_{i}" / "metrics.csv")
        agent_stats = _read_json(run_dir / f"agent_{i}" / "stats.json")
        agents[str(i)] = {
            "name": agent_stats.get("agent_name"),
            "neighbours": neighbours.get(i, []),
            "steps_logged": int(float(rows[-1]["step"])) if rows else 0,
            "final_reward": _final_mean(rows, "reward", from_step),
            "final_mu": _final_mean(rows, "mu", from_step),
            "final_conflict_rate": _final_mean(rows, "conflict_rate", from_step),
        } | processes.get("agents", {}).get(i, {})
    conflict = [a["final_conflict_rate"] for a in agents.values() if a["final_conflict_rate"] is not None]
    summary = {
        "status": status,
        "failure": processes.get("failure"),
        "env_server_exit_status": processes.get("env_server_exit_status"),
        "env_server_restarts": processes.get("env_server_restarts", []),  # exit status of each restarted server
        "restarts": {str(i): a["restarts"] for i, a in processes.get("agents", {}).items() if a["restarts"]},
        "kills": processes.get("kills", []),
        "agent_events": stats.get("agent_events", []),
        "substituted_action_share": _substituted_share(run_dir, cfg.n or 0),
        "env": cfg.env, "algo": cfg.algo, "mode": cfg.mode, "global_state": sends_global_state(cfg),
        "topology": cfg.topology, "n_agents": cfg.n,
        "seed": cfg.seed, "steps": stats.get("steps", 0), "n_envs": cfg.envs,
        "env_steps": stats.get("env_steps", 0),
        "env_steps_per_s": stats.get("env_steps_per_s"),
        "wall_s": round(wall_s, 2),
        "first": {} if cfg.evaluate_from else _first_window(run_dir, FIRST_FRACTION * cfg.steps),
        "final": dict(stats.get("final", {"mean_team_reward": None, "joint_action_freq": {}})) | {
            "mean_conflict_rate": float(np.mean(conflict)) if conflict else None,
            "window": "all steps (evaluation)" if cfg.evaluate_from else f"last {final_fraction(cfg):.0%} of steps"},
        "agents": agents,
        "config": asdict(cfg),
    }
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


def plot_run(cfg: LaunchConfig) -> Path | None:
    """Team reward, per-agent conflict rate and mu against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(cfg.run_dir)
    env_rows = read_rows(run_dir / "env_server" / "metrics.csv")
    if not env_rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    episodic = [r for r in env_rows if r.get("episode_team_return")]  # MPE: the paper's group reward
    if episodic:
        axes[0].plot([float(r["env_steps"]) for r in episodic], [float(r["episode_team_return"]) for r in episodic],
                     color="k")
        axes[0].set(title="group reward (sum over agents and the episode)", xlabel="env steps")
    else:
        axes[0].plot([float(r["env_steps"]) for r in env_rows], [float(r["team_reward"]) for r in env_rows], color="k")
        axes[0].set(title="team reward (sum over agents, per step)", xlabel="env steps")
    for i in range(cfg.n):
        rows = read_rows(run_dir / f"agent_{i}" / "metrics.csv")
        if not rows:
            continue
        traded = [r for r in rows if r.get("conflict_rate")]  # none in an evaluation
        axes[1].plot([float(r["env_steps"]) for r in traded], [float(r["conflict_rate"]) for r in traded],
                     label=f"agent {i}", lw=1)
        axes[2].plot([float(r["env_steps"]) for r in rows], [float(r["mu"]) for r in rows], label=f"agent {i}", lw=1)
    axes[1].set(title="DRI conflict rate", xlabel="env steps", ylim=(-0.02, 1.02))
    axes[2].set(title="average-reward estimate mu", xlabel="env steps")
    if cfg.n <= 12:
        axes[2].legend(fontsize=7)
    fig.suptitle(f"{cfg.env} | {cfg.algo}-{cfg.mode} | {cfg.topology} n={cfg.n} | seed {cfg.seed}")
    fig.tight_layout()
    out = run_dir / "learning_curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
