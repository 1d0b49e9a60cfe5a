"""`drima-launch`: one env-server process and N agent processes on this machine.

    drima-launch --env pd --algo a2c --mode dri --topology ring --n 6 --steps 3000

Shows live progress, stops everything cleanly on completion or Ctrl-C (no process is left
behind), and leaves summary.json, learning_curves.png and one folder per process in --run-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from drima.env_server.pettingzoo_env import absolute_spec, is_pettingzoo
from drima.env_server.server import MISSING_ACTIONS
from drima.loading import absolute_reference
from drima.loggers import parse_loggers
from drima.procinfo import set_process_title
from drima.types import ALGOS, REWARD_MODES

from .api import RunResult, run, signals_set
from .dashboard.server import DEFAULT_PORT
from .defaults import GENERIC, RUN_DEFAULTS, run_defaults
from .plan import LaunchConfig
from .rendezvous import RendezvousError
from .report import learned_line, substituted_line
from .validate import ConfigError


def build_parser() -> argparse.ArgumentParser:
    d = LaunchConfig()
    p = argparse.ArgumentParser(prog="drima-launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default=d.env,
                   help="pd | maintain | meeting3 | payoff:FILE (JSON payoff table) | hunting | collection (MPE)"
                        " | smax:MAP (jaxmarl's SMAX, e.g. smax:3m; the smax extra) | sc2:MAP (StarCraft II via SMAC)"
                        " | pettingzoo:MODULE[:FACTORY] (any PettingZoo ParallelEnv, e.g."
                        " pettingzoo:mpe2.simple_spread_v3; --env-options are its keyword arguments)"
                        " | vmas:SCENARIO (VMAS, e.g. vmas:navigation; the vmas extra; docs/vmas.md)")
    p.add_argument("--algo", default=d.algo,
                   help=f"each agent's own learner: {' | '.join(ALGOS)} | MODULE:CLASS (a learner of your own, "
                        f"docs/learners.md; MODULE is a dotted module or a .py file); default (%(default)s): "
                        f"per env, {_per_env('algo')}")
    p.add_argument("--mode", default=d.mode, choices=REWARD_MODES, help="reward mode")
    p.add_argument("--global-state", action="store_true",
                   help="send every agent the global state and the joint actions in any --mode, as ctde does: "
                        "the built-in learners' critics read them (a2c, ppo: V(state); ddpg: MADDPG's Q), the "
                        "reward stays the mode's own")
    p.add_argument("--topology", default=d.topology,
                   help="full | ring | line | star | grid[:RxC] | random-regular[:D] | erdos-renyi[:P] | file:EDGES"
                        " | range:R (MPE, SMAX, SC2: neighbours are the agents within distance R, at every step)"
                        " | range:sight (SMAX, SC2: the units each unit can see)")
    p.add_argument("--n", type=int, default=None,
                   help="number of agent processes (default: the game's players; hunting: attackers + "
                        "interceptors; collection: 6; smax/sc2: the map's allied units)")
    p.add_argument("--steps", type=int, default=d.steps,
                   help="environment steps (each steps all K copies); default (%(default)s): per env, "
                        f"{_per_env('steps')}")
    p.add_argument("--envs", type=int, default=d.envs, help="K environment copies stepped together")
    p.add_argument("--env-workers", type=int, default=d.env_workers,
                   help="pettingzoo envs: processes that step the K copies at the same time (1: the env server; "
                        "default: 2 where a block of K copies takes 2 ms or more to step and there is a second core)")
    p.add_argument("--seed", type=int, default=d.seed, help="run seed")
    p.add_argument("--run-dir", default=d.run_dir, help="output folder")
    p.add_argument("--transport", default=d.transport, choices=("ipc", "tcp"), help="socket transport")
    p.add_argument("--host", default=d.host,
                   help="with tcp: this node's address, as the other processes reach it (advertised)")
    p.add_argument("--bind-host", default=d.bind_host,
                   help="with tcp: the address to bind (default: --host; 0.0.0.0 = every interface)")
    p.add_argument("--nodes", type=int, default=d.nodes, help="nodes (hosts) the run is spread over")
    p.add_argument("--node-rank", type=int, default=d.node_rank,
                   help="this node's rank; node 0 runs the env server and the rendezvous")
    p.add_argument("--rendezvous", default=d.rendezvous, metavar="HOST:PORT",
                   help="node 0's rendezvous address, the same on every node (needed with --nodes > 1)")
    p.add_argument("--rendezvous-timeout", type=float, default=d.rendezvous_timeout_s,
                   help="seconds to wait for every node at the rendezvous")
    p.add_argument("--run-secret-file", default=d.run_secret_file, metavar="FILE",
                   help="with --nodes > 1: a file holding the run secret that every node is given (default: the "
                        "DRIMA_RUN_SECRET environment variable); never put the secret itself on a command line")
    p.add_argument("--insecure", action="store_true",
                   help="with tcp: no CurveZMQ encryption and authentication (anyone who reaches a port may "
                        "connect); a warning is logged. docs/security.md")
    p.add_argument("--mu-step-size", type=float, default=d.mu_step_size, help="step size of mu")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between metrics rows")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    p.add_argument("--logger", default=d.logger, type=_logger_spec,
                   help="csv | tensorboard (or csv,tensorboard): metrics.csv is always written; tensorboard adds an "
                        "event file in each process's folder (`tensorboard --logdir RUN_DIR`; the tensorboard extra)")
    p.add_argument("--link-deadline", type=float, default=d.link_deadline_s,
                   help="seconds to wait for a live neighbour's scalars at one step")
    p.add_argument("--link-drop", type=float, default=d.link_drop,
                   help="chaos: fraction of neighbour messages lost on receipt (seeded)")
    p.add_argument("--link-delay-ms", type=float, default=d.link_delay_ms,
                   help="chaos: delay of every neighbour message")
    p.add_argument("--heartbeat-interval", type=float, default=d.heartbeat_interval_s,
                   help="seconds between env-link heartbeats (server <-> agents) when nothing else is sent")
    p.add_argument("--heartbeat-liveness", type=int, default=d.heartbeat_liveness,
                   help="missed heartbeats after which the other end of the env link is declared dead")
    p.add_argument("--act-ahead", action=argparse.BooleanOptionalAction, default=d.act_ahead,
                   help="agents send their next action before learning from the last step (a2c, dqn, ddpg), "
                        "so the env server steps while they learn; --no-act-ahead: act, then learn")
    p.add_argument("--action-timeout", type=float, default=d.action_timeout_s,
                   help="seconds the env server waits for a live agent's action before playing --missing-action")
    p.add_argument("--missing-action", default=d.missing_action, choices=MISSING_ACTIONS,
                   help="what a dead or late agent's seat plays; remove: also drop a dead agent for good")
    p.add_argument("--on-env-loss", default=d.on_env_loss, choices=("exit", "wait"),
                   help="agents on env server loss: exit (checkpoint, status 4) or wait (reconnect)")
    p.add_argument("--reconnect-timeout", type=float, default=d.reconnect_timeout_s,
                   help="with --on-env-loss wait: seconds agents keep trying to rejoin")
    p.add_argument("--restart-failed", action="store_true",
                   help="restart an agent that crashed or was killed, from its last checkpoint, and a crashed env "
                        "server, from the step the run had reached (agents rejoin it)")
    p.add_argument("--max-restarts", type=int, default=d.max_restarts,
                   help="with --restart-failed: restarts per agent before it is left down")
    p.add_argument("--restart-delay", type=float, default=d.restart_delay_s,
                   help="with --restart-failed: seconds to wait before a restart (no tight crash loops)")
    p.add_argument("--adopt-after", type=float, default=None, metavar="SECONDS",
                   help="multi-host, with a run folder the nodes share: restart here, from its checkpoint, an agent "
                        "of another node that the env server has declared dead for this long (its host is cut off)")
    p.add_argument("--kill-agent", action="append", default=[], metavar="K@T", type=_kill_spec,
                   help="fault injection (repeatable): SIGKILL agent K once the env server reports step T")
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
    p.add_argument("--dashboard", type=int, nargs="?", const=DEFAULT_PORT, default=None, metavar="PORT",
                   help=f"serve the run's live view in the browser on PORT (default {DEFAULT_PORT}; 0: any free port) "
                        f"while it runs; docs/dashboard.md")
    p.add_argument("--dashboard-bind", default=d.dashboard_bind, metavar="ADDR",
                   help="the address the dashboard listens on (0.0.0.0: every interface; the page shows the run "
                        "to whoever reaches it)")
    g = p.add_argument_group("continuing and evaluating a run (the run's own settings, from its launch.json)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir up to --steps steps in all: agents from their checkpoints, "
                        "the env server from the step reached, metrics appended")
    g.add_argument("--evaluate", metavar="RUN_DIR", default="",
                   help="run RUN_DIR's trained agents for --steps steps with greedy actions and no learning, on "
                        "fresh episodes; results in --run-dir (default RUN_DIR/eval)")
    return p


def _per_env(field: str) -> str:
    """'collection: dqn, else a2c': a run default of launch/defaults.py, per env."""
    special = ", ".join(f"{env}: {getattr(d, field)}" for env, d in RUN_DEFAULTS.items())
    return f"{special}, else {getattr(GENERIC, field)}"


def continued_config(a: argparse.Namespace, parser: argparse.ArgumentParser) -> LaunchConfig:
    """--resume / --evaluate: the trained run's own settings, with this call's --steps (and
    --render); `validate` checks that its checkpoints are there."""
    source = Path(a.evaluate or a.run_dir)
    try:
        saved = json.loads((source / "launch.json").read_text())
        cfg = LaunchConfig(**saved)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"{source}/launch.json: not a drima run's settings ({exc})")
    if a.resume:
        return dataclasses.replace(cfg, steps=a.steps or run_defaults(cfg.env).steps, run_dir=str(source),
                                   resume=True, evaluate_from="", kill_agents=[], render=a.render)
    run_dir = a.run_dir if a.run_dir != LaunchConfig.run_dir else str(source / "eval")
    return dataclasses.replace(cfg, steps=a.steps or run_defaults(cfg.env).steps, run_dir=run_dir,
                               evaluate_from=str(source), resume=False, kill_agents=[], restart_failed=False,
                               link_drop=0.0, link_delay_ms=0.0, render=a.render)


def _logger_spec(text: str) -> str:
    try:
        parse_loggers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _kill_spec(text: str) -> list[int]:
    try:
        agent, step = (int(x) for x in text.split("@"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K@T, e.g. 2@500") from None
    if agent < 0 or step < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: agent and step must be >= 0")
    return [agent, step]


def config_from_args(argv: list[str] | None = None) -> tuple[LaunchConfig, bool]:
    """Parse argv into a launch config (not yet validated) and --quiet. A malformed flag exits with
    status 2 and a one-line message after the usage."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.resume and a.evaluate:  # before reading either run's launch.json
        parser.error("--resume and --evaluate: one at a time")
    if a.dashboard_bind != LaunchConfig.dashboard_bind and a.dashboard is None:
        parser.error("--dashboard-bind is an option of --dashboard")
    if a.resume or a.evaluate:  # the dashboard is this call's, not the saved run's
        cfg = continued_config(a, parser)
        return dataclasses.replace(cfg, dashboard=a.dashboard, dashboard_bind=a.dashboard_bind), a.quiet
    learner = _json_object(parser, "--learner", a.learner)
    env_options = _json_object(parser, "--env-options", a.env_options)
    hunting = {"n_prey": a.prey, "n_attackers": a.attackers, "n_interceptors": a.interceptors}
    for flag, value in zip(("prey", "attackers", "interceptors"), hunting.values(), strict=True):
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1")
    if any(v is not None for v in hunting.values()):
        if a.env != "hunting":
            parser.error("--prey, --attackers and --interceptors are options of --env hunting")
        env_options |= {k: v for k, v in hunting.items() if v is not None}
    env = absolute_spec(a.env) if is_pettingzoo(a.env) else a.env  # agents may start in another folder
    cfg = LaunchConfig(env=env, algo=a.algo and absolute_reference(a.algo), mode=a.mode, global_state=a.global_state,
                       topology=a.topology, n=a.n,
                       steps=a.steps, envs=a.envs, env_workers=a.env_workers, logger=a.logger, seed=a.seed,
                       run_dir=a.run_dir, transport=a.transport, host=a.host,
                       mu_step_size=a.mu_step_size, log_every=a.log_every, checkpoint_every=a.checkpoint_every,
                       link_deadline_s=a.link_deadline, link_drop=a.link_drop, link_delay_ms=a.link_delay_ms,
                       learner=learner, env_options=env_options, actions=a.actions, render=a.render,
                       heartbeat_interval_s=a.heartbeat_interval, heartbeat_liveness=a.heartbeat_liveness,
                       missing_action=a.missing_action, action_timeout_s=a.action_timeout, act_ahead=a.act_ahead,
                       on_env_loss=a.on_env_loss,
                       reconnect_timeout_s=a.reconnect_timeout, restart_failed=a.restart_failed,
                       max_restarts=a.max_restarts, restart_delay_s=a.restart_delay, kill_agents=a.kill_agent,
                       adopt_after_s=a.adopt_after,
                       bind_host=a.bind_host, nodes=a.nodes, node_rank=a.node_rank, rendezvous=a.rendezvous,
                       rendezvous_timeout_s=a.rendezvous_timeout, insecure=a.insecure,
                       run_secret_file=a.run_secret_file, dashboard=a.dashboard, dashboard_bind=a.dashboard_bind)
    return cfg, a.quiet


