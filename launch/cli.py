"""`drima-launch`: one env-server process and N agent processes on this machine.

    drima-launch --env pd --algo a2c --mode dri --topology ring --n 6 --steps 3000

Shows live progress, stops everything cleanly on completion or Ctrl-C (no process is left
behind), and leaves summary.json, learning_curves.png and one folder per process in --run-dir.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

from drima.agent.process import EXIT_ENV_LOST, EXIT_REFUSED, AgentConfig
from drima.env_server.envs import MPE_ENVS, battle_kind, battle_spec, default_agents, has_positions, is_mpe
from drima.env_server.pettingzoo_env import absolute_spec, is_pettingzoo
from drima.loading import absolute_reference
from drima.env_server.server import MISSING_ACTIONS
from drima.metrics import last_row, write_json_atomic
from drima.procinfo import set_process_title
from drima.topology import TopologyError, build_topology, is_dynamic, is_sight_range, range_radius
from drima.types import ALGOS, REWARD_MODES

from .plan import LaunchConfig, action_type, plan_run
from .rendezvous import RendezvousError, exchange
from .report import plot_run, write_summary
from .supervisor import spawn_agent, spawn_env_server, stop_all, tail

log = logging.getLogger("drima.launch")


def build_parser() -> argparse.ArgumentParser:
    d = LaunchConfig()
    p = argparse.ArgumentParser(prog="drima-launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--env", default=d.env,
                   help="pd | maintain | meeting3 | payoff:FILE (JSON payoff table) | hunting | collection (MPE)"
                        " | smax:MAP (jaxmarl's SMAX, e.g. smax:3m; the smax extra) | sc2:MAP (StarCraft II via SMAC)"
                        " | pettingzoo:MODULE[:FACTORY] (any PettingZoo ParallelEnv, e.g. pettingzoo:mpe2.simple_spread_v3;"
                        " --env-options are its keyword arguments)"
                        " | vmas:SCENARIO (VMAS, e.g. vmas:navigation; the vmas extra; docs/vmas.md)")
    p.add_argument("--algo", default=d.algo,
                   help=f"each agent's own learner: {' | '.join(ALGOS)} | MODULE:CLASS (a learner of your own, "
                        f"docs/learners.md; MODULE is a dotted module or a .py file)")
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
    p.add_argument("--mu-step-size", type=float, default=d.mu_step_size, help="step size of mu")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between metrics rows")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
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
    g = p.add_argument_group("continuing and evaluating a run (the run's own settings, from its launch.json)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir up to --steps steps in all: agents from their checkpoints, "
                        "the env server from the step reached, metrics appended")
    g.add_argument("--evaluate", metavar="RUN_DIR", default="",
                   help="run RUN_DIR's trained agents for --steps steps with greedy actions and no learning, on "
                        "fresh episodes; results in --run-dir (default RUN_DIR/eval)")
    return p


def continued_config(a: argparse.Namespace, parser: argparse.ArgumentParser) -> LaunchConfig:
    """--resume / --evaluate: the trained run's own settings, with this call's --steps."""
    source = Path(a.evaluate or a.run_dir)
    try:
        saved = json.loads((source / "launch.json").read_text())
        cfg = LaunchConfig(**saved)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(f"{source}/launch.json: not a drima run's settings ({exc})")
    if a.render and (a.evaluate or not is_mpe(cfg.env)):
        parser.error(f"--render draws an MPE run's learned policies: `drima-render {source}`" if a.evaluate else
                     f"--render draws MPE envs ({', '.join(MPE_ENVS)}), not {cfg.env}")
    missing = [i for i in range(cfg.n) if not (source / f"agent_{i}" / "checkpoint.pt").exists()]
    if missing and cfg.nodes == 1:
        parser.error(f"{source}: no checkpoint.pt for agents {missing}")
    if a.resume:
        env_row = last_row(source / "env_server" / "metrics.csv")
        reached = int(env_row["step"]) if env_row else 0
        if a.steps <= reached:
            parser.error(f"--resume: {source} has reached step {reached} already; --steps is the new total, "
                         f"and must be more than that")
        return dataclasses.replace(cfg, steps=a.steps, run_dir=str(source), resume=True, evaluate_from="",
                                   kill_agents=[])
    run_dir = a.run_dir if a.run_dir != LaunchConfig.run_dir else str(source / "eval")
    return dataclasses.replace(cfg, steps=a.steps, run_dir=run_dir, evaluate_from=str(source), resume=False,
                               kill_agents=[], restart_failed=False, link_drop=0.0, link_delay_ms=0.0)


def _kill_spec(text: str) -> list[int]:
    try:
        agent, step = (int(x) for x in text.split("@"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K@T, e.g. 2@500") from None
    if agent < 0 or step < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: agent and step must be >= 0")
    return [agent, step]


def config_from_args(argv: list[str] | None = None) -> tuple[LaunchConfig, bool, bool]:
    """Parse and validate; any error exits with status 2 and a one-line message."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.resume and a.evaluate:
        parser.error("--resume and --evaluate: one at a time")
    if a.resume or a.evaluate:
        if a.steps < 1:
            parser.error("--steps must be >= 1")
        return continued_config(a, parser), a.quiet, a.render
    for name in ("n", "steps", "envs", "log_every", "checkpoint_every", "prey", "attackers", "interceptors"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 0 <= a.link_drop <= 1:
        parser.error("--link-drop must be in [0, 1]")
    if a.link_delay_ms < 0:
        parser.error("--link-delay-ms must be >= 0")
    if a.heartbeat_interval <= 0 or a.heartbeat_liveness < 1 or a.reconnect_timeout <= 0:
        parser.error("--heartbeat-interval and --reconnect-timeout must be > 0, --heartbeat-liveness >= 1")
    if a.nodes < 1 or not 0 <= a.node_rank < a.nodes:
        parser.error("--nodes must be >= 1 and --node-rank in 0..nodes-1")
    if a.nodes > 1:
        if not re.fullmatch(r"[^:\s]+:\d+", a.rendezvous):
            parser.error("--nodes > 1 needs --rendezvous HOST:PORT (node 0's address)")
        a.transport = "tcp"  # ipc does not cross hosts
    if a.max_restarts < 0 or a.restart_delay < 0:
        parser.error("--max-restarts and --restart-delay must be >= 0")
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
                     f"({', '.join(MPE_ENVS)}, smax:MAP, sc2:MAP, vmas:SCENARIO)")
    if is_sight_range(a.topology) and not battle_kind(a.env):
        parser.error("--topology range:sight needs units with a sight range: smax:MAP or sc2:MAP")
    try:
        n = a.n if a.n is not None else default_n(a.env, env_options)
    except ValueError as exc:  # unknown map, or SMAC missing
        parser.error(str(exc))
    env = absolute_spec(a.env) if is_pettingzoo(a.env) else a.env  # agents may start in another folder
    cfg = LaunchConfig(env=env, algo=absolute_reference(a.algo), mode=a.mode, topology=a.topology, n=n, steps=a.steps,
                       envs=a.envs, seed=a.seed, run_dir=a.run_dir, transport=a.transport, host=a.host,
                       mu_step_size=a.mu_step_size, log_every=a.log_every, checkpoint_every=a.checkpoint_every,
                       link_deadline_s=a.link_deadline, link_drop=a.link_drop, link_delay_ms=a.link_delay_ms,
                       learner=learner, env_options=env_options, actions=a.actions,
                       heartbeat_interval_s=a.heartbeat_interval, heartbeat_liveness=a.heartbeat_liveness,
                       missing_action=a.missing_action, on_env_loss=a.on_env_loss,
                       reconnect_timeout_s=a.reconnect_timeout, restart_failed=a.restart_failed,
                       max_restarts=a.max_restarts, restart_delay_s=a.restart_delay, kill_agents=a.kill_agent,
                       bind_host=a.bind_host, nodes=a.nodes, node_rank=a.node_rank, rendezvous=a.rendezvous,
                       rendezvous_timeout_s=a.rendezvous_timeout)
    if cfg.nodes > cfg.n:
        parser.error(f"--nodes {cfg.nodes} is more than the {cfg.n} agents")
    for agent, _ in a.kill_agent:
        if agent >= n:
            parser.error(f"--kill-agent {agent}@...: there are only agents 0..{n - 1}")
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
    if battle_kind(env):
        return battle_spec(env)["n_agents"]
    try:
        return default_agents(env, env_options)
    except ValueError:  # a bad env or option: reported with its reason by _validate
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
        specs = [{"obs_dim": sizes["obs_dim"] or 1, "action": {"type": "discrete", "n": sizes["n_actions"]}}]
    elif is_pettingzoo(cfg.env):
        specs = _pettingzoo_specs(cfg)
    else:
        specs = [make_env(cfg.env, cfg.n, cfg.envs, cfg.seed, action_type(cfg), cfg.env_options).agent_spec(0)]
    for i, spec in enumerate(specs):  # every agent's own learner, where agents differ
        try:
            make_learner(cfg.algo, spec["obs_dim"], spec["action"], env_defaults(spec, cfg.algo) | cfg.learner, 0,
                         env_spec=spec)
        except ValueError as exc:
            who = f"agent {i} ({spec['agent_name']}): " if len(specs) > 1 and "agent_name" in spec else ""
            raise ValueError(f"{who}{exc}") from None


