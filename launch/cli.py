"""`drima-launch`: one env-server process and N agent processes on this machine.

    drima-launch --env pd --algo a2c --mode dri --topology ring --n 6 --steps 3000

Shows live progress, stops everything cleanly on completion or Ctrl-C (no process is left
behind), and leaves summary.json, learning_curves.png and one folder per process in --run-dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from drima.metrics import last_row
from drima.env_server.envs import MPE_ENVS, battle_kind, battle_spec, has_positions, is_mpe
from drima.env_server.matrix_games import PayoffFileError, get_game
from drima.topology import TopologyError, build_topology, is_dynamic, is_sight_range, range_radius
from drima.types import ALGOS, REWARD_MODES

from .plan import LaunchConfig, action_type, plan_run
from .report import plot_run, write_summary
from .supervisor import Child, spawn_agent, spawn_env_server, stop_all, tail

log = logging.getLogger("drima.launch")


def build_parser() -> argparse.ArgumentParser:
    d = LaunchConfig()
    p = argparse.ArgumentParser(prog="drima-launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default=d.env,
                   help="pd | maintain | meeting3 | payoff:FILE (JSON payoff table) | hunting | collection (MPE)"
                        " | smax:MAP (jaxmarl's SMAX, e.g. smax:3m; the smax extra) | sc2:MAP (StarCraft II via SMAC)")
    p.add_argument("--algo", default=d.algo, choices=ALGOS, help="each agent's own learner")
    p.add_argument("--mode", default=d.mode, choices=REWARD_MODES, help="reward mode")
    p.add_argument("--topology", default=d.topology,
                   help="full | ring | line | star | grid[:RxC] | random-regular[:D] | erdos-renyi[:P] | file:EDGES"
                        " | range:R (MPE, SMAX, SC2: neighbours are the agents within distance R, at every step)"
                        " | range:sight (SMAX, SC2: the units each unit can see)")
    p.add_argument("--n", type=int, default=None,
                   help="number of agent processes (default: the game's players; hunting: attackers + "
                        "interceptors; collection: 6; smax/sc2: the map's allied units)")
    p.add_argument("--steps", type=int, default=d.steps, help="environment steps (each steps all K copies)")
    p.add_argument("--envs", type=int, default=d.envs, help="K environment copies stepped together")
    p.add_argument("--seed", type=int, default=d.seed, help="run seed")
    p.add_argument("--run-dir", default=d.run_dir, help="output folder")
    p.add_argument("--transport", default=d.transport, choices=("ipc", "tcp"), help="socket transport")
    p.add_argument("--host", default=d.host, help="address to bind and advertise with --transport tcp")
    p.add_argument("--mu-step-size", type=float, default=d.mu_step_size, help="step size of mu")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between metrics rows")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--link-deadline", type=float, default=d.link_deadline_s,
                   help="seconds to wait for a live neighbour's scalars at one step")
    p.add_argument("--link-drop", type=float, default=d.link_drop,
                   help="chaos: fraction of neighbour messages lost on receipt (seeded)")
    p.add_argument("--link-delay-ms", type=float, default=d.link_delay_ms,
                   help="chaos: delay of every neighbour message")
    p.add_argument("--learner", default="{}", help='learner option overrides as JSON, e.g. \'{"lr_actor": 0.003}\'')
    p.add_argument("--env-options", default="{}", help='scenario options as JSON, e.g. \'{"view_radius": 1.0}\'')
    p.add_argument("--prey", type=int, help="hunting: number of prey (CH-I 1, CH-II 2)")
    p.add_argument("--attackers", type=int, help="hunting: number of attackers (CH-I 1, CH-II 2)")
    p.add_argument("--interceptors", type=int, help="hunting: number of interceptors (CH-I 2, CH-II 2)")
    p.add_argument("--actions", default=d.actions, choices=("auto", "discrete", "continuous"),
                   help="action space; auto = continuous forces for ddpg in MPE, else discrete")
    p.add_argument("--render", action="store_true",
                   help="MPE: after the run, play one episode with the learned policies into RUN_DIR/episode.gif")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def config_from_args(argv: list[str] | None = None) -> tuple[LaunchConfig, bool, bool]:
    """Parse and validate; any error exits with status 2 and a one-line message."""
    parser = build_parser()
    a = parser.parse_args(argv)
    for name in ("n", "steps", "envs", "log_every", "checkpoint_every", "prey", "attackers", "interceptors"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= a.link_drop <= 1:
        parser.error("--link-drop must be in [0, 1]")
    if a.link_delay_ms < 0:
        parser.error("--link-delay-ms must be >= 0")
    if a.mu_step_size <= 0 or a.mu_step_size > 1:
        parser.error("--mu-step-size must be in (0, 1]")
    learner = _json_object(parser, "--learner", a.learner)
    env_options = _json_object(parser, "--env-options", a.env_options)
    hunting = {"n_prey": a.prey, "n_attackers": a.attackers, "n_interceptors": a.interceptors}
    if any(v is not None for v in hunting.values()):
        if a.env != "hunting":
            parser.error("--prey, --attackers and --interceptors are options of --env hunting")
        env_options |= {k: v for k, v in hunting.items() if v is not None}
    if a.render and not is_mpe(a.env):
        parser.error(f"--render draws MPE envs ({', '.join(MPE_ENVS)}), not {a.env}")
    if is_dynamic(a.topology) and not has_positions(a.env):
        parser.error(f"--topology {a.topology}: range topologies need an environment with positions "
                     f"({', '.join(MPE_ENVS)}, smax:MAP, sc2:MAP)")
    if is_sight_range(a.topology) and not battle_kind(a.env):
        parser.error("--topology range:sight needs units with a sight range: smax:MAP or sc2:MAP")
    try:
        n = a.n if a.n is not None else default_n(a.env, env_options)
    except ValueError as exc:  # unknown map, or SMAC missing
        parser.error(str(exc))
    cfg = LaunchConfig(env=a.env, algo=a.algo, mode=a.mode, topology=a.topology, n=n, steps=a.steps,
                       envs=a.envs, seed=a.seed, run_dir=a.run_dir, transport=a.transport, host=a.host,
                       mu_step_size=a.mu_step_size, log_every=a.log_every, checkpoint_every=a.checkpoint_every,
                       link_deadline_s=a.link_deadline, link_drop=a.link_drop, link_delay_ms=a.link_delay_ms,
                       learner=learner, env_options=env_options, actions=a.actions)
    return cfg, a.quiet, a.render


def _json_object(parser: argparse.ArgumentParser, flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        parser.error(f"{flag}: {exc}")
    if not isinstance(value, dict):
        parser.error(f"{flag}: not a JSON object")
    return value


def default_n(env: str, env_options: dict) -> int:
    """As many agents as the environment has learners, when --n is not given."""
    if env == "hunting":
        return env_options.get("n_attackers", 1) + env_options.get("n_interceptors", 2)
    if env == "collection":
        return 6
    if battle_kind(env):
        return battle_spec(env)["n_agents"]
    try:
        return get_game(env).n_players
    except (ValueError, PayoffFileError):  # reported with its reason by _validate
        return 2


def _validate(cfg: LaunchConfig) -> None:
    """Fail before any process starts: the env spec, the topology and the learner options."""
    from drima.agent.learners import env_defaults, make_learner
    from drima.env_server.envs import make_env

    if is_dynamic(cfg.topology):
        range_radius(cfg.topology)
    else:
        build_topology(cfg.topology, cfg.n, cfg.seed)
    if battle_kind(cfg.env):  # no JAX or StarCraft II in the launcher: sizes from the map tables
        sizes = battle_spec(cfg.env)
        if cfg.n != sizes["n_agents"]:
            raise ValueError(f"--env {cfg.env} has {sizes['n_agents']} allied units, but --n is {cfg.n}")
        spec = {"obs_dim": sizes["obs_dim"] or 1, "action": {"type": "discrete", "n": sizes["n_actions"]}}
    else:
        spec = make_env(cfg.env, cfg.n, cfg.envs, cfg.seed, action_type(cfg), cfg.env_options).agent_spec(0)
    make_learner(cfg.algo, spec["obs_dim"], spec["action"], env_defaults(spec, cfg.algo) | cfg.learner, 0)


class Progress:
    """One status line: step, env steps/s, team reward, conflict rate, ETA."""

    def __init__(self, cfg: LaunchConfig, quiet: bool):
        self.cfg = cfg
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.last_print = 0.0
        self.t0 = time.monotonic()

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not force and now - self.last_print < (0.5 if self.tty else 10.0)):
            return
        self.last_print = now
        run_dir = Path(self.cfg.run_dir)
        env_row = last_row(run_dir / "env_server" / "metrics.csv")
        if env_row is None:
            line = f"[{self._tag()}] starting {self.cfg.n} agents ... {now - self.t0:.0f}s"
        else:
            step = int(env_row["step"])
            conflicts = [float(r["conflict_rate"]) for i in range(self.cfg.n)
                         if (r := last_row(run_dir / f"agent_{i}" / "metrics.csv")) and r.get("conflict_rate")]
            rate = float(env_row["env_steps_per_s"])
            eta = (self.cfg.steps - step) * self.cfg.envs / rate if rate > 0 else float("nan")
            episode = env_row.get("episode_team_return")  # episodic (MPE) envs: the paper's group reward
            reward = (f"episode return {float(episode):.1f}" if episode else
                      f"team reward {float(env_row['team_reward']):.2f}")
            line = (f"[{self._tag()}] step {step}/{self.cfg.steps} ({100 * step / self.cfg.steps:3.0f}%) | "
                    f"{rate:,.0f} env steps/s | {reward} | "
                    f"conflict {np.mean(conflicts) if conflicts else 0:.2f} | eta {eta:.0f}s")
        print(("\r" + line.ljust(110)) if self.tty else line, end="" if self.tty else "\n", flush=True)

    def done(self) -> None:
        if not self.quiet and self.tty:
            print()

    def _tag(self) -> str:
        return f"{self.cfg.env} {self.cfg.algo}-{self.cfg.mode} {self.cfg.topology} n={self.cfg.n}"


def run(cfg: LaunchConfig, quiet: bool = False) -> int:
    """Run one experiment; returns the process exit status."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "launch.json").write_text(json.dumps(cfg.__dict__, indent=2) + "\n")
    plan = plan_run(cfg)
    interrupted = False

    def on_signal(signum, frame):
        nonlocal interrupted
        interrupted = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    server = spawn_env_server(plan.env_server)
    agents: list[Child] = [spawn_agent(a) for a in plan.agents]
    children = [server, *agents]
    progress = Progress(cfg, quiet)
    status = "completed"
    try:
        while server.proc.poll() is None and not interrupted:
            for c in agents:
                if c.proc.returncode is None and c.proc.poll() not in (None, 0):
                    log.warning("%s exited with status %d; the run goes on without it. Its log:\n%s",
                                c.name, c.proc.returncode, tail(c.log_path))
            progress.update()
            time.sleep(0.1)
        if interrupted:
            status = "interrupted"
            stop_all(children)
        elif server.proc.returncode != 0:
            status = "failed"
            stop_all(children)
            log.error("env server failed (status %d). Its log:\n%s", server.proc.returncode, tail(server.log_path, 20))
        else:
            stop_all(agents, grace_s=30.0)  # agents end by themselves after the last result
            bad = [c.name for c in agents if c.proc.returncode not in (0, -signal.SIGTERM)]
            if bad:
                status = "completed with agent failures"
                log.warning("agents %s did not finish cleanly; see their log.txt", bad)
    finally:
        stop_all(children)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if plan.socket_dir:
            shutil.rmtree(plan.socket_dir, ignore_errors=True)
    progress.update(force=True)
    progress.done()
    summary = write_summary(cfg, status, time.monotonic() - t0, plan.neighbours)
    plot = plot_run(cfg)
    if not quiet:
        fin = summary["final"]
        freq = sorted(fin.get("joint_action_freq", {}).items(), key=lambda kv: -kv[1])[:3]
        tasks = {k: round(v, 3) for k, v in fin.items() if isinstance(v, float) and k not in
                 ("mean_team_reward", "mean_conflict_rate")}
        print(f"{status}: {summary['steps']} steps, {summary['env_steps_per_s'] or 0:,.0f} env steps/s, "
              f"final team reward per step {fin.get('mean_team_reward')}, "
              + (f"per episode {tasks}" if tasks else f"top joint actions {freq}"))
        print(f"results: {run_dir / 'summary.json'}" + (f", {plot}" if plot else ""))
    return {"completed": 0, "interrupted": 130}.get(status, 1)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="drima-launch: %(levelname)s %(message)s")
    cfg, quiet, render = config_from_args(argv)
    try:
        _validate(cfg)
    except (ValueError, TopologyError) as exc:
        print(f"drima-launch: error: {exc}", file=sys.stderr)
        return 2
    code = run(cfg, quiet)
    if render and code == 0:
        from .render import render_run

        gif = Path(cfg.run_dir) / "episode.gif"
        metrics = render_run(cfg.run_dir, gif)
        print(f"episode with the learned policies: {gif} {metrics}")
    return code


if __name__ == "__main__":
    sys.exit(main())