def _json_object(parser: argparse.ArgumentParser, flag: str, text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        parser.error(f"{flag}: {exc}")
    if not isinstance(value, dict):
        parser.error(f"{flag}: not a JSON object")
    return value


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="drima-launch: %(levelname)s %(message)s")
    cfg, quiet = config_from_args(argv)
    set_process_title("launch", cfg.run_dir)
    stop = threading.Event()  # Ctrl-C and SIGTERM stop the run cleanly: the CLI's only signal handlers
    try:
        with signals_set(stop, [signal.SIGINT, signal.SIGTERM]):
            result = run(cfg, stop=stop, progress=not quiet)  # validates first: a bad config starts no run process
    except ConfigError as exc:
        print(f"drima-launch: error: {exc}", file=sys.stderr)
        return 2
    except RendezvousError as exc:
        print(f"drima-launch: error: {exc}", file=sys.stderr)
        return 130 if stop.is_set() else 2
    if not quiet:
        print(_final_lines(result))
    if result.gif_path:
        print(f"episode with the learned policies: {result.gif_path} {result.render_metrics}")
    return result.exit_code


def _final_lines(result: RunResult) -> str:
    outcome = result.status + (f": {result.failure}" if result.failure else "")
    if "node" in result.summary:  # node r > 0: the summary is node 0's
        return f"node {result.summary['node']}: {outcome}; results: {result.summary_path}"
    summary, fin = result.summary, result.summary["final"]
    freq = sorted(fin.get("joint_action_freq", {}).items(), key=lambda kv: -kv[1])[:3]
    tasks = {k: round(v, 3) for k, v in fin.items() if isinstance(v, float) and k not in
             ("mean_team_reward", "mean_conflict_rate")}
    return (f"{outcome}: {summary['steps']} steps, {summary['env_steps_per_s'] or 0:,.0f} env steps/s, "
            f"final team reward per step {fin.get('mean_team_reward')}, "
            + (f"per episode {tasks}" if tasks else f"top joint actions {freq}")
            + f"\nresults: {result.summary_path}" + (f", {result.plot_path}" if result.plot_path else "")
            + (f"\n{warning}" if (warning := substituted_line(summary)) else "")
            + (f"\n{learned}" if (learned := learned_line(summary)) else ""))  # last: what the run is for


if __name__ == "__main__":
    sys.exit(main())