def _pettingzoo_specs(cfg: LaunchConfig) -> list[dict]:
    """A user's PettingZoo env: its agents' specs, after a short run through the env server's
    contract (check_env), so that a broken env is a one-line error here and not a crash later."""
    from drima.env_server.check import check_env
    from drima.env_server.envs import make_env

    if cfg.actions != "auto":
        raise ValueError(f"--actions {cfg.actions}: a PettingZoo env's own action spaces decide (leave --actions auto)")
    venv = make_env(cfg.env, cfg.n, 1, cfg.seed, "discrete", cfg.env_options)
    specs = [venv.agent_spec(i) for i in range(cfg.n)]
    problems = check_env(cfg.env, cfg.env_options, steps=50, n_envs=1, seed=cfg.seed)
    if problems:
        more = f" (and {len(problems) - 1} more: drima.check_env lists them)" if len(problems) > 1 else ""
        raise ValueError(f"--env {cfg.env} breaks the env contract: {problems[0]}{more}")
    return specs


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


AGENT_EXIT_MARGIN_S = 1.0
"""agents exit within heartbeat_interval_s * heartbeat_liveness + this after the env server dies"""


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"


def restartable_server_exit(cfg: LaunchConfig, code: int, restarts: int) -> bool:
    """--restart-failed restarts an env server that crashed or was killed, not one that ended the
    run on purpose (0 done, 3 no agents, 130 stopped), and at most max_restarts times."""
    return cfg.restart_failed and code not in (0, 3, 130) and restarts < cfg.max_restarts


