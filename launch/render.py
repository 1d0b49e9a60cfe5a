"""`drima-render RUN_DIR`: play episodes of an MPE run with its learned policies and write a GIF.

    drima-render runs/latest --episodes 2 --out runs/latest/episode.gif

It rebuilds the run's environment (one copy) and every agent's learner in this one process,
loads each agent's last checkpoint (agent_i/checkpoint.pt), and acts as the agents do in
training (their own exploration included). Rendering is offline and needs no display.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from drima.agent.checkpoint import load_checkpoint
from drima.agent.core import AgentCore
from drima.agent.learners import env_defaults, make_learner
from drima.env_server.envs import ctde_spec, is_mpe, make_env

from .defaults import with_run_defaults
from .plan import LaunchConfig, action_type, sends_global_state


def render_run(run_dir: str | Path, out: str | Path, episodes: int = 1, seed: int = 12345, size_px: int = 360,
               fps: int = 10) -> dict:
    """Write a GIF of `episodes` episodes; returns their task metrics."""
    from drima.env_server.mpe.render import draw_world, save_gif

    run_dir = Path(run_dir)
    launch_file = run_dir / "launch.json"
    if not launch_file.exists():
        raise ValueError(f"{run_dir}: no launch.json here, is it a drima-launch run folder?")
    # a hand-written launch.json may leave algo and steps out: the env's defaults, as validate fills them
    cfg = with_run_defaults(LaunchConfig(**json.loads(launch_file.read_text())))
    if not is_mpe(cfg.env):
        raise ValueError(f"{run_dir}: env {cfg.env!r} has nothing to draw (only MPE envs render)")
    env = make_env(cfg.env, cfg.n, 1, seed, action_type(cfg), cfg.env_options)
    agents = []
    for i in range(cfg.n):
        spec = env.agent_spec(i) | (ctde_spec(env, i) if sends_global_state(cfg) else {})  # as the env server sends it
        options = env_defaults(spec, cfg.algo) | cfg.learner
        learner = make_learner(cfg.algo, spec["obs_dim"], spec["action"], options, seed + i,
                               spec.get("state_dim", 0), env_spec=spec)
        core = AgentCore(learner, cfg.mode, cfg.mu_step_size)
        ckpt = run_dir / f"agent_{i}" / "checkpoint.pt"
        if not ckpt.exists():
            raise ValueError(f"{ckpt}: missing; the agent never saved a checkpoint")
        load_checkpoint(ckpt, core)
        agents.append(core)
    torch.manual_seed(seed)
    obs = env.reset()
    frames = [draw_world(env.worlds[0], size_px)]
    for _ in range(episodes * env.episode_length):
        actions = [a.act(o) for a, o in zip(agents, obs, strict=True)]
        obs, _, done = env.step(actions)
        if not done.any():  # the world has already been reset at an episode's end
            frames.append(draw_world(env.worlds[0], size_px))
    save_gif(frames, out, fps=fps)
    results = env.pop_task_metrics()
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]} if results else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="drima-render", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a drima-launch run folder (with launch.json and agent_*/checkpoint.pt)")
    p.add_argument("--out", help="GIF path (default RUN_DIR/episode.gif)")
    p.add_argument("--episodes", type=int, default=1, help="episodes to play")
    p.add_argument("--seed", type=int, default=12345, help="seed of the environment and the policies' sampling")
    a = p.parse_args(argv)
    if a.episodes < 1:
        p.error("--episodes must be >= 1")
    out = Path(a.out) if a.out else Path(a.run_dir) / "episode.gif"
    try:
        metrics = render_run(a.run_dir, out, a.episodes, a.seed)
    except ValueError as exc:
        print(f"drima-render: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