class AgentWatch:
    """The agent children of one run: reports their exits, restarts the failed ones
    (--restart-failed) and injects the kills asked for (--kill-agent)."""

    def __init__(self, cfg: LaunchConfig, configs: list[AgentConfig]):
        self.cfg = cfg
        self.configs = {a.agent_id: a for a in configs}
        self.children = {i: spawn_agent(a) for i, a in self.configs.items()}
        self.restarts = {i: 0 for i in self.configs}
        self.exits: dict[int, list[int]] = {i: [] for i in self.configs}  # every exit status, in order
        self.restart_at: dict[int, float] = {}  # agent -> when to restart it
        self.pending_kills = sorted((tuple(k) for k in cfg.kill_agents), key=lambda k: k[1])
        self.kills: list[dict] = []

    def poll(self, run_dir: Path) -> None:
        if self.pending_kills:
            row = last_row(run_dir / "env_server" / "metrics.csv")
            self._inject_kills(int(row["step"]) if row else 0)
        for i, child in self.children.items():
            code = child.proc.poll()
            if code is None or len(self.exits[i]) > self.restarts[i]:  # running, or this exit already handled
                continue
            self.exits[i].append(code)
            if code == 0:
                continue
            if self.cfg.restart_failed and self.restarts[i] < self.cfg.max_restarts and code != EXIT_REFUSED:
                log.warning("agent %d %s: restarting it from its last checkpoint in %.1f s (restart %d of %d). "
                            "Its log:\n%s", i, describe_exit(code), self.cfg.restart_delay_s,
                            self.restarts[i] + 1, self.cfg.max_restarts, tail(child.log_path))
                self.restart_at[i] = time.monotonic() + self.cfg.restart_delay_s
            else:
                log.warning("agent %d %s; the run goes on without it. Its log:\n%s", i, describe_exit(code),
                            tail(child.log_path))
        for i, at in list(self.restart_at.items()):
            if time.monotonic() >= at:
                del self.restart_at[i]
                self.restarts[i] += 1
                self.children[i] = spawn_agent(dataclasses.replace(self.configs[i], resume=True))

    def _inject_kills(self, env_step: int) -> None:
        while self.pending_kills and env_step >= self.pending_kills[0][1]:
            agent, at = self.pending_kills.pop(0)
            child = self.children[agent]
            if child.proc.poll() is not None:
                log.warning("fault injection: agent %d is already down at step %d", agent, env_step)
                continue
            child.proc.kill()
            log.warning("fault injection: SIGKILL agent %d (pid %d) at step %d", agent, child.proc.pid, env_step)
            self.kills.append({"agent": agent, "asked_step": at, "env_step": env_step})

    def running(self) -> bool:
        """Some agent of this node is alive or about to be restarted."""
        return bool(self.restart_at) or any(c.proc.poll() is None for c in self.children.values())

    def report(self) -> dict:
        """Per agent: exit status, restarts and every exit seen; for summary.json."""
        report = {}
        for i, c in self.children.items():
            exits = self.exits[i]
            if c.proc.returncode is not None and len(exits) == self.restarts[i]:  # ended after the last poll
                exits = [*exits, c.proc.returncode]
            report[i] = {"exit_status": c.proc.returncode, "restarts": self.restarts[i], "exits": exits}
        return report


def run(cfg: LaunchConfig, quiet: bool = False) -> int:
    """Run one experiment (this node's share of it); returns the process exit status."""
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "launch.json").write_text(json.dumps(cfg.__dict__, indent=2) + "\n")
    try:
        plan = plan_run(cfg, exchange=functools.partial(exchange, cfg) if cfg.nodes > 1 else None)
    except RendezvousError as exc:
        print(f"drima-launch: error: {exc}", file=sys.stderr)
        return 2
    interrupted = False

    def on_signal(signum, frame):
        nonlocal interrupted
        interrupted = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    t0 = time.monotonic()
    server = spawn_env_server(plan.env_server) if plan.env_server else None  # node 0 only
    server_exits: list[int] = []  # of env servers that died and were restarted
    watch = AgentWatch(cfg, plan.agents)
    progress = Progress(cfg, quiet)
    status, failure = "completed", None
    try:
        while not interrupted:
            if server is not None and server.proc.poll() is not None:
                if not restartable_server_exit(cfg, server.proc.returncode, len(server_exits)):
                    break
                server_exits.append(server.proc.returncode)
                log.warning("env server %s: restarting it in %.1f s (restart %d of %d); the agents rejoin it. "
                            "Its log:\n%s", describe_exit(server.proc.returncode), cfg.restart_delay_s,
                            len(server_exits), cfg.max_restarts, tail(server.log_path, 20))
                time.sleep(cfg.restart_delay_s)
                server = spawn_env_server(dataclasses.replace(plan.env_server, resume=True))
            if server is None and not watch.running():
                break
            watch.poll(run_dir)
            progress.update()
            time.sleep(0.1)
        agents = list(watch.children.values())
        if interrupted:
            status = "interrupted"
            stop_all([c for c in (server, *agents) if c])
        elif server is not None and server.proc.returncode != 0:
            status, failure = "failed", f"env server {describe_exit(server.proc.returncode)}"
            # the agents notice by themselves (heartbeats), save a checkpoint and exit with status 4
            grace = cfg.heartbeat_interval_s * cfg.heartbeat_liveness + AGENT_EXIT_MARGIN_S
            if cfg.on_env_loss == "wait":
                grace += cfg.reconnect_timeout_s
            log.error("%s; waiting up to %.1f s for the agents to save and exit. Its log:\n%s", failure, grace,
                      tail(server.log_path, 20))
            stop_all(agents, grace_s=grace, signal_first=False)
        else:
            stop_all(agents, grace_s=10.0, signal_first=False)  # they end by themselves after the last result
            bad = [c.name for c in agents if c.proc.returncode not in (0, -signal.SIGTERM)]
            if server is None and any(c.proc.returncode == EXIT_ENV_LOST for c in agents):
                status, failure = "failed", "env server lost (agents exited with status 4)"
            elif bad:
                status = "completed with agent failures"
                log.warning("agents %s did not finish cleanly; see their log.txt", bad)
    finally:
        stop_all([c for c in (server, *watch.children.values()) if c])
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        if plan.socket_dir:
            shutil.rmtree(plan.socket_dir, ignore_errors=True)
    progress.update(force=True)
    progress.done()
    if server is None:  # node r > 0: the env server's stats and the summary are node 0's
        write_json_atomic(run_dir / f"node_{cfg.node_rank}.json",
                          {"node": cfg.node_rank, "status": status, "failure": failure, "agents": watch.report(),
                           "kills": watch.kills, "wall_s": round(time.monotonic() - t0, 2)})
        if not quiet:
            print(f"node {cfg.node_rank}: {status}{': ' + failure if failure else ''}; "
                  f"results: {run_dir / f'node_{cfg.node_rank}.json'}")
        return {"completed": 0, "interrupted": 130}.get(status, 1)
    processes = {"agents": watch.report(), "kills": watch.kills, "failure": failure,
                 "env_server_exit_status": server.proc.returncode, "env_server_restarts": server_exits}
    summary = write_summary(cfg, status, time.monotonic() - t0, plan.neighbours, processes)
    plot = plot_run(cfg)
    if not quiet:
        fin = summary["final"]
        freq = sorted(fin.get("joint_action_freq", {}).items(), key=lambda kv: -kv[1])[:3]
        tasks = {k: round(v, 3) for k, v in fin.items() if isinstance(v, float) and k not in
                 ("mean_team_reward", "mean_conflict_rate")}
        print(f"{status}{': ' + failure if failure else ''}: {summary['steps']} steps, "
              f"{summary['env_steps_per_s'] or 0:,.0f} env steps/s, "
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
    set_process_title("launch", cfg.run_dir)
    code = run(cfg, quiet)
    if render and code == 0:
        from .render import render_run

        gif = Path(cfg.run_dir) / "episode.gif"
        metrics = render_run(cfg.run_dir, gif)
        print(f"episode with the learned policies: {gif} {metrics}")
    return code


if __name__ == "__main__":
    sys.exit(main())
